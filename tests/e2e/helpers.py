"""Shared steps of the browser tests: a study with prompts, an annotator, signing in,
a browser context that records Content-Security-Policy violations."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.urls import reverse

from annotation.models import Membership, Study
from tests.factories import PASSWORD, CandidateFactory, MembershipFactory, PromptFactory, StudyFactory, UserFactory

# True once #comparison shows a different comparison than ``previous`` (or none)
# and takes answers: annotate.js ignores answer keys for a moment after a
# comparison appears (ARM_MS), marking the section "arming" meanwhile.
NEW_COMPARISON = """
previous => {
  const el = document.getElementById("comparison");
  return el && el.dataset.comparisonId !== previous && !el.classList.contains("arming");
}
"""


def study_with_prompts(prompts: dict[str, list[str]], **fields) -> Study:
    """A study whose prompts each have the given responses (no queue yet: the
    first visit fills it)."""
    study = StudyFactory(**fields)
    for text, responses in prompts.items():
        prompt = PromptFactory(study=study, text=text)
        for response in responses:
            CandidateFactory(prompt=prompt, text=response)
    return study


def member(study: Study, username: str, role: str = Membership.Role.ANNOTATOR):
    user = UserFactory(username=username)
    MembershipFactory(user=user, study=study, role=role)
    return user


def log_in(page, live_server, user, next_url: str) -> None:
    """Sign in through the login form and land on ``next_url``."""
    page.goto(live_server.url + reverse("login") + "?next=" + next_url)
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + next_url)
    page.wait_for_load_state("load")


def wait_for(page, condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` (e.g. a database query) while the browser keeps running.

    The next comparison is shown from the page before the server has the
    answer, so a test that checks the database after the last answer waits
    for it here rather than for the screen.
    """
    for _ in range(int(timeout_s / 0.025)):
        if condition():
            return
        page.wait_for_timeout(25)
    raise AssertionError(f"timed out waiting for {what}")


# Runs before any page script, outside the page's policy: collects what the policy blocked.
COLLECT_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", event => {
  window.__csp.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile}:${event.lineNumber} ${event.sample}`);
});
"""


class Visitor:
    """A browser context that records CSP violations from events and the console."""

    def __init__(self, browser, **context_args) -> None:
        self.context = browser.new_context(**context_args)
        self.context.add_init_script(COLLECT_VIOLATIONS)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", self._console)

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.console.append(message.text)

    def visit(self, url: str, *, status: int = 200) -> None:
        """Open ``url``: the policy came with it and nothing was blocked."""
        response = self.page.goto(url)
        self.page.wait_for_load_state("load")
        assert response.status == status, (url, response.status)
        self.assert_strict(response.headers.get("content-security-policy", ""), url)
        self.assert_clean(url)

    def assert_strict(self, policy: str, url: str) -> None:
        assert policy == settings.PREFLOOP_CSP, (url, policy)
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy

    def assert_clean(self, where: str) -> None:
        violations = self.page.evaluate("window.__csp")
        assert violations == [], (where, violations)
        assert self.console == [], (where, self.console)

    def close(self) -> None:
        self.context.close()
