"""Shared steps of the browser tests: a study with prompts, an annotator, signing in."""

from __future__ import annotations

from collections.abc import Callable

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
