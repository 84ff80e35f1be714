"""Conversations, highlighted code and the difference view as an annotator sees them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.e2e.helpers import log_in, member
from tests.factories import CandidateFactory, PromptFactory, StudyFactory

pytestmark = [pytest.mark.e2e]

HH = (
    "\n\nHuman: My Python script says `KeyError: 'user'`. What does that mean?"
    "\n\nAssistant: The dictionary has no key called `'user'`. Can you show the line that fails?"
    "\n\nHuman: It's `name = data['user']['name']`. How do I make it safe?"
)
GOOD = (
    "\n\nAssistant: Use `dict.get`, which returns `None` (or a default) instead of raising:\n\n"
    "```python\nuser = data.get('user', {})\nname = user.get('name', 'anonymous')\n```"
)
WORSE = (
    "\n\nAssistant: Wrap it in try/except:\n\n"
    "```python\ntry:\n    name = data['user']['name']\nexcept KeyError:\n    name = None\n```"
)


def test_conversation_code_and_differences(live_server, transactional_db, browser, artifacts_dir):
    study = StudyFactory(name="Conversation study", highlight_diff=True, guidelines="Pick the safer fix.")
    prompt = PromptFactory(study=study, text=HH)
    CandidateFactory(prompt=prompt, text=GOOD)
    CandidateFactory(prompt=prompt, text=WORSE)
    user = member(study, "reader")

    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))

    roles = page.locator(".prompt .turn-role").all_inner_texts()
    assert [r.strip().lower() for r in roles] == ["human", "assistant", "human"]
    assert page.locator(".candidate .turn-assistant").count() == 2
    # Code is coloured by the stylesheet: a keyword differs from plain text.
    keyword = page.locator(".candidate .highlight .k").first
    plain = page.locator(".candidate .highlight .n").first
    assert keyword.evaluate("e => getComputedStyle(e).color") != plain.evaluate("e => getComputedStyle(e).color")
    page.screenshot(path=str(artifacts_dir / "annotate-conversation.png"), full_page=True)

    assert not page.locator(".diff-view").first.is_visible()
    page.keyboard.press("d")
    assert page.locator(".diff-view").first.is_visible()
    assert page.locator(".diff-view mark.diff").count() > 0
    assert not page.locator(".candidate .rendered-view").first.is_visible()
    page.screenshot(path=str(artifacts_dir / "annotate-differences.png"), full_page=True)
    context.close()
