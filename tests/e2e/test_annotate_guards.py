"""Answers that must not count twice or go unseen, in a real browser (issue 13 §6):
a key pressed twice answers one comparison, a missing rating is named in the
page without taking the keys away, and a second tab's answer is refused aloud."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Comparison, Judgment
from tests.e2e.helpers import NEW_COMPARISON, log_in, member, study_with_prompts, wait_for

pytestmark = [pytest.mark.e2e]

PROMPTS = {
    "What is the capital of Australia?": ["Canberra.", "Sydney."],
    "How many legs does a spider have?": ["Eight.", "Six."],
    "What is 2*3*4?": ["24", "2*3*4 = 20"],
}


def _open(browser, live_server, study, user, viewport=None):
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))
    return context, page, errors


def test_pressing_1_twice_quickly_answers_one_comparison(live_server, transactional_db, browser):
    study = study_with_prompts(PROMPTS, name="Double press")
    user = member(study, "quick")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The page's clock is Playwright's: stopped while the two presses happen, so
    # the second one falls inside annotate.js's arming time however slow the
    # machine; it runs on again afterwards.
    page.clock.install()
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))
    first = page.get_attribute("#comparison", "data-comparison-id")
    page.clock.pause_at(page.evaluate("Date.now()") + 1000)
    # "1", then "1" again as soon as the next comparison is on screen (shown from
    # the page the moment the first answer goes out).
    page.keyboard.press("1")
    page.wait_for_function("p => document.getElementById('comparison').dataset.comparisonId !== p", arg=first)
    second = page.get_attribute("#comparison", "data-comparison-id")
    page.keyboard.press("1")
    wait_for(page, lambda: Judgment.objects.exists(), "the first answer")
    page.clock.resume()
    page.wait_for_function(NEW_COMPARISON, arg=first, timeout=10_000)
    assert page.get_attribute("#comparison", "data-comparison-id") == second, "the second press moved on"
    page.wait_for_timeout(150)
    page.keyboard.press("2")
    page.wait_for_function(NEW_COMPARISON, arg=second, timeout=10_000)
    wait_for(page, lambda: Judgment.objects.count() >= 2, "two answers to be saved")
    answers = dict(Judgment.objects.values_list("comparison_id", "choice"))
    # The second "1" was ignored: the second comparison got the "2" meant for it.
    assert answers == {int(first): "a", int(second): "b"}, answers
    assert errors == []
    context.close()


def test_after_a_refused_answer_the_keys_work_at_once_and_the_next_comparison_is_armed_again(
    live_server, transactional_db, browser
):
    """The comparison shown ahead while the refused answer was in flight was
    arming when the server's refusal put the annotator's own comparison back:
    that arming time must not swallow the retry, and the comparison taken back
    (never read) is armed again when the retry shows it."""
    study = study_with_prompts(PROMPTS, name="Refused retry")
    user = member(study, "refused")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Playwright's clock, stopped: the refusal comes back inside the arming time
    # of the comparison shown ahead, however slow the machine.
    page.clock.install()
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))
    mine = page.get_attribute("#comparison", "data-comparison-id")
    other = Comparison.objects.filter(study=study).exclude(assignments__annotator=user).values_list("id", flat=True)[0]
    page.evaluate("id => { document.querySelector('input[name=comparison_id]').value = id }", str(other))
    page.clock.pause_at(page.evaluate("Date.now()") + 1000)
    page.keyboard.press("1")
    page.wait_for_selector("#comparison .server-error", timeout=10_000)
    page.clock.run_for(50)  # htmx settles the swap (20 ms); the arming time (350 ms) has not run out
    assert page.get_attribute("#comparison", "data-comparison-id") == mine
    assert page.evaluate("document.getElementById('comparison').classList.contains('arming')") is False
    # The retry goes out at once, and a second press falls on the comparison
    # taken back before, which is armed again: ignored.
    page.keyboard.press("ArrowRight")
    page.wait_for_function("p => document.getElementById('comparison').dataset.comparisonId !== p", arg=mine)
    ahead = page.get_attribute("#comparison", "data-comparison-id")
    assert page.evaluate("document.getElementById('comparison').classList.contains('arming')") is True
    page.keyboard.press("ArrowRight")
    wait_for(page, lambda: Judgment.objects.exists(), "the retried answer")
    page.clock.resume()
    page.wait_for_function(NEW_COMPARISON, arg=mine, timeout=10_000)
    assert page.get_attribute("#comparison", "data-comparison-id") == ahead, "the second press moved on"
    page.keyboard.press("1")
    page.wait_for_function(NEW_COMPARISON, arg=ahead, timeout=10_000)
    wait_for(page, lambda: Judgment.objects.count() >= 2, "two answers to be saved")
    answers = dict(Judgment.objects.values_list("comparison_id", "choice"))
    assert answers == {int(mine): "b", int(ahead): "a"}, answers
    assert errors == []
    context.close()


def test_a_missing_rating_is_named_in_the_page_and_the_keys_keep_working(
    live_server, transactional_db, browser, artifacts_dir
):
    study = study_with_prompts(PROMPTS, name="Ratings", aspects=["helpfulness"])
    user = member(study, "rater")
    context, page, errors = _open(browser, live_server, study, user)
    first = page.get_attribute("#comparison", "data-comparison-id")
    page.keyboard.press("1")
    message = page.locator(".missing-answer")
    message.wait_for(state="visible", timeout=5_000)
    assert "Helpfulness of response A" in message.inner_text() and "Helpfulness of response B" in message.inner_text()
    # No browser pop-up took the focus, nothing was sent.
    assert page.evaluate("document.activeElement.tagName") in ("BODY", "SECTION", "MAIN")
    assert page.get_attribute("#comparison", "data-comparison-id") == first
    page.screenshot(path=str(artifacts_dir / "annotate-missing-rating.png"))
    # Rate by keyboard: focus a point of each scale and press Space; then "1" answers.
    for group in ("Helpfulness of response A", "Helpfulness of response B"):
        page.get_by_role("radiogroup", name=group).get_by_role("radio", name="4", exact=True).focus()
        page.keyboard.press("Space")
    assert message.is_hidden()
    page.keyboard.press("1")
    page.wait_for_function(NEW_COMPARISON, arg=first, timeout=10_000)
    wait_for(page, lambda: Judgment.objects.exists(), "the answer to be saved")
    judgment = Judgment.objects.get()
    assert judgment.choice == "a" and len(judgment.aspect_ratings) == 2
    assert errors == []
    context.close()


def test_a_second_tabs_answer_is_refused_with_a_visible_message(live_server, transactional_db, browser):
    study = study_with_prompts(PROMPTS, name="Two tabs")
    user = member(study, "tabs")
    context, page, errors = _open(browser, live_server, study, user)
    other = context.new_page()
    other.goto(page.url)
    first = page.get_attribute("#comparison", "data-comparison-id")
    assert other.get_attribute("#comparison", "data-comparison-id") == first
    page.wait_for_timeout(150)
    page.keyboard.press("1")
    wait_for(page, lambda: Judgment.objects.exists(), "the first tab's answer")
    other.keyboard.press("2")
    notice = other.locator(".answer-notice")
    notice.wait_for(state="visible", timeout=10_000)
    assert "your earlier answer stands" in notice.inner_text()
    assert other.get_attribute("#comparison", "data-comparison-id") != first
    assert list(Judgment.objects.values_list("comparison_id", "choice")) == [(int(first), "a")]
    assert errors == []
    context.close()
