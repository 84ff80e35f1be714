"""The annotate page's layout on a laptop and on a phone, with screenshots.

At 1366×900 both responses must start above the fold, however long the
conversation before them; on a 390×844 phone the guidelines must not fill the
first screen and the sticky answer bar must never hide the prompt.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.urls import reverse

from tests.e2e.helpers import log_in, member
from tests.factories import CandidateFactory, PromptFactory, StudyFactory

pytestmark = [pytest.mark.e2e]

GUIDELINES = """Read the whole conversation, then compare the two replies to its last message.

- Prefer the reply that is **harmless**: it refuses clearly dangerous requests and does not insult.
- Among harmless replies, prefer the **more helpful** one: specific, correct, and on topic.
- A reply that only repeats the question is not helpful.
- Press *Tie* only when you truly cannot choose; use *Both bad* when neither is acceptable.
- Do not reward length for its own sake: a short, correct reply beats a long, vague one.
- If the conversation contains personal data, judge the replies anyway and skip with a note.
"""
TURNS = [
    ("Human", "My neighbour's dog barks all night and I haven't slept properly in a week. What can I do about it?"),
    (
        "Assistant",
        "That sounds exhausting. The first step is usually to talk to your neighbour calmly: they may not know "
        "the dog barks while they sleep or are out. Would you feel comfortable knocking on their door?",
    ),
    (
        "Human",
        "I tried that twice and they just shrugged. Honestly I'm thinking of giving the dog something "
        "to make it sleep.",
    ),
    (
        "Assistant",
        "I understand the frustration, but giving someone else's animal any substance could hurt it and would "
        "likely be illegal. Have you kept a log of the nights and times it barks?",
    ),
    ("Human", "No. Why would a log help? Just tell me what I can put in a treat."),
]
HH_PROMPT = "".join(f"\n\n{role}: {text}" for role, text in TURNS)
REPLY_A = (
    "\n\nAssistant: I won't help with drugging the dog: it could seriously harm or kill it, and it would put you "
    "at legal risk. A log helps because most councils treat persistent barking as a noise nuisance, and they act "
    "on dated evidence: write down the date, start and end times, and how it affected you, for two weeks. Then "
    "contact your local council's environmental health team, or try a community mediation service first. "
    "Meanwhile, earplugs or a white-noise machine can help you sleep."
)
REPLY_B = (
    "\n\nAssistant: Some people use over-the-counter sleep aids, but I really can't recommend anything for a dog "
    "that isn't yours. You could try writing a polite letter, or asking other neighbours whether the barking bothers "
    "them too, so that you can approach the owner together. If nothing works, a lawyer can tell you what options "
    "you have where you live."
)
SHOTS = Path(os.environ.get("PREFLOOP_LAYOUT_SHOTS", "/tmp"))


@pytest.fixture
def hh_study(transactional_db):
    study = StudyFactory(name="Harmless replies", guidelines=GUIDELINES)
    prompt = PromptFactory(study=study, text=HH_PROMPT)
    CandidateFactory(prompt=prompt, text=REPLY_A)
    CandidateFactory(prompt=prompt, text=REPLY_B)
    return study


def _box(page, selector: str) -> dict:
    return page.locator(selector).first.evaluate(
        "e => { const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, left: r.left}; }"
    )


def test_both_responses_start_above_the_fold_at_1366x900(live_server, hh_study, browser):
    user = member(hh_study, "laptop")
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    log_in(page, live_server, user, reverse("annotate", args=[hh_study.slug]))
    page.screenshot(path=str(SHOTS / "annotate-1366x900.png"))
    a, b = _box(page, '.candidate[data-card="A"]'), _box(page, '.candidate[data-card="B"]')
    # Each response's heading and its first lines are on the first screen.
    assert a["top"] + 80 < 900, a
    assert b["top"] + 80 < 900, b
    context.close()


def test_phone_guidelines_and_sticky_bar_leave_the_prompt_readable(live_server, hh_study, browser):
    user = member(hh_study, "phone")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, live_server, user, reverse("annotate", args=[hh_study.slug]))
    page.screenshot(path=str(SHOTS / "annotate-390x844.png"))
    prompt = _box(page, ".prompt")
    # The prompt starts on the first screen: the guidelines do not fill it.
    assert prompt["top"] < 844 * 0.6, prompt
    # Wherever the annotator scrolls, the sticky answer bar covers no prompt text.
    covered = page.evaluate(
        """() => {
          const bar = document.querySelector('.choices');
          const prompt = document.querySelector('.prompt');
          const hits = [];
          for (let y = 0; y < document.documentElement.scrollHeight; y += 120) {
            window.scrollTo(0, y);
            const b = bar.getBoundingClientRect();
            const p = prompt.getBoundingClientRect();
            if (getComputedStyle(bar).position === 'sticky' && b.top < p.bottom && b.bottom > p.top) hits.push(y);
          }
          window.scrollTo(0, 0);
          return hits;
        }"""
    )
    assert covered == [], f"the answer bar covers the prompt at scroll offsets {covered}"
    page.screenshot(path=str(SHOTS / "annotate-390x844-full.png"), full_page=True)
    context.close()


def test_a_long_prompt_shows_its_ends_and_the_rest_on_demand(live_server, transactional_db, browser):
    lines = [f"Line {k}: the reading room is open from nine to five." for k in range(1500)]
    lines[750] = "MIDDLE-OF-THE-PROMPT"
    study = StudyFactory(name="Long prompt")
    prompt = PromptFactory(study=study, text="\n".join(lines))
    CandidateFactory(prompt=prompt, text="Nine.")
    CandidateFactory(prompt=prompt, text="Five.")
    user = member(study, "longreader")
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))
    body = page.locator(".prompt-body")
    assert "Line 0:" in body.inner_text() and "Line 1499:" in body.inner_text()
    assert "MIDDLE-OF-THE-PROMPT" not in body.inner_text()
    show_all = page.get_by_role("link", name="Show all (")
    show_all.focus()  # keyboard-reachable: a link, opened with Enter
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('.prompt-body').innerText.includes('MIDDLE-OF-THE-PROMPT')")
    assert page.get_by_role("link", name="Show all (").count() == 0
    # The answer keys still work after the swap.
    shown = page.get_attribute("#comparison", "data-comparison-id")
    page.locator("#comparison").focus()
    page.keyboard.press("1")
    page.wait_for_function(
        "p => document.getElementById('comparison').dataset.comparisonId !== p", arg=shown, timeout=10_000
    )
    context.close()
