"""Review from the keyboard (issue 18): a reviewer opens the review queue from
the home page, walks it with J/K, opens an item, gives a reason and settles it
with a number key; an annotator changes an answer of theirs from "My answers".
Screenshots of the queue and an item are left for people to look at."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Comparison, Judgment, Membership, ReviewItem
from annotation.services.review import reviews_collect
from tests.annotation.test_review import _answer, _items
from tests.e2e.helpers import log_in, member, study_with_prompts, wait_for

pytestmark = [pytest.mark.e2e]


def _study():
    from activelearn.refill import queue_refill

    study = study_with_prompts(
        {
            "What is the boiling point of water at sea level?": [
                "100 °C (212 °F) at standard atmospheric pressure.",
                "It boils at 90 °C everywhere.",
            ],
            "Name a prime number between 10 and 15.": ["11 (13 is another).", "12"],
            "Translate 'thank you' into French.": ["Merci.", "Gracias."],
        },
        name="Team review",
        review_rules=["disagreement", "flagged"],
        evaluation_rate=0.0,
        allow_tie=True,
    )
    queue_refill(study_id=study.id, use_model=False, seed=0)
    return study


def test_a_reviewer_settles_the_queue_from_the_keyboard(live_server, transactional_db, browser, artifacts_dir):
    study = _study()
    ann, bob = member(study, "ann"), member(study, "bob")
    reviewer = member(study, "rita", role=Membership.Role.REVIEWER)
    comparisons = list(Comparison.objects.filter(study=study).order_by("id"))
    for comparison in comparisons:
        _answer(study, ann, comparison, "a")
        _answer(study, bob, comparison, "b")
    reviews_collect(study_id=study.id)
    assert ReviewItem.objects.filter(study=study, status="open").count() == 3
    first = ReviewItem.objects.filter(study=study).order_by("id").first()
    better, worse = _items(first.comparison)[::-1]

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, live_server, reviewer, reverse("home"))
    page.get_by_role("link", name="Review", exact=True).click()
    page.wait_for_load_state("load")
    assert page.locator("#review-queue tbody tr").count() == 3
    assert "Annotators disagree" in page.locator("#review-queue").inner_text()
    page.keyboard.press("j")
    assert page.locator("#review-queue .review-row.is-selected").count() == 1
    page.screenshot(path=str(artifacts_dir / "review-queue.png"), full_page=True)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/review/{first.id}/")
    assert "Why it is here" in page.content()
    assert page.locator("#review-answers tbody tr").count() == 2
    page.screenshot(path=str(artifacts_dir / "review-item.png"), full_page=True)

    page.get_by_label("Exclude bob's answer").check()
    with page.expect_navigation():
        page.keyboard.press("2")  # B is better, but no reason yet: refused, and nothing lost
    assert "needs a reason" in page.locator("#verdict-error").inner_text()
    assert page.get_by_label("Exclude bob's answer").is_checked()
    page.get_by_label("Exclude bob's answer").uncheck()
    page.keyboard.press("e")
    page.keyboard.type("B is the accurate answer")
    page.keyboard.press("Escape")
    with page.expect_navigation():
        page.keyboard.press("2")
    assert "settled on b" in page.locator(".messages").inner_text()
    wait_for(page, lambda: ReviewItem.objects.get(pk=first.pk).status == "resolved", "the verdict")
    ann_judgment = Judgment.objects.get(comparison=first.comparison, annotator=ann)
    assert ann_judgment.review_state == "overturned" and ann_judgment.adjudicated_ranking[0] == better != worse
    # The next open item is on screen; its history starts empty, the settled one's is kept.
    assert "No change yet" in page.content()
    page.goto(live_server.url + reverse("review_item", args=[study.slug, first.id]))
    history = page.locator("#review-history").inner_text()
    assert "Overturned" in history and "B is the accurate answer" in history and "rita" in history
    page.context.close()


def test_an_annotator_changes_an_answer_within_the_window(live_server, transactional_db, browser, artifacts_dir):
    study = _study()
    ann = member(study, "ann")
    comparison = Comparison.objects.filter(study=study).order_by("id").first()
    mine = _answer(study, ann, comparison, "a")

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, live_server, ann, reverse("home"))
    page.get_by_role("link", name="My answers").click()
    page.wait_for_load_state("load")
    assert "A>B" in page.locator("#my-answers").inner_text()
    page.get_by_role("link", name="Change").click()
    page.wait_for_load_state("load")
    assert page.locator("#current-answer").inner_text() == "A>B"
    with page.expect_navigation():
        page.keyboard.press("2")
    assert "Your answer was changed" in page.locator(".messages").inner_text()
    wait_for(page, lambda: Judgment.objects.get(pk=mine.pk).choice == "b", "the amendment")
    assert "B>A" in page.locator("#my-answers").inner_text() and "changed" in page.locator("#my-answers").inner_text()
    page.screenshot(path=str(artifacts_dir / "my-answers.png"), full_page=True)
    page.context.close()
