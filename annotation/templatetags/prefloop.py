"""Template filters: sanitised Markdown and the number formats of the dashboard.

Markdown comes from researchers (guidelines) or datasets (prompts), so it is
untrusted: it is rendered with Python-Markdown and then cleaned with nh3 against
an allow-list of tags, attributes and URL schemes. Raw HTML inside the Markdown
survives only where the allow-list lets it.
"""

from __future__ import annotations

import threading

import markdown as markdown_lib
import nh3
from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import ngettext
from pygments.token import STANDARD_TYPES

from annotation.rendering import TextFormat, plain_html, size_words, text_is_markdown

register = template.Library()

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em",
        "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "kbd", "li", "ol", "p", "pre", "s", "span",
        "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "td": {"align"},
    "th": {"align"},
    "ol": {"start"},
}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Fenced code is highlighted on the server by Pygments (codehilite): no script
# in the page, and the colours come from static/css/code.css.
MARKDOWN_EXTENSIONS = ["extra", "sane_lists", "codehilite"]
EXTENSION_CONFIGS = {"codehilite": {"css_class": "highlight", "guess_lang": False}}
# Model output is mostly Markdown, but plain text with meaningful line breaks
# (poems, addresses, steps) must keep them: nl2br turns single newlines into <br>.
MODEL_TEXT_EXTENSIONS = [*MARKDOWN_EXTENSIONS, "nl2br"]
# Only Pygments' own token classes survive sanitising; a class cannot be used to
# restyle the page.
ALLOWED_CLASSES = {"div": {"highlight"}, "span": set(STANDARD_TYPES.values()) - {""}}


_renderers = threading.local()


def _renderer(extensions: list[str]) -> markdown_lib.Markdown:
    """A Markdown renderer per thread and extension set, reused: building one
    (its extensions and Pygments set-up) costs more than a typical conversion."""
    cache = _renderers.__dict__.setdefault("by_extensions", {})
    key = tuple(extensions)
    renderer = cache.get(key)
    if renderer is None:
        renderer = markdown_lib.Markdown(
            extensions=extensions, extension_configs=EXTENSION_CONFIGS, output_format="html"
        )
        # Raw HTML in the source is shown as text, not interpreted: a response
        # that talks about `<script>` tags should read as written. nh3 below is
        # the second line of defence.
        renderer.preprocessors.deregister("html_block")
        renderer.inlinePatterns.deregister("html")
        cache[key] = renderer
    return renderer.reset()


def markdown_to_safe_html(text: str, *, extensions: list[str] = MARKDOWN_EXTENSIONS) -> SafeString:
    """Render Markdown to HTML and keep only allow-listed markup."""
    html = _renderer(extensions).convert(text or "")
    cleaned = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        allowed_classes=ALLOWED_CLASSES,
    )
    # Safe to mark: nh3 has removed everything outside the allow-list.
    return mark_safe(cleaned)


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    return markdown_to_safe_html(text)


@register.filter(name="model_text")
def model_text_filter(text: str) -> SafeString:
    """Untrusted model output: Markdown with line breaks kept, sanitised."""
    return markdown_to_safe_html(text, extensions=MODEL_TEXT_EXTENSIONS)


@register.filter(name="shown_text")
def shown_text_filter(text: str, text_format: str = TextFormat.AUTO) -> SafeString:
    """A prompt's or response's text as the annotator sees it: Markdown
    (sanitised, line breaks kept) when declared or unmistakable, else plain
    text with its spacing kept (see ``rendering.looks_like_markdown``).
    ``dir="auto"`` lets right-to-left text read in its own direction."""
    if text_is_markdown(text, text_format):
        return format_html('<div class="prose" dir="auto">{}</div>', model_text_filter(text))
    return format_html('<div class="plain" dir="auto">{}</div>', plain_html(text))


@register.filter(name="size_words")
def size_words_filter(n_bytes: int) -> str:
    return size_words(int(n_bytes or 0))


@register.filter
def percent(value: float | None, digits: int = 1) -> str:
    """0.8333 → "83.3 %"; None → "—"."""
    if value is None:
        return "—"
    return f"{float(value) * 100:.{int(digits)}f} %"


@register.filter
def decimals(value: float | None, digits: int = 3) -> str:
    """A float with a fixed number of decimals; None → "—"."""
    if value is None:
        return "—"
    return f"{float(value):.{int(digits)}f}"


@register.filter
def duration_words(value: object) -> str:
    """A ``timedelta`` in words, rounded up to whole minutes: "15 minutes", "1 minute"."""
    seconds = getattr(value, "total_seconds", None)
    if seconds is None:
        return ""
    minutes = max(1, -(-int(seconds()) // 60))
    return ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes}
