"""What a reward model sees of a candidate: the response alone, or the response in its context.

A Bradley–Terry model compares two responses to the same prompt. Features that
concatenate ``[emb(prompt), emb(response)]`` are useless for the prompt: its part of
the utility is the same for both responses and cancels in their difference. So the
context is encoded *jointly* with the response, in one pass of the encoder
("Human: …\\n\\nAssistant: <response>"): the response's vector then depends on what
it answers, and two responses to the same prompt differ in how they fit it.

Three choices (``FEATURES``), a study's ``features`` setting:

* ``response``: the response text alone (what the app did before);
* ``last_turn``: the human's last turn, then the response;
* ``conversation``: the whole conversation so far, then the response.

An encoder reads a bounded number of tokens. When context and response do not fit,
:func:`feature_text` keeps the *end* of the context (the turns closest to the response)
and the *start* of the response, never silently: it returns how many tokens of each
were dropped, and the study page shows the totals. The response is guaranteed at least
half of the budget (all of it if shorter), the context the rest.

Pure Python: the token boundaries come from a :class:`Tokens` (the embedder's own
tokenizer in the app, :class:`WhitespaceTokens` for fakes in tests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "CONVERSATION",
    "DEFAULT_FEATURES",
    "FEATURES",
    "FEATURE_CHOICES",
    "LAST_TURN",
    "RESPONSE",
    "FeatureText",
    "Tokens",
    "WhitespaceTokens",
    "context_of",
    "embedded_text",
    "feature_text",
    "turns_of",
]

RESPONSE = "response"
LAST_TURN = "last_turn"
CONVERSATION = "conversation"
FEATURES = (RESPONSE, LAST_TURN, CONVERSATION)
FEATURE_CHOICES = (
    (RESPONSE, "Response only"),
    (LAST_TURN, "Last human turn + response"),
    (CONVERSATION, "Whole conversation + response"),
)
# The best on real data by the fits' own validation split (docs/ARCHITECTURE.md,
# "What the reward model sees"; benchmarks/results/real_data.json): with a frozen
# mean-pooled sentence encoder, the context dilutes the response's vector more than
# it helps.
DEFAULT_FEATURES = RESPONSE

_HUMAN = "Human:"
_ASSISTANT = "Assistant:"
_ROLE_NAMES = {"user": "Human", "human": "Human", "assistant": "Assistant", "system": "System"}


@runtime_checkable
class Tokens(Protocol):
    """Token boundaries of a text as the encoder will see them: ``spans(text)`` gives
    each token's ``(start, end)`` character offsets (special tokens excluded), and
    ``budget`` is how many tokens of text fit in one encoder pass."""

    @property
    def budget(self) -> int: ...

    def spans(self, text: str) -> list[tuple[int, int]]: ...


@dataclass(frozen=True)
class WhitespaceTokens:
    """Words as tokens: for embedders without a tokenizer (fakes, tests)."""

    budget: int = 256

    def spans(self, text: str) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        start = None
        for i, ch in enumerate(text):
            if ch.isspace():
                if start is not None:
                    out.append((start, i))
                    start = None
            elif start is None:
                start = i
        if start is not None:
            out.append((start, len(text)))
        return out


@dataclass(frozen=True)
class FeatureText:
    """The text embedded for one candidate and the tokens its truncation dropped."""

    text: str
    context_tokens_dropped: int = 0
    response_tokens_dropped: int = 0

    @property
    def truncated(self) -> bool:
        return bool(self.context_tokens_dropped or self.response_tokens_dropped)


def turns_of(prompt_text: str, prompt_format: str) -> list[tuple[str, str]]:
    """A prompt as ``(speaker, text)`` turns. A conversation prompt is JSON messages
    (``[{"role": …, "content": …}]``); a text prompt that is an HH transcript
    ("Human: …\\n\\nAssistant: …") is split at its markers; any other text is one
    human turn."""
    if prompt_format == "conversation":
        try:
            messages = json.loads(prompt_text)
        except ValueError:
            messages = None
        if isinstance(messages, list):
            turns = []
            for message in messages:
                if isinstance(message, dict):
                    role = str(message.get("role", "user")).lower()
                    turns.append((_ROLE_NAMES.get(role, role.title()), str(message.get("content", ""))))
            return turns
    text = prompt_text.strip()
    if not text.startswith(_HUMAN):
        return [("Human", text)]
    turns = []
    for chunk in ("\n\n" + text).split("\n\n" + _HUMAN)[1:]:
        human, _, rest = chunk.partition("\n\n" + _ASSISTANT)
        turns.append(("Human", human.strip()))
        if _:
            # An assistant turn may itself contain blank lines; only the markers split.
            turns.append(("Assistant", rest.strip()))
    return turns


def context_of(prompt_text: str | None, prompt_format: str, features: str) -> str:
    """The context placed before a response for ``features``: "" for ``response`` (or
    a candidate without a prompt), the last human turn for ``last_turn``, the whole
    conversation for ``conversation``; each turn written "Speaker: text", turns
    separated by a blank line."""
    if features not in FEATURES:
        raise ValueError(f"unknown features {features!r}; known: {', '.join(FEATURES)}")
    if features == RESPONSE or not prompt_text:
        return ""
    turns = turns_of(prompt_text, prompt_format)
    if features == LAST_TURN:
        humans = [t for t in turns if t[0] == "Human"] or turns[-1:]
        turns = humans[-1:]
    return "\n\n".join(f"{speaker}: {text}" for speaker, text in turns)


def feature_text(context: str, response: str, tokens: Tokens) -> FeatureText:
    """``response`` in its ``context`` as one text that fits ``tokens.budget``.

    Without context the response is returned as is (the encoder cuts it as before,
    and the dropped tokens are counted). Otherwise the text is
    ``"<context>\\n\\nAssistant: <response>"``; if it is too long, the response keeps
    its first tokens (at least half the budget, or all of it when shorter) and the
    context its last tokens (the turns nearest the response) in what remains."""
    budget = max(int(tokens.budget), 2)
    if not context:
        # A token covers at least one UTF-8 byte, so a short text needs no tokenizing.
        if len(response.encode("utf-8")) <= budget:
            return FeatureText(response)
        return FeatureText(response, response_tokens_dropped=max(0, len(tokens.spans(response)) - budget))
    cue = "\n\nAssistant: "
    joined = context + cue + response
    if len(joined.encode("utf-8")) <= budget:
        return FeatureText(joined)
    ctx_spans = tokens.spans(context)
    cue_len = len(tokens.spans(cue))
    resp_spans = tokens.spans(response)
    room = budget - cue_len
    if len(ctx_spans) + len(resp_spans) <= room:
        return FeatureText(joined)
    resp_keep = min(len(resp_spans), max(room - len(ctx_spans), room // 2))
    ctx_keep = max(0, room - resp_keep)
    kept_context = context[ctx_spans[len(ctx_spans) - ctx_keep][0] :] if ctx_keep else ""
    kept_response = response[: resp_spans[resp_keep - 1][1]] if resp_keep else ""
    return FeatureText(
        kept_context + cue + kept_response,
        context_tokens_dropped=len(ctx_spans) - ctx_keep,
        response_tokens_dropped=len(resp_spans) - resp_keep,
    )


def embedded_text(
    *, prompt_text: str | None, prompt_format: str, response: str, features: str, tokens: Tokens
) -> FeatureText:
    """The text embedded for ``response`` to a prompt under a study's ``features``
    choice, truncated to ``tokens.budget`` as :func:`feature_text` says. The app
    (``activelearn.features``) and the real-data benchmark both call this, so the
    benchmark measures what the app embeds."""
    return feature_text(context_of(prompt_text, prompt_format, features), response, tokens)
