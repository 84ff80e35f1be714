"""Script-injection payloads through every field an annotator's page shows.

Model text, prompts, conversations, guidelines, study and aspect names, image
URLs, and the values a refused answer echoes back all carry payloads. In a real
browser, none may run: no dialog opens, no marker is set, and no link or image
with a script URL survives.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from annotation.models import Prompt
from tests.e2e.helpers import NEW_COMPARISON, log_in, member
from tests.factories import CandidateFactory, PromptFactory, StudyFactory

pytestmark = [pytest.mark.e2e]

MARK = "window.__xss = (window.__xss || 0) + 1"
PAYLOADS = [
    f"<script>{MARK}</script>",
    f'<img src="x" onerror="{MARK}">',
    f'<svg onload="{MARK}"></svg>',
    f'"><script>{MARK}</script><b x="',
    f"[click me](javascript:{MARK})",
    f'<a href="javascript:{MARK}">raw link</a>',
    f"![img](javascript:{MARK})",
    f'<iframe srcdoc="<script>{MARK}</script>"></iframe>',
    f'<details open ontoggle="{MARK}"><summary>x</summary></details>',
    f"```html\n<script>{MARK}</script>\n```",
    f'<style>body{{background:url("javascript:{MARK}")}}</style>',
]
ALL = "\n\n".join(PAYLOADS)
CHECK = """
() => ({
  marker: window.__xss || 0,
  scriptLinks: Array.from(document.querySelectorAll('[href],[src],[action],[formaction]'))
    .flatMap(el => ['href', 'src', 'action', 'formaction'].map(name => el.getAttribute(name)).filter(Boolean))
    .filter(v => /^\\s*(javascript|data|vbscript):/i.test(v)),
  handlers: Array.from(document.querySelectorAll('*')).flatMap(el =>
    Array.from(el.attributes).filter(a => a.name.startsWith('on')).map(a => el.tagName + ' ' + a.name)),
  iframes: document.querySelectorAll('iframe, object, embed').length,
})
"""


def _assert_clean(page, dialogs):
    found = page.evaluate(CHECK)
    assert found == {"marker": 0, "scriptLinks": [], "handlers": [], "iframes": 0}, found
    assert not dialogs, dialogs


@pytest.mark.parametrize("mode", ["pairwise", "listwise"])
def test_no_payload_runs_anywhere_on_the_annotate_page(live_server, transactional_db, browser, mode):
    study = StudyFactory(
        name=f"<script>{MARK}</script> study", slug=f"xss-{mode}", guidelines=ALL, mode=mode,
        list_size=3 if mode == "listwise" else 2, ask_rationale="required", highlight_diff=True,
        aspects=[f"<img src=x onerror='{MARK}'>", "honesty"],
    )  # fmt: skip
    for fmt, text in [
        (Prompt.Format.TEXT, ALL),
        (Prompt.Format.MARKDOWN, "## As Markdown\n\n" + ALL),
        (Prompt.Format.CONVERSATION, json.dumps([{"role": f"<b onclick='{MARK}'>user</b>", "content": ALL}])),
        (Prompt.Format.TEXT, f"\n\nHuman: {ALL}\n\nAssistant: {PAYLOADS[1]}"),
    ]:
        prompt = PromptFactory(study=study, text=text, format=fmt)
        for k, payload in enumerate(PAYLOADS[:3]):
            CandidateFactory(
                prompt=prompt, text=f"{payload}\n\n{ALL}", metadata={"image": f"javascript:{MARK}"} if k == 2 else {}
            )
        CandidateFactory(prompt=prompt, text=json.dumps([{"role": "assistant", "content": ALL}]))
    user = member(study, "xss-annotator")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, live_server, user, reverse("annotate", args=[study.slug]))

    # Every prompt format: answer until each comparison has been on screen,
    # with a refused answer in between, whose echoed fields carry payloads too.
    for _ in range(4):
        _assert_clean(page, dialogs)
        if page.locator("#show-diff").count():
            page.check("#show-diff")
            _assert_clean(page, dialogs)
        page.locator("details.skip summary").click()
        page.fill("#skip-note", f'"><script>{MARK}</script>')
        page.select_option("#skip-reason", "")
        shown = page.get_attribute("#comparison", "data-comparison-id")
        page.get_by_role("button", name="Skip", exact=True).click()
        page.wait_for_selector("#comparison .server-error")
        _assert_clean(page, dialogs)
        page.select_option("#skip-reason", "broken")
        page.get_by_role("button", name="Skip", exact=True).click()
        # The next one, once it takes answers (annotate.js arms a new comparison briefly).
        page.wait_for_function(NEW_COMPARISON, arg=shown, timeout=10_000)
    _assert_clean(page, dialogs)
    context.close()
