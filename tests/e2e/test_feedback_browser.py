"""Richer feedback in a real browser, by keyboard alone: F opens the panel, Space
ticks an issue tag, Shift+arrows select words of a response and Enter marks
them with a tag, a better response is started from a shown one and edited,
and an answer key sends it all. What is stored is checked in the database.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Candidate, Judgment
from tests.e2e.helpers import NEW_COMPARISON, log_in, member, study_with_prompts, wait_for

pytestmark = [pytest.mark.e2e]

PROMPTS = {
    "What is the capital of Australia?": ["Canberra is the capital.", "Sydney is the capital of Australia."],
    "How many bones does an adult human have?": ["An adult has 206 bones.", "About 300 bones, more or less."],
}


def _focused(page) -> str:
    return page.evaluate("document.activeElement.className + '|' + (document.activeElement.value || '')")


def test_tags_spans_and_a_better_response_by_keyboard(live_server, transactional_db, browser, artifacts_dir):
    study = study_with_prompts(
        PROMPTS,
        name="Feedback study",
        feedback_tags=["factual error", "unsafe", "off topic"],
        tag_spans=True,
        allow_rewrite=True,
    )
    user = member(study, "feedback")
    context = browser.new_context(viewport={"width": 1280, "height": 1300})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))
    first = page.get_attribute("#comparison", "data-comparison-id")

    # F opens the panel and puts the focus on the first tag of response A.
    page.keyboard.press("f")
    assert page.locator("#comparison details.feedback").evaluate("d => d.open")
    assert page.evaluate("document.activeElement.name") == "tag_0"
    page.keyboard.press("Tab")  # "unsafe" of A
    page.keyboard.press("Tab")  # "off topic" of A
    page.keyboard.press("Tab")  # "factual error" of B
    page.keyboard.press("Space")
    assert page.locator('input[name="tag_1"][value="factual error"]').is_checked()

    # The span marker: choose response B, select its first word with Shift+arrows, Enter marks it.
    b_text = page.locator('#comparison article[data-card="B"] .rendered-view').inner_text().strip()
    first_word = b_text.split()[0]
    page.locator("#comparison .span-response").focus()
    page.keyboard.press("ArrowDown")
    assert page.locator("#comparison .span-response").input_value() == "1"
    page.keyboard.press("Tab")  # the tag list: "factual error" is first
    page.keyboard.press("Tab")  # Add span
    page.keyboard.press("Tab")  # the text box
    assert page.evaluate("document.activeElement.classList.contains('span-source')")
    # An empty selection says what to do instead of marking nothing.
    page.keyboard.press("Enter")
    item = page.locator("#comparison .span-item")
    assert page.locator("#comparison .span-error").is_visible() and item.count() == 0
    # Chromium's late "select" event for a caret move (no words selected) leaves the message up.
    page.dispatch_event("#comparison .span-source", "select")
    assert page.locator("#comparison .span-error").is_visible()
    # The caret starts at the top of the text.
    for _ in first_word:
        page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Enter")
    assert item.count() == 1 and item.locator("q").inner_text() == first_word
    assert not page.locator("#comparison .span-error").is_visible()

    # A better response, started from B and corrected.
    page.get_by_role("button", name="Response B", exact=True).focus()
    page.keyboard.press("Enter")
    rewrite = page.locator("#comparison textarea[name=rewrite_text]")
    assert rewrite.input_value() == b_text and page.evaluate("document.activeElement.name") == "rewrite_text"
    page.keyboard.press("Control+a")
    page.keyboard.type("A corrected response, written by hand.")
    page.locator("#comparison details.feedback").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "annotate-feedback.png"), full_page=True)
    page.keyboard.press("Escape")  # leave the box: answer keys work again
    page.keyboard.press("1")  # A is better
    page.wait_for_function(NEW_COMPARISON, arg=first, timeout=10_000)
    wait_for(page, lambda: Judgment.objects.filter(comparison_id=int(first)).exists(), "the answer to be saved")

    judgment = Judgment.objects.get(comparison_id=int(first))
    b_id = judgment.shown_order[1]
    assert judgment.choice == "a" and judgment.response_tags == {str(b_id): ["factual error"]}
    assert judgment.spans == [
        {"candidate_id": b_id, "start": 0, "end": len(first_word), "tag": "factual error", "text": first_word}
    ]
    written = Candidate.objects.get(author=user)
    assert (written.text, written.revises_id, judgment.rewrite_id) == (
        "A corrected response, written by hand.", b_id, written.id,
    )  # fmt: skip
    # The next comparison starts with a closed, empty panel.
    assert not page.locator("#comparison details.feedback").evaluate("d => d.open")
    assert page.locator("#comparison .span-item").count() == 0
    assert errors == []
    context.close()
