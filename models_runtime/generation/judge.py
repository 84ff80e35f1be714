"""AI judges: a generator asked which of two responses is better, in both orders.

A judge sees the prompt and two responses and answers with a verdict. Language
models favour a position (often the first), so every comparison is asked
twice, once in each order, and the two answers are combined:

- both name the same response: that response, ``consistent``;
- they disagree (each preferred whatever came first, or second): the judge
  cannot tell them apart beyond its position bias, so the verdict is a tie,
  not consistent;
- one answer could not be read: the other decides, not consistent;
- neither could be read, or the generator failed: no verdict (``choice`` None)
  and the reason.

``parse_verdict`` reads the common ways models state a choice: the template's
own ``[[A]]`` / ``[[B]]`` / ``[[C]]`` (tie), "Answer: B", "Response A is
better", "Winner: 2", and a bare final letter; when the text names both
responses in verdict form, the last statement wins (models reason first and
conclude last).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from models_runtime.generation import (
    Generation,
    GenerationFailure,
    GenerationRequest,
    Generator,
    Message,
    Result,
    Sampling,
)

__all__ = ["JudgeTemplate", "PairwiseJudge", "Verdict", "parse_verdict"]

DEFAULT_SYSTEM = (
    "You are a careful, impartial judge of AI assistant responses. Compare two responses to the same "
    "conversation for helpfulness, correctness and harmlessness. Ignore their order and their length "
    "unless length matters to the user."
)
DEFAULT_PAIRWISE = (
    "[Conversation]\n{prompt}\n\n[Response A]\n{first}\n\n[Response B]\n{second}\n\n"
    "Which response is better? Think briefly, then end with your verdict on its own line: "
    '"[[A]]" if A is better, "[[B]]" if B is better, or "[[C]]" for a tie.'
)

# The verdict forms, strongest first; each maps its captured token to "first", "second" or "tie".
_TOKENS = {
    "a": "first", "1": "first", "first": "first",
    "b": "second", "2": "second", "second": "second",
    "c": "tie", "tie": "tie", "equal": "tie", "same": "tie", "neither": "tie", "both": "tie",
}  # fmt: skip
# Letters and digits must be capitals ("Answer: B"), so an article ("the answer is a good one")
# is never read as a verdict; the words around them may take any case.
_WHO = r"(?:(?i:response|assistant|answer)\s+)?\(?"
_BETTER = r"(?i:better|superior|preferred|preferable|more\s+helpful)"
_PATTERNS = (
    re.compile(r"\[\[\s*([ABCabc]|(?i:tie))\s*\]\]"),
    re.compile(
        r"(?i:(?:final\s+)?(?:verdict|answer|winner|choice|decision))\s*(?:(?i:is)\s*)?[:=]?\s*\**\s*"
        + _WHO
        + r"([AB12]|(?i:tie|equal|neither|both))\b\)?"
    ),
    re.compile(
        r"\b(?i:response|assistant|answer)\s+\(?([AB12])\)?\s+(?i:is)\s+(?:(?i:clearly|slightly|much)\s+)?" + _BETTER
    ),
    re.compile(r"\b(?i:prefer|choose|pick|select)\s+" + _WHO + r"([AB12])\)?\b"),
    re.compile(r"\b(?i:it'?s\s+a\s+)(?i:(tie))\b|\b(?i:both\s+(?:are\s+)?)(?i:(equal|same))(?i:ly)?\b"),
)
_BARE_LAST = re.compile(r"(?:^|\n)\s*\**\(?\s*([ABC])\s*\)?\**\.?\s*$")


def parse_verdict(text: str) -> str | None:
    """``"first"``, ``"second"`` or ``"tie"`` from a judge's reply, None when it states no verdict."""
    for pattern in _PATTERNS:
        last: str | None = None
        for match in pattern.finditer(text):
            token = next((g for g in match.groups() if g), "").lower()
            last = _TOKENS.get(token, last)
        if last is not None:
            return last
    bare = _BARE_LAST.search(text.strip())
    return _TOKENS.get(bare.group(1).lower()) if bare else None


@dataclass(frozen=True)
class JudgeTemplate:
    """What the judge is told: a system message and the comparison, with
    ``{prompt}``, ``{first}`` and ``{second}`` filled in."""

    system: str = DEFAULT_SYSTEM
    pairwise: str = DEFAULT_PAIRWISE

    def __post_init__(self) -> None:
        missing = [name for name in ("{prompt}", "{first}", "{second}") if name not in self.pairwise]
        if missing:
            raise ValueError(f"the pairwise template must contain {', '.join(missing)}")


@dataclass(frozen=True)
class Verdict:
    """A judge's answer on (a, b): ``choice`` is ``"a"``, ``"b"``, ``"tie"`` or
    None (no verdict, ``reason`` says why); ``consistent`` when both orders agreed;
    ``orders`` what each order said, in the candidates' terms (a, b, tie or None);
    ``tokens`` what the two replies cost, none for a reply from the cache."""

    choice: str | None
    consistent: bool
    orders: tuple[str | None, str | None]
    replies: tuple[str, str] = ("", "")
    reason: str = ""
    tokens: int = 0


@dataclass
class PairwiseJudge:
    """A generator used as a judge (see the module docstring). Greedy decoding by
    default, so the same comparison gets the same verdict."""

    generator: Generator
    template: JudgeTemplate = field(default_factory=JudgeTemplate)
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, max_tokens=400))

    @property
    def key(self) -> str:
        return f"judge:{self.generator.key}"

    def _request(self, prompt: str, first: str, second: str) -> GenerationRequest:
        text = self.template.pairwise.format(prompt=prompt, first=first, second=second)
        turns = ([Message("system", self.template.system)] if self.template.system else []) + [Message("user", text)]
        return GenerationRequest(messages=tuple(turns), sampling=self.sampling, seed=0)

    def judge(self, comparisons: Sequence[tuple[str, str, str]]) -> list[Verdict]:
        """Verdicts on ``(prompt, a, b)`` comparisons, each asked in both orders (one batch)."""
        requests = []
        for prompt, a, b in comparisons:
            requests += [self._request(prompt, a, b), self._request(prompt, b, a)]
        results = self.generator.generate(requests)
        verdicts = []
        for k in range(len(comparisons)):
            straight, swapped = results[2 * k], results[2 * k + 1]
            verdicts.append(_combined(straight, swapped))
        return verdicts


_AS_CANDIDATE = {
    True: {"first": "a", "second": "b", "tie": "tie"},  # asked a first
    False: {"first": "b", "second": "a", "tie": "tie"},  # asked b first
}


def _combined(straight: Result, swapped: Result) -> Verdict:
    if not isinstance(straight, Generation) or not isinstance(swapped, Generation):
        reason = "; ".join(r.message for r in (straight, swapped) if isinstance(r, GenerationFailure))
        return Verdict(None, False, (None, None), reason=f"the judge could not answer: {reason}")
    replies = (straight.text, swapped.text)
    # What this verdict cost now: a reply the cache kept was paid for before.
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in (straight, swapped) if not r.cached)
    said = (parse_verdict(replies[0]), parse_verdict(replies[1]))
    orders = (
        _AS_CANDIDATE[True][said[0]] if said[0] else None,
        _AS_CANDIDATE[False][said[1]] if said[1] else None,
    )
    if orders[0] is None and orders[1] is None:
        return Verdict(None, False, orders, replies, "neither reply states a verdict", tokens)
    if orders[0] is None or orders[1] is None:
        return Verdict(
            orders[0] or orders[1], False, orders, replies, "only one order's reply states a verdict", tokens
        )
    if orders[0] == orders[1]:
        return Verdict(orders[0], True, orders, replies, "", tokens)
    # Each order preferred a different response: what decided was the position.
    return Verdict("tie", False, orders, replies, "the two orders disagree (position bias)", tokens)
