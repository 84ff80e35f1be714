"""Answers in quick succession: the next comparison is shown from the page
before the server replies, and neither a fast key nor replies arriving out of
order may post a full page or put an answered comparison back on screen."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Judgment
from tests.e2e.helpers import NEW_COMPARISON, log_in, member, study_with_prompts, wait_for

pytestmark = [pytest.mark.e2e]

SHOWN = "document.getElementById('comparison').dataset.comparisonId"
# The annotator presses 1 in the very next task after htmx swaps a comparison in.
PRESS_AS_IT_LANDS = """
() => document.addEventListener("htmx:afterSwap", () => setTimeout(() =>
  document.dispatchEvent(new KeyboardEvent("keydown", { key: "1", bubbles: true }))), { once: true })
"""

# Every comparison put on screen, in order (repeats of the same one collapsed).
RECORD_SHOWN = """
() => {
  window.__shown = [document.getElementById("comparison").dataset.comparisonId];
  new MutationObserver(() => {
    const el = document.getElementById("comparison");
    const id = el && el.dataset.comparisonId;
    if (id && window.__shown[window.__shown.length - 1] !== id) window.__shown.push(id);
  }).observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-comparison-id"],
  });
}
"""


def open_study(live_server, browser, name: str, username: str):
    study = study_with_prompts(
        {f"Prompt {k}": [f"First {k}", f"Second {k}", f"Third {k}"] for k in range(6)}, name=name
    )
    user = member(study, username)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))
    page.evaluate("window.__samePage = true")  # a full page load would wipe this
    return study, user, context, page


def test_a_key_pressed_as_a_comparison_lands_posts_no_page(live_server, transactional_db, browser):
    """A key pressed in the very task a comparison is swapped in is ignored (the
    annotator has not seen it: annotate.js ARM_MS), and above all posts no full
    page; once the comparison takes answers, the key answers it in place."""
    _, user, context, page = open_study(live_server, browser, "Fast hands", "fast")
    documents = []
    page.on("request", lambda r: documents.append(r.url) if r.resource_type == "document" else None)

    # Without the comparison ahead, this answer waits for its reply and an htmx swap.
    page.evaluate("document.querySelector('template#comparison-ahead').remove()")
    page.evaluate(PRESS_AS_IT_LANDS)
    first = page.evaluate(SHOWN)
    page.keyboard.press("1")
    page.wait_for_function(NEW_COMPARISON, arg=first)  # swapped in, and done arming
    second = page.evaluate(SHOWN)
    wait_for(page, lambda: Judgment.objects.filter(annotator=user).count() == 1, "the first answer")
    assert Judgment.objects.filter(annotator=user).count() == 1, "the key pressed as it landed answered it"
    page.keyboard.press("1")
    wait_for(page, lambda: Judgment.objects.filter(annotator=user).count() == 2, "the second answer")
    page.wait_for_function(NEW_COMPARISON, arg=second)

    assert not documents, f"an answer was posted as a full page load: {documents}"
    assert page.evaluate("window.__samePage") is True
    context.close()


def test_answers_reach_the_server_in_order_and_nothing_comes_back(live_server, transactional_db, browser):
    study, user, context, page = open_study(live_server, browser, "Quick answers", "quick")
    page.evaluate(RECORD_SHOWN)

    # Hold the first answer in the browser, as a slow network would.
    held, sent = [], []

    def hold_first(route):
        sent.append(route.request.post_data)
        if not held:
            held.append(route)
        else:
            route.continue_()

    page.route(live_server.url + reverse("annotate_submit", args=[study.slug]), hold_first)
    replies = []
    page.on("response", lambda r: replies.append(r) if "/annotate/submit/" in r.url else None)

    first = page.evaluate(SHOWN)
    page.keyboard.press("1")  # shown at once from the page: the second comparison
    page.wait_for_function(NEW_COMPARISON, arg=first)
    wait_for(page, lambda: len(held) == 1, "the first answer on the wire")
    second = page.evaluate(SHOWN)
    page.keyboard.press("1")  # answered while the first is still on the wire
    page.wait_for_timeout(300)
    # Sent first, the second answer would reach the server while the first
    # comparison is still unanswered there, and its reply would show it again.
    assert len(sent) == 1, "the second answer went out before the first was answered"

    held[0].continue_()
    wait_for(page, lambda: Judgment.objects.filter(annotator=user).count() == 2, "both answers")
    page.wait_for_function(NEW_COMPARISON, arg=second)
    assert f"comparison_id={second}" in sent[1]
    page.wait_for_timeout(300)  # any late swap would land by now

    shown = page.evaluate("window.__shown")
    assert len(shown) == len(set(shown)), f"a comparison came back on screen: {shown}"
    assert shown[:2] == [first, second] and len(shown) == 3
    assert page.evaluate("window.__samePage") is True
    judged = Judgment.objects.filter(annotator=user).values_list("comparison_id", flat=True)
    assert sorted(judged) == sorted([int(first), int(second)])

    # Each answer said which comparison the page already showed, and its reply
    # carried only the parts around it; the page kept a comparison that answers.
    assert [r.request.headers.get("x-prefloop-showing") for r in replies] == [second, shown[2]]
    assert all('id="answer-form"' not in r.text().split("comparison-ahead")[0] for r in replies)
    page.keyboard.press("1")
    wait_for(page, lambda: Judgment.objects.filter(annotator=user).count() == 3, "the third answer")
    assert Judgment.objects.filter(annotator=user, comparison_id=int(shown[2])).exists()
    context.close()
