"""An annotator ranks lists in a real browser: by keyboard, by dragging, and with ties.

The ranking the server stores must be exactly the order on screen, each answer
must be swapped in by htmx, and screenshots of the listwise layout (desktop and
phone) are left for people to look at.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Assignment, Judgment
from tests.e2e.helpers import NEW_COMPARISON, log_in, member, wait_for
from tests.factories import CandidateFactory, PromptFactory, StudyFactory

pytestmark = [pytest.mark.e2e]

PROMPTS = {
    "Explain what a hash table is to a new programmer.": [
        "A hash table stores key–value pairs. A **hash function** turns each key into an index in an array, "
        "so looking a key up takes about the same time however many entries there are.",
        "It's a table of hashes.",
        "Think of a coat check: you hand over a coat (the value) and get a numbered ticket (the hash of the key). "
        "Showing the ticket gets the coat back at once, without searching every hook.",
        "A data structure. Python's `dict` is one:\n\n```python\nages = {'ada': 36}\nages['ada']  # 36\n```",
        "Hash tables are used in many programs.",
    ],
    "Give one tip for sleeping better.": [
        "Keep the same wake-up time every day, weekends included.",
        "Sleep more.",
        "Avoid screens for an hour before bed; the light delays melatonin.",
        "Drink coffee in the evening.",
        "Make the bedroom cool, dark and quiet.",
    ],
}
SCREEN_ORDER = """
() => Array.from(document.querySelectorAll('#comparison .rank-item')).map(li => ({
  position: Number(li.dataset.position), place: li.querySelector('.rank-number').textContent.trim(),
}))
"""


def _shown(comparison_id: int) -> list[int]:
    return Assignment.objects.get(comparison_id=comparison_id).display_order


def test_rank_lists_by_keyboard_drag_and_ties(live_server, transactional_db, browser, artifacts_dir):
    study = StudyFactory(
        name="Ranking study", mode="listwise", list_size=4, allow_tie=True,
        guidelines="Rank the responses from **best** to worst.",
    )  # fmt: skip
    for text, responses in PROMPTS.items():
        prompt = PromptFactory(study=study, text=text)
        for response in responses:
            CandidateFactory(prompt=prompt, text=response)
    user = member(study, "ranker")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(r.url) if "/static/" in r.url and r.status >= 400 else None)
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))
    assert page.evaluate("typeof window.Sortable") == "function", "SortableJS did not load"
    page.evaluate("window.__prefloopMarker = 'same page'")
    expected: dict[int, list] = {}

    # 1. Keyboard: a letter picks a response, a number gives it a place, arrows move it.
    first = int(page.get_attribute("#comparison", "data-comparison-id"))
    page.screenshot(path=str(artifacts_dir / "annotate-listwise.png"), full_page=True)
    page.keyboard.press("c")
    page.keyboard.press("1")  # C A B D
    page.keyboard.press("d")
    page.keyboard.press("2")  # C D A B
    page.keyboard.press("a")
    page.keyboard.press("ArrowDown")  # C D B A
    order = page.evaluate(SCREEN_ORDER)
    assert [o["position"] for o in order] == [2, 3, 1, 0]
    assert [o["place"] for o in order] == ["1", "2", "3", "4"]
    assert page.locator("select[name=rank_2]").input_value() == "1"
    assert "Response A moved to place 4" in page.inner_text("#rank-status")
    page.keyboard.press("Enter")
    page.wait_for_function(NEW_COMPARISON, arg=str(first), timeout=10_000)
    # htmx settles new content a moment after the swap; the list is ready then.
    page.wait_for_selector("#comparison .rank-list[data-ready=true]")
    shown = _shown(first)
    expected[first] = [shown[2], shown[3], shown[1], shown[0]]

    # 2. Mouse: drag the last response to the top, then tie the third with the second.
    second = int(page.get_attribute("#comparison", "data-comparison-id"))
    assert page.evaluate("!!Sortable.get(document.querySelector('#comparison .rank-list'))"), "no Sortable"
    # The whole list on screen, so the drag starts and ends on visible items.
    page.set_viewport_size({"width": 1280, "height": 1600})
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(100)
    handles = page.locator("#comparison .rank-item .rank-side")
    source, target = handles.nth(3).bounding_box(), handles.nth(0).bounding_box()
    page.mouse.move(source["x"] + source["width"] / 2, source["y"] + 20)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(target["x"] + target["width"] / 2, source["y"] + 20 + (target["y"] - source["y"]) * step / 10)
        page.wait_for_timeout(30)
    page.mouse.up()
    page.wait_for_timeout(200)
    assert [o["position"] for o in page.evaluate(SCREEN_ORDER)] == [3, 0, 1, 2]
    page.locator("#comparison .rank-item").nth(2).get_by_role("button", name="Tie with the one above").click()
    order = page.evaluate(SCREEN_ORDER)
    assert [o["place"] for o in order] == ["1", "2", "2", "4"]
    page.screenshot(path=str(artifacts_dir / "annotate-listwise-tie.png"), full_page=True)
    page.get_by_role("button", name="Submit ranking").click()
    page.wait_for_function(NEW_COMPARISON, arg=str(second), timeout=10_000)
    shown = _shown(second)
    expected[second] = [shown[3], [shown[0], shown[1]], shown[2]]

    # 3. Phone layout, with the handle column still usable.
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts_dir / "annotate-listwise-phone.png"))
    assert page.evaluate("window.__prefloopMarker") == "same page", "an answer reloaded the page"
    wait_for(page, lambda: Judgment.objects.filter(annotator=user).count() == 2, "both rankings to be saved")
    context.close()

    assert not errors, errors
    judgments = {j.comparison_id: j for j in Judgment.objects.filter(annotator=user)}
    assert {cid: j.ranking for cid, j in judgments.items()} == expected
    assert all(j.choice == "ranked" and j.time_on_task_ms and j.time_on_task_ms > 0 for j in judgments.values())
