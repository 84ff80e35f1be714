"""How stored text is read for display: conversations, image URLs and differences.

Pure functions over strings, shared by the annotate page and the importer.
Nothing here marks text safe except :func:`diff_html`, which escapes every
token it emits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from urllib.parse import urlsplit

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe


@dataclass(frozen=True)
class Message:
    role: str
    content: str


def messages_from_json(text: str) -> tuple[Message, ...]:
    """An OpenAI-style message list (``[{"role": …, "content": …}, …]``), or ()
    when the text is not one. Content given as a list of text parts is joined."""
    if not text or not text.lstrip().startswith("["):
        return ()
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return ()
    if not isinstance(data, list) or not data:
        return ()
    messages = []
    for item in data:
        if not isinstance(item, dict):
            return ()
        content = item.get("content")
        if isinstance(content, list):
            parts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
            content = "\n\n".join(parts) if parts else None
        if not isinstance(content, str):
            return ()
        messages.append(Message(role=str(item.get("role", "")), content=content))
    return tuple(messages)


# Anthropic HH-RLHF transcripts: "\n\nHuman: …\n\nAssistant: …".
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


def messages_from_hh(text: str) -> tuple[Message, ...]:
    """The turns of an HH-RLHF style transcript, or () when the text is not one.

    A transcript starts (after blank lines) with "Human:" or "Assistant:"; a
    lone "Assistant: …" (an HH response on its own) is one turn.
    """
    if not text:
        return ()
    body = text.lstrip("\n")
    if not body.startswith(("Human:", "Assistant:")):
        return ()
    marks = list(_HH_TURN.finditer(body))
    messages = []
    for k, mark in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(body)
        messages.append(Message(role=mark.group(1), content=body[mark.end() : end].strip()))
    return tuple(messages)


def conversation_messages(text: str, *, declared: bool = False) -> tuple[Message, ...]:
    """The turns of a stored conversation in either format.

    ``declared`` says the row is stored as a conversation (JSON messages); other
    rows are read as conversations only when they clearly are one.
    """
    return messages_from_json(text) or (messages_from_hh(text) if not declared else ())


IMAGE_URL_MAX = 2000


def safe_image_url(value: object) -> str:
    """The URL when it may be used as an image source (http, https or a
    site-relative path), else "". Never a ``javascript:`` or ``data:`` URL."""
    if not isinstance(value, str) or not value or len(value) > IMAGE_URL_MAX:
        return ""
    value = value.strip()
    if any(ch in value for ch in "\x00\n\r\t\"'<> "):
        return ""
    if value.startswith("/") and not value.startswith("//"):
        return value
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else ""


# Word-level differences: long texts are compared on their first part only, so a
# pathological pair costs bounded time.
DIFF_MAX_TOKENS = 6000
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def diff_html(left: str, right: str) -> tuple[SafeString, SafeString]:
    """Both texts, escaped, with the words that differ marked (``<mark>``).

    Whitespace-only changes are not marked. Texts beyond ``DIFF_MAX_TOKENS``
    tokens are shown in full with only their first part compared.
    """
    a, b = _TOKEN.findall(left or ""), _TOKEN.findall(right or "")
    matcher = SequenceMatcher(None, a[:DIFF_MAX_TOKENS], b[:DIFF_MAX_TOKENS], autojunk=False)
    out_a: list[str] = []
    out_b: list[str] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        _emit(out_a, a[i1:i2], changed=op != "equal")
        _emit(out_b, b[j1:j2], changed=op != "equal")
    _emit(out_a, a[DIFF_MAX_TOKENS:], changed=False)
    _emit(out_b, b[DIFF_MAX_TOKENS:], changed=False)
    return mark_safe("".join(out_a)), mark_safe("".join(out_b))


def _emit(out: list[str], tokens: list[str], *, changed: bool) -> None:
    text = escape("".join(tokens))
    if changed and "".join(tokens).strip():
        out.append(f'<mark class="diff">{text}</mark>')
    else:
        out.append(text)


# --- plain text or Markdown ---------------------------------------------------------
# Datasets hold plain text far more often than their authors think: "#1: The
# Public Library" is a title, "2*3*4" a product. Text is read as Markdown only
# when declared so, or when it carries unmistakable Markdown (a fenced code
# block or a table), or at least two different kinds of Markdown structure.
MARKDOWN_SCAN_CHARS = 100_000
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.M)
_TABLE_RULE = re.compile(r"^ {0,3}\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$", re.M)
_MARKDOWN_SIGNS = {
    # "# Title" with a space: "#1:" and "#hashtag" are not headings here.
    "heading": re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.M),
    "bold": re.compile(r"(\*\*|__)(?=\S)[^\n]+?(?<=\S)\1"),
    "code": re.compile(r"(?<![`\w])`[^`\n]+`(?![`\w])"),
    "link": re.compile(r"\[[^\]\n]+\]\(https?://[^)\s]+\)"),
}
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d{1,3}[.)])[ \t]+\S", re.M)


def looks_like_markdown(text: str) -> bool:
    """Whether ``text`` is confidently Markdown: a fenced code block or a
    table, or two different kinds among headings, lists (two items or more),
    bold, inline code and links. Only the first ``MARKDOWN_SCAN_CHARS`` are
    looked at. Anything less is shown as plain text, which loses little when
    wrong (the text still reads as written), while reading plain text as
    Markdown eats characters."""
    head = (text or "")[:MARKDOWN_SCAN_CHARS]
    if len(_FENCE.findall(head)) >= 2 or _TABLE_RULE.search(head):
        return True
    kinds = sum(1 for pattern in _MARKDOWN_SIGNS.values() if pattern.search(head))
    kinds += len(_LIST_ITEM.findall(head)) >= 2
    return kinds >= 2


class TextFormat:
    """How a text is shown: declared Markdown, declared plain, or decided per text."""

    MARKDOWN = "markdown"
    PLAIN = "plain"
    AUTO = "auto"


def text_is_markdown(text: str, text_format: str) -> bool:
    if text_format == TextFormat.MARKDOWN:
        return True
    if text_format == TextFormat.PLAIN:
        return False
    return looks_like_markdown(text)


# Only http(s) URLs become links, cut before trailing punctuation.
_URL = re.compile(r"\bhttps?://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]}]")


def plain_html(text: str) -> SafeString:
    """Plain text as HTML: escaped, with http(s) URLs made into links that open
    safely. Line breaks and spaces are kept by the ``.plain`` class (CSS
    ``white-space: pre-wrap``), not by markup."""
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text or ""):
        url = match.group(0)
        out.append(escape(text[last : match.start()]))
        out.append(f'<a href="{escape(url)}" rel="noopener noreferrer nofollow">{escape(url)}</a>')
        last = match.end()
    out.append(escape((text or "")[last:]))
    # Safe to mark: every piece of the text went through escape().
    return mark_safe("".join(out))


# --- long prompts -------------------------------------------------------------------
# The annotate page carries at most about this much of a prompt; the rest comes on
# demand ("Show all"). The end matters as much as the start: a conversation's last
# turn is what the responses answer.
PREVIEW_HEAD_CHARS = 12_000
PREVIEW_TAIL_CHARS = 8_000


@dataclass(frozen=True)
class Preview:
    """What the page shows of a long text or conversation, and what it leaves out."""

    text: str
    messages: tuple[Message, ...]
    hidden_chars: int
    hidden_turns: int = 0
    hidden_at: int = 0  # the index in ``messages`` where the left-out turns were

    @property
    def truncated(self) -> bool:
        return self.hidden_chars > 0


def text_preview(text: str, *, head: int = PREVIEW_HEAD_CHARS, tail: int = PREVIEW_TAIL_CHARS) -> Preview:
    """The start and the end of a long text, cut at line breaks where one is near."""
    if len(text) <= head + tail:
        return Preview(text=text, messages=(), hidden_chars=0)
    start = _cut_end(text[:head])
    end = _cut_start(text[-tail:])
    return Preview(text=f"{start}\n\n…\n\n{end}", messages=(), hidden_chars=len(text) - len(start) - len(end))


def messages_preview(
    messages: tuple[Message, ...], *, head: int = PREVIEW_HEAD_CHARS, tail: int = PREVIEW_TAIL_CHARS
) -> Preview:
    """The last turns up to ``tail`` characters and the first turns up to
    ``head``, the turns between left out. A turn crossing a limit is cut: one
    at the end keeps its end, one at the start its start (one turn too long
    for both keeps both ends)."""
    total = sum(len(m.content) for m in messages)
    if total <= head + tail:
        return Preview(text="", messages=messages, hidden_chars=0)
    j, budget = len(messages), tail
    while j > 0 and budget > 0:
        j -= 1
        budget -= len(messages[j].content)
    last = [*messages[j:]]
    if budget < 0:  # the earliest of the last turns is cut to its end
        keep = len(last[0].content) + budget
        last[0] = Message(role=last[0].role, content="… " + _cut_start(last[0].content[-keep:]))
    i, budget = 0, head
    while i < j and budget > 0:
        budget -= len(messages[i].content)
        i += 1
    first = [*messages[:i]]
    if budget < 0:
        keep = len(first[-1].content) + budget
        first[-1] = Message(role=first[-1].role, content=_cut_end(first[-1].content[:keep]) + " …")
    elif i == 0 and j == 0 and len(messages[0].content) > tail:
        # One turn longer than both limits: its start as well as its end.
        start = _cut_end(messages[0].content[:head])
        last[0] = Message(role=last[0].role, content=f"{start}\n\n{last[0].content}")
    shown = sum(len(m.content) for m in first + last)
    return Preview(
        text="", messages=(*first, *last), hidden_chars=max(1, total - shown), hidden_turns=j - i, hidden_at=i
    )


def _cut_end(text: str) -> str:
    """``text`` ended at its last line break, when one is in its last fifth."""
    cut = text.rfind("\n", len(text) * 4 // 5)
    return text[:cut] if cut > 0 else text


def _cut_start(text: str) -> str:
    cut = text.find("\n", 0, len(text) // 5)
    return text[cut + 1 :] if cut >= 0 else text


def size_words(n_bytes: int) -> str:
    """1234567 → "1.2 MB"; 2048 → "2 KB"."""
    if n_bytes >= 1_000_000:
        return f"{n_bytes / 1_000_000:.1f} MB"
    return f"{max(1, round(n_bytes / 1000))} KB"
