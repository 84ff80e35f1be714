"""How prompts and responses are shown: code, conversations, images and differences."""

from __future__ import annotations

import io
import json

import pytest

from annotation.imports.records import ImportFileError
from annotation.imports.writer import study_import_jsonl
from annotation.models import Candidate, Comparison
from annotation.rendering import (
    Message,
    diff_html,
    looks_like_markdown,
    messages_from_hh,
    messages_from_json,
    messages_preview,
    plain_html,
    safe_image_url,
)
from tests.annotation.test_views import annotate_url
from tests.factories import CandidateFactory, PromptFactory, StudyFactory

HH = "\n\nHuman: What is 2 + 2?\n\nAssistant: 4.\n\nHuman: And times 3?\n\nAssistant: 12."


def test_hh_transcripts_split_into_turns():
    turns = messages_from_hh(HH)
    assert [(m.role, m.content) for m in turns] == [
        ("Human", "What is 2 + 2?"),
        ("Assistant", "4."),
        ("Human", "And times 3?"),
        ("Assistant", "12."),
    ]
    assert [(m.role, m.content) for m in messages_from_hh(" Assistant: only me")] == []
    assert [(m.role, m.content) for m in messages_from_hh("\n\nAssistant: Sure.\nTwo lines.")] == [
        ("Assistant", "Sure.\nTwo lines.")
    ]
    assert messages_from_hh("The Human: rights act") == ()


def test_openai_message_lists_including_content_parts():
    text = json.dumps(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
        ]
    )
    assert [(m.role, m.content) for m in messages_from_json(text)] == [("system", "Be brief."), ("user", "Hi\n\nthere")]
    assert messages_from_json("[1, 2]") == () and messages_from_json("[not json") == ()


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.org/cat.png", True),
        ("http://example.org/a.jpg?x=1", True),
        ("/media/out/1.webp", True),
        ("javascript:alert(1)", False),
        ("data:image/svg+xml,<svg onload=alert(1)>", False),
        ("//evil.example/x.png", False),
        ('https://example.org/x.png" onerror="alert(1)', False),
        ("ftp://example.org/x.png", False),
    ],
)
def test_image_urls_are_http_or_site_paths_only(url, ok):
    assert bool(safe_image_url(url)) is ok


def test_diff_marks_changed_words_and_escapes_everything():
    left, right = diff_html("The cat sat on <b>the</b> mat.", "The dog sat on <b>the</b> mat!")
    assert left == 'The <mark class="diff">cat</mark> sat on &lt;b&gt;the&lt;/b&gt; mat<mark class="diff">.</mark>'
    assert right == 'The <mark class="diff">dog</mark> sat on &lt;b&gt;the&lt;/b&gt; mat<mark class="diff">!</mark>'


def _page(client_for, make_member, study):
    user = make_member(study)
    return client_for(user).get(annotate_url(study)).content.decode()


@pytest.mark.django_db
def test_fenced_code_is_highlighted_on_the_server(client_for, make_member):
    study = StudyFactory()
    prompt = PromptFactory(study=study)
    CandidateFactory(prompt=prompt, text="Like this:\n\n```python\ndef f(x):\n    return x  # done\n```")
    CandidateFactory(prompt=prompt, text="No code.")
    html = _page(client_for, make_member, study)
    assert '<div class="highlight"><pre>' in html
    assert '<span class="k">def</span>' in html and '<span class="c1"># done</span>' in html
    assert "css/code.css" in html


@pytest.mark.django_db
def test_hh_prompt_and_conversation_responses_are_shown_turn_by_turn(client_for, make_member):
    study = StudyFactory()
    prompt = PromptFactory(study=study, text=HH)
    CandidateFactory(prompt=prompt, text="\n\nAssistant: 36, since 12 × 3 = 36.")
    reply = "**36**, because:\n\n- 12 × 3 = 36\n- and 36 / 3 = 12"  # Markdown beyond doubt: bold and a list
    CandidateFactory(prompt=prompt, text=json.dumps([{"role": "assistant", "content": reply}]))
    html = _page(client_for, make_member, study)
    assert html.count('<li class="turn turn-human">') == 2
    assert html.count('<li class="turn turn-assistant">') == 2 + 2
    assert '<li class="turn turn-assistant">' in html and "<strong>36</strong>" in html
    assert "\\n\\nHuman" not in html and "Human: What" not in html


@pytest.mark.django_db
def test_image_candidates_import_and_show_as_images(client_for, make_member):
    study = StudyFactory()
    line = {
        "prompt": "A lighthouse at dusk, watercolour",
        "candidates": [
            {"image": "https://images.example.org/a.png", "source": "model-x"},
            {"image": "/media/b.png", "text": "Second try"},
        ],
    }
    study_import_jsonl(study=study, fileobj=io.BytesIO((json.dumps(line) + "\n").encode()))
    html = _page(client_for, make_member, study)
    assert 'src="https://images.example.org/a.png"' in html and 'src="/media/b.png"' in html
    assert "<figcaption" in html and "Second try" in html
    assert Candidate.objects.filter(metadata__image="/media/b.png").exists()


@pytest.mark.django_db
def test_unsafe_image_urls_are_refused_at_import_with_the_line_and_field():
    study = StudyFactory()
    line = {"prompt": "p", "candidates": [{"image": "https://ok.example/x.png"}, {"image": "javascript:alert(1)"}]}
    with pytest.raises(ImportFileError) as info:
        study_import_jsonl(study=study, fileobj=io.BytesIO((json.dumps(line) + "\n").encode()))
    assert "line 1" in str(info.value) and "candidates[1].image" in str(info.value)
    assert not Candidate.objects.exists()


@pytest.mark.django_db
def test_difference_view_is_offered_only_when_the_study_asks(client_for, make_member):
    study = StudyFactory(highlight_diff=True)
    prompt = PromptFactory(study=study)
    CandidateFactory(prompt=prompt, text="Paris is the capital of France.")
    CandidateFactory(prompt=prompt, text="Lyon is the capital of France.")
    html = _page(client_for, make_member, study)
    assert 'id="show-diff"' in html and html.count('class="plain diff-view"') == 2
    assert '<mark class="diff">Paris</mark>' in html or '<mark class="diff">Lyon</mark>' in html
    Comparison.objects.all().delete()
    study.highlight_diff = False
    study.save(update_fields=["highlight_diff"])
    assert 'id="show-diff"' not in _page(client_for, make_member, study)


# --- plain text or Markdown (issue 13 §6) ------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "#1: The Public Library",
        "2*3*4 = 24",
        "Call __init__ first, then 2**3**4.",
        "1. Preheat the oven.\n2. Bake for an hour.",  # a list alone reads fine as plain text
        "A single `code` span.",
    ],
)
def test_plain_text_is_not_read_as_markdown(text):
    assert not looks_like_markdown(text)


@pytest.mark.parametrize(
    "text",
    [
        "Like this:\n\n```python\nprint(1)\n```",
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "## Steps\n\n- one\n- two",
        "Use **slicing**: `items[::-1]`.",
    ],
)
def test_unmistakable_markdown_is_read_as_markdown(text):
    assert looks_like_markdown(text)


@pytest.mark.django_db
def test_plain_responses_keep_their_characters_and_line_breaks(client_for, make_member):
    study = StudyFactory()
    prompt = PromptFactory(study=study, text="Name the library and compute 2*3*4.")
    CandidateFactory(prompt=prompt, text="#1: The Public Library\n2*3*4 = 24\nSee https://example.org/a_b.")
    CandidateFactory(prompt=prompt, text="مرحبا بالعالم")
    html = _page(client_for, make_member, study)
    assert "<h1>1: The Public Library</h1>" not in html
    assert "#1: The Public Library\n2*3*4 = 24" in html
    assert '<a href="https://example.org/a_b" rel="noopener noreferrer nofollow">https://example.org/a_b</a>.' in html
    assert '<div class="plain" dir="auto">مرحبا بالعالم</div>' in html
    assert 'class="prompt-body"' in html and '<div class="plain" dir="auto">Name the library' in html


def test_plain_html_escapes_and_links_only_http_urls():
    html = str(plain_html('<b>x</b> javascript:alert(1) http://a.example/?q="x"&y=1'))
    assert "<b>" not in html and "&lt;b&gt;" in html
    assert 'href="javascript' not in html
    assert '<a href="http://a.example/?q=' in html and "&quot;" not in html.split('href="')[1].split('"')[0]


def test_a_long_conversation_keeps_its_first_and_last_turns():
    turns = tuple(
        Message(role="Human" if k % 2 == 0 else "Assistant", content=f"turn {k} " + "x" * 3000) for k in range(40)
    )
    preview = messages_preview(turns, head=7000, tail=7000)
    assert preview.truncated and preview.hidden_turns > 20
    assert preview.messages[0].content.startswith("turn 0 ")
    assert preview.messages[-1] == turns[-1]
    assert sum(len(m.content) for m in preview.messages) <= 14_100
    one = messages_preview((Message(role="Human", content="START" + "y" * 50_000 + "END"),), head=1000, tail=1000)
    assert one.messages[0].content.startswith("START") and one.messages[0].content.endswith("END")
    assert len(one.messages[0].content) < 2100
