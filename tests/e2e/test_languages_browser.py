"""The annotate page in German (from the browser's language) and in Arabic (set
by the study), right to left (issue 18): the page turns, A's card is on the
right, the arrow keys follow the cards, people's text keeps its own direction,
and the answer is recorded. Screenshots of both are left for people to look at."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Judgment, Study
from tests.e2e.helpers import NEW_COMPARISON, member, study_with_prompts, wait_for
from tests.factories import PASSWORD

pytestmark = [pytest.mark.e2e]

PROMPTS = {
    "Which sentence is the better translation of 'The library opens at nine'?": [
        "المكتبة تفتح أبوابها في الساعة التاسعة.",
        "The library is open nine.",
    ],
    "Summarise: the meeting moved to Thursday because the room was booked.": [
        "The meeting is now on Thursday; the room was taken.",
        "Meeting Thursday.",
    ],
}


def _annotate(browser, live_server, user, study, locale: str):
    """Sign in (the sign-in page is in the browser's language too) and open the annotate page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
    page = context.new_page()
    target = reverse("annotate", args=[study.slug])
    page.goto(live_server.url + reverse("login") + "?next=" + target)
    page.locator('input[name="username"]').fill(user.username)
    page.locator('input[name="password"]').fill(PASSWORD)
    page.locator('form button[type="submit"]').click()
    page.wait_for_url(live_server.url + target)
    page.wait_for_load_state("load")
    return page


def test_german_from_the_browser(live_server, transactional_db, browser, artifacts_dir):
    study = study_with_prompts(PROMPTS, name="Übersetzungen", guidelines="Wählen Sie die bessere Antwort.")
    user = member(study, "anna")
    page = _annotate(browser, live_server, user, study, "de-DE")
    assert page.locator("html").get_attribute("lang") == "de"
    assert page.title() == "Annotieren · Übersetzungen · prefloop"
    assert page.locator("html").get_attribute("dir") == "ltr"
    assert page.get_by_role("button", name="A ist besser").is_visible()
    assert "Diesen Vergleich überspringen" in page.locator(".skip summary").inner_text()
    page.screenshot(path=str(artifacts_dir / "annotate-de.png"), full_page=True)
    first = page.locator("#comparison").get_attribute("data-comparison-id")
    page.wait_for_timeout(400)  # the page ignores answer keys for its first moments
    page.keyboard.press("ArrowLeft")  # left is A in a left-to-right page
    page.wait_for_function(NEW_COMPARISON, arg=first)
    wait_for(page, lambda: Judgment.objects.filter(annotator=user).exists(), "the answer")
    judgment = Judgment.objects.get(annotator=user)
    assert judgment.ranking[0] == judgment.shown_order[0]
    page.context.close()


def test_arabic_set_by_the_study_reads_right_to_left(live_server, transactional_db, browser, artifacts_dir):
    # One prompt, so the comparison on screen is the one with an Arabic and an English response.
    first_prompt = dict(list(PROMPTS.items())[:1])
    study = study_with_prompts(first_prompt, name="ترجمات", slug="tarjamat", guidelines="اختر الإجابة الأفضل.")
    Study.objects.filter(id=study.id).update(language="ar")
    user = member(study, "omar")
    page = _annotate(browser, live_server, user, study, "en-US")  # the study's language wins
    assert page.locator("html").get_attribute("lang") == "ar"
    assert page.locator("html").get_attribute("dir") == "rtl"
    a_box = page.locator('.candidate[data-card="A"]').bounding_box()
    b_box = page.locator('.candidate[data-card="B"]').bounding_box()
    assert a_box["x"] > b_box["x"], "in a right-to-left page the first card is on the right"
    assert page.get_by_role("button", name="A أفضل").is_visible()
    # English text in a response keeps its own direction inside the Arabic page.
    shown = page.locator('.candidate .rendered-view > [dir="auto"]')
    directions = shown.evaluate_all("nodes => nodes.map(n => getComputedStyle(n).direction)")
    texts = shown.all_inner_texts()
    for text, direction in zip(texts, directions, strict=True):
        expected = "rtl" if any("\u0600" <= ch <= "\u06ff" for ch in text[:1]) else "ltr"
        assert direction == expected, (text, direction)
    assert sorted(directions) == ["ltr", "rtl"]
    page.screenshot(path=str(artifacts_dir / "annotate-ar-rtl.png"), full_page=True)
    first = page.locator("#comparison").get_attribute("data-comparison-id")
    page.wait_for_timeout(400)
    page.keyboard.press("ArrowRight")  # right is A in a right-to-left page
    page.wait_for_function(NEW_COMPARISON, arg=first)
    wait_for(page, lambda: Judgment.objects.filter(annotator=user).exists(), "the answer")
    judgment = Judgment.objects.get(annotator=user)
    assert judgment.choice == "a" and judgment.ranking[0] == judgment.shown_order[0]
    assert "انتهى كل شيء — شكرًا لك!" in page.locator("#comparison h2").inner_text()
    page.context.close()
