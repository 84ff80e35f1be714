"""An annotator answers three comparisons with the keyboard, in a real browser.

Each answer must be swapped in by htmx (no full page load), record the right
choice and a time on task, and leave screenshots for people to look at.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Comparison, Judgment
from tests.e2e.helpers import NEW_COMPARISON, log_in, member, study_with_prompts, wait_for
from tests.factories import PASSWORD

pytestmark = [pytest.mark.e2e]

GUIDELINES = """Compare the two responses to the prompt.

- Prefer the response that is **correct** and **helpful**.
- Press *Tie* only when neither is clearly better.
"""
PROMPTS = {
    "How do I reverse a list in Python?": [
        "Use slicing:\n\n    items[::-1]\n\nThis returns a new list; `items.reverse()` reverses in place.",
        "Call reversed(items). It gives an iterator, so wrap it in list() if you need a list.",
        "You can't reverse lists in Python.",
    ],
    "Write a haiku about autumn.": [
        "Crisp leaves drift and fall\nthe maple lets go of red\nsoft light, shorter days",
        "Autumn is a season that comes after summer and before winter.",
        "Amber afternoon —\nchestnuts split on the cold path,\nsmoke of distant fires",
    ],
}


def test_keyboard_answers_swap_in_without_reload(live_server, transactional_db, browser, artifacts_dir):
    study = study_with_prompts(PROMPTS, name="Keyboard study", guidelines=GUIDELINES)
    # No queue yet: the first visit tops it up synchronously.
    user = member(study, "keyboard")

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    failed_assets: list[str] = []
    page.on("response", lambda r: failed_assets.append(r.url) if "/static/" in r.url and r.status >= 400 else None)

    page.goto(live_server.url + reverse("login"))
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + reverse("home"))
    page.get_by_role("link", name="Annotate").click()
    page.wait_for_url(live_server.url + reverse("annotate", args=[study.slug]))
    page.wait_for_load_state("load")

    assert not failed_assets, f"static files failed to load: {failed_assets}"
    assert page.evaluate("typeof window.htmx") == "object", "htmx.min.js did not load"
    assert page.title() == "Annotate · Keyboard study · prefloop"
    # A full page load would wipe this.
    page.evaluate("window.__prefloopMarker = 'same page'")
    # Answers swap in the comparison the page already holds (leased ahead), without waiting for the server.
    page.evaluate("window.__prefetched = 0; document.addEventListener('prefloop:shown', () => window.__prefetched++)")

    answered: list[tuple[int, str]] = []
    for key, choice in (("1", "a"), ("2", "b"), ("3", "tie")):
        shown = page.get_attribute("#comparison", "data-comparison-id")
        assert shown, "expected a comparison on the page"
        page.wait_for_timeout(150)  # some time on task
        page.keyboard.press(key)
        page.wait_for_function(NEW_COMPARISON, arg=shown, timeout=10_000)
        assert page.evaluate("window.__prefloopMarker") == "same page", "the answer reloaded the page"
        answered.append((int(shown), choice))

    assert page.evaluate("window.__prefetched") == 3, "each next comparison was already on the page"
    # The progress bar counted the three answers (it comes with the server's reply).
    page.wait_for_function(
        "() => document.querySelector('.progress-text').innerText.includes('You: 3 judgments')", timeout=10_000
    )
    page.screenshot(path=str(artifacts_dir / "annotate-pairwise.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts_dir / "annotate-phone.png"))
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(300)  # let the cards' colour transition finish
    page.screenshot(path=str(artifacts_dir / "annotate-phone-dark.png"))
    context.close()

    judgments = list(Judgment.objects.filter(annotator=user).order_by("id"))
    assert [(j.comparison_id, j.choice) for j in judgments] == answered
    assert all(j.time_on_task_ms is not None and j.time_on_task_ms >= 100 for j in judgments)
    assert {j.client_info.get("via") for j in judgments} == {"htmx"}


def test_refused_answer_is_shown_in_place_and_can_be_retried(live_server, transactional_db, browser):
    """A 400 from the server (answer to a comparison not leased to me) is swapped in, not dropped."""
    study = study_with_prompts(PROMPTS, name="Retry study")
    user = member(study, "retry")

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))

    mine = page.get_attribute("#comparison", "data-comparison-id")
    # Not this one, nor the one leased ahead of it: a comparison never given to this annotator.
    other = Comparison.objects.filter(study=study).exclude(assignments__annotator=user).values_list("id", flat=True)[0]
    page.evaluate("id => { document.querySelector('input[name=comparison_id]').value = id }", str(other))
    page.keyboard.press("1")
    page.wait_for_selector("#comparison .server-error", timeout=10_000)
    assert "was not assigned to you" in page.inner_text("#comparison .server-error")
    assert page.get_attribute("#comparison", "data-comparison-id") == mine  # still mine to answer
    assert page.is_enabled("button[value=b]")

    page.keyboard.press("ArrowRight")
    page.wait_for_function(NEW_COMPARISON, arg=mine, timeout=10_000)
    assert page.locator("#comparison .server-error").count() == 0
    wait_for(page, Judgment.objects.exists, "the answer to be saved")
    context.close()

    assert list(Judgment.objects.values_list("comparison_id", "choice")) == [(int(mine), "b")]


def test_undo_with_the_keyboard_brings_the_answer_back(live_server, transactional_db, browser):
    """U right after an answer takes it back; the same comparison can be answered again."""
    study = study_with_prompts(PROMPTS, name="Undo study")
    user = member(study, "undoer")

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))

    first = page.get_attribute("#comparison", "data-comparison-id")
    page.keyboard.press("1")
    page.wait_for_function(NEW_COMPARISON, arg=first, timeout=10_000)
    # The next comparison shows at once; the offer to undo comes when the server has saved the answer.
    page.wait_for_selector(".undo-bar", state="visible", timeout=10_000)
    assert "Answer saved." in page.inner_text(".undo-bar")
    # It hides itself after the 8 seconds it is offered for.
    assert page.evaluate("getComputedStyle(document.querySelector('.undo-bar')).animationDelay") == "8s"
    second = page.get_attribute("#comparison", "data-comparison-id")
    page.keyboard.press("u")
    page.wait_for_function(NEW_COMPARISON, arg=second, timeout=10_000)
    assert page.get_attribute("#comparison", "data-comparison-id") == first
    assert not Judgment.objects.filter(annotator=user).exists()
    page.keyboard.press("2")
    page.wait_for_function(NEW_COMPARISON, arg=first, timeout=10_000)
    wait_for(page, Judgment.objects.filter(annotator=user).exists, "the answer to be saved")
    context.close()

    assert list(Judgment.objects.filter(annotator=user).values_list("comparison_id", "choice")) == [(int(first), "b")]


def test_guidelines_open_first_and_toggle_with_g(live_server, transactional_db, browser):
    study = study_with_prompts(PROMPTS, name="Guidelines study", guidelines=GUIDELINES)
    user = member(study, "reader-g")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))
    assert page.evaluate("document.querySelector('details.guidelines').open") is True
    page.keyboard.press("g")
    assert page.evaluate("document.querySelector('details.guidelines').open") is False
    page.keyboard.press("g")
    assert page.evaluate("document.querySelector('details.guidelines').open") is True
    context.close()
