"""Pairwise answer options in a real browser: the strength scale, aspect ratings,
a required rationale, and skipping with a reason.

Required fields are checked by the browser before anything is sent (and again by
the server); skipping needs none of them.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Assignment, Judgment
from tests.e2e.helpers import NEW_COMPARISON, log_in, member, wait_for
from tests.factories import CandidateFactory, PromptFactory, StudyFactory

pytestmark = [pytest.mark.e2e]

PROMPTS = {
    "Is it safe to leave cooked rice out overnight?": [
        "No. *Bacillus cereus* spores survive cooking and their toxin is not destroyed by reheating; "
        "refrigerate rice within an hour or two.",
        "Yes, rice is fine for a day or two at room temperature.",
    ],
    "How many bones does an adult human have?": ["206.", "About 300, more or less."],
    "What is the capital of Australia?": ["Canberra.", "Sydney."],
}


def test_strength_aspects_rationale_and_skip(live_server, transactional_db, browser, artifacts_dir):
    study = StudyFactory(
        name="Answer options study", ask_strength=True, allow_both_bad=True, ask_rationale="required",
        aspects=["helpfulness", "honesty"], guidelines="Prefer **correct** and safe answers.",
    )  # fmt: skip
    for text, responses in PROMPTS.items():
        prompt = PromptFactory(study=study, text=text)
        for response in responses:
            CandidateFactory(prompt=prompt, text=response)
    user = member(study, "options")

    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))

    first = page.get_attribute("#comparison", "data-comparison-id")
    # Nothing rated yet: the browser refuses to send the answer.
    page.keyboard.press("7")
    page.wait_for_timeout(400)
    assert page.get_attribute("#comparison", "data-comparison-id") == first
    assert not Judgment.objects.exists()

    for group, value in (("Helpfulness of response A", "2"), ("Honesty of response A", "3")):
        page.get_by_role("radiogroup", name=group).get_by_role("radio", name=value, exact=True).click()
    for group, value in (("Helpfulness of response B", "5"), ("Honesty of response B", "4")):
        page.get_by_role("radiogroup", name=group).get_by_role("radio", name=value, exact=True).click()
    page.get_by_label("Why?").fill("B explains the risk and what to do.")
    page.screenshot(path=str(artifacts_dir / "annotate-answer-options.png"), full_page=True)
    page.keyboard.press("Escape")  # leave the text box, so keys answer again
    page.keyboard.press("7")  # B much better
    page.wait_for_function(NEW_COMPARISON, arg=first, timeout=10_000)

    # Skip with the keyboard: S opens the skip form; no ratings or reason text needed.
    second = page.get_attribute("#comparison", "data-comparison-id")
    page.keyboard.press("s")
    assert page.evaluate("document.activeElement.id") == "skip-reason"
    page.select_option("#skip-reason", "cannot_judge")
    page.get_by_role("button", name="Skip", exact=True).click()
    page.wait_for_function(NEW_COMPARISON, arg=second, timeout=10_000)
    wait_for(
        page,
        lambda: Assignment.objects.filter(comparison_id=int(second), status="skipped").exists(),
        "the answer and the skip to be saved",
    )
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator(".aspects").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "annotate-answer-options-phone.png"), full_page=True)
    context.close()

    assert not errors, errors
    judgment = Judgment.objects.get()
    a, b = Assignment.objects.get(comparison_id=int(first)).display_order
    assert (judgment.comparison_id, judgment.choice, judgment.strength) == (int(first), "b", "strong")
    assert judgment.rationale == "B explains the risk and what to do."
    assert judgment.aspect_ratings == {
        str(a): {"helpfulness": 2, "honesty": 3},
        str(b): {"helpfulness": 5, "honesty": 4},
    }
    skipped = Assignment.objects.get(comparison_id=int(second))
    assert (skipped.status, skipped.skip_reason) == ("skipped", "cannot_judge")
