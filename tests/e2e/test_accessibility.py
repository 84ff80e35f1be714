"""Accessibility of the pages people use, checked by axe-core in a real browser.

Every page is checked against WCAG 2.1 A and AA (labels, roles, focus order,
colour contrast in light and dark mode) on a desktop and a phone viewport. Any
violation fails the test with the rule and the elements that break it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from annotation.models import Membership
from tests.factories import PASSWORD, CandidateFactory, MembershipFactory, PromptFactory, StudyFactory, UserFactory

pytestmark = [pytest.mark.e2e]

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
RUN_AXE = """
async () => {
  const tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags}});
  return result.violations.map(v => ({
    rule: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
  }));
}
"""
TEXT = "Explain a **closure** in JavaScript.\n\n```js\nconst f = () => x;\n```"


def _violations(page) -> list[dict]:
    if not AXE.exists():
        pytest.fail(f"axe-core not found at {AXE}: run `npm ci`", pytrace=False)
    # Evaluated through the DevTools protocol: a <script> tag would be inline, which the CSP blocks.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    return page.evaluate(RUN_AXE)


def _study(name: str, **fields):
    study = StudyFactory(name=name, guidelines="Prefer the **correct** answer.", **fields)
    for k in range(2):
        prompt = PromptFactory(study=study, text=f"{TEXT} ({k})")
        for text in ("A function that remembers `x`.", "It's a loop.", "A scope trick:\n\n- one\n- two"):
            CandidateFactory(prompt=prompt, text=text)
    return study


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_pass_axe_wcag_aa(live_server, transactional_db, browser, scheme):
    pairwise = _study(
        "Pairwise a11y", allow_both_bad=True, ask_strength=True, ask_rationale="optional",
        aspects=["helpfulness", "honesty"], highlight_diff=True,
    )  # fmt: skip
    listwise = _study("Listwise a11y", mode="listwise", list_size=3)
    user = UserFactory(username="a11y")
    for study in (pairwise, listwise):
        MembershipFactory(user=user, study=study, role=Membership.Role.ANNOTATOR)
    researcher = UserFactory(username="a11y-researcher")
    MembershipFactory(user=researcher, study=pairwise, role=Membership.Role.RESEARCHER)

    found: dict[str, list[dict]] = {}
    for viewport in ({"width": 1280, "height": 900}, {"width": 390, "height": 844}):
        context = browser.new_context(viewport=viewport, color_scheme=scheme)
        page = context.new_page()
        page.goto(live_server.url + reverse("login"))
        found[f"login {viewport['width']}"] = _violations(page)
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(live_server.url + reverse("home"))
        found[f"home {viewport['width']}"] = _violations(page)
        for study in (pairwise, listwise):
            page.goto(live_server.url + reverse("annotate", args=[study.slug]))
            page.wait_for_load_state("load")
            found[f"{study.slug} {viewport['width']}"] = _violations(page)
        context.close()

    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    page.goto(live_server.url + reverse("login") + "?next=" + reverse("study_detail", args=[pairwise.slug]))
    page.get_by_label("Username").fill(researcher.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + reverse("study_detail", args=[pairwise.slug]))
    found["study page"] = _violations(page)
    context.close()

    failures = {where: v for where, v in found.items() if v}
    assert not failures, failures
