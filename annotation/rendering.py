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
