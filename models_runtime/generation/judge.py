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

__all__ = [
    "DEFAULT_LISTWISE",
    "JudgeTemplate",
    "ListwiseJudge",
    "PairwiseJudge",
    "RankVerdict",
    "Verdict",
    "parse_ranking",
    "parse_verdict",
]

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

DEFAULT_LISTWISE = (
    "[Conversation]\n{prompt}\n\n{responses}\n\n"
    "Rank the responses from best to worst. Think briefly, then end with your ranking on its own line, "
    'using every response number once, ">" for better and "=" for equally good, e.g. "[[2 > 1 = 3]]".'
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


_RANKING = re.compile(r"\[\[\s*(\d+(?:\s*[>=,]\s*\d+)+)\s*\]\]")
_RANKING_BARE = re.compile(r"(?:^|\n)\s*(?:(?i:ranking)\s*:\s*)?\**\s*(\d+(?:\s*[>=]\s*\d+)+)\s*\**\.?\s*$")


def parse_ranking(text: str, k: int) -> list[list[int]] | None:
    """The ranking of responses 1…``k`` a judge's reply states, as places best first
    (0-based response indices; a place of two or more is a tie), or None when it
    states none or not a ranking of exactly those ``k`` responses. Reads
    ``[[2 > 1 = 3]]`` (commas read as ">"), the last one when there are several,
    or a bare last line ``2 > 1 > 3``."""
    found = _RANKING.findall(text)
    statement = found[-1] if found else None
    if statement is None:
        bare = _RANKING_BARE.search(text.strip())
        statement = bare.group(1) if bare else None
    if statement is None:
        return None
    places: list[list[int]] = []
    for chunk in re.split(r"\s*[>,]\s*", statement.strip()):
        places.append([int(n) - 1 for n in re.split(r"\s*=\s*", chunk) if n])
    seen = [i for place in places for i in place]
    if sorted(seen) != list(range(k)):
        return None
    return places


@dataclass(frozen=True)
class RankVerdict:
    """A judge's ranking of a list: ``places`` best first, each a list of indices into
    the list as given (a place of two or more is a tie), None when it gave none
    (``reason`` says why); ``consistent`` when both orders gave the same ranking."""

    places: list[list[int]] | None
    consistent: bool
    replies: tuple[str, str] = ("", "")
    reason: str = ""
    tokens: int = 0


@dataclass
class ListwiseJudge:
    """A generator asked to rank a list of responses, in the list's order and in
    reverse (the position bias of a list runs along it). The two rankings combine
    by mean place: items whose mean places are equal share a place. When only one
    order's reply states a ranking, that one decides, not consistent."""

    generator: Generator
    template: str = DEFAULT_LISTWISE
    system: str = DEFAULT_SYSTEM
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, max_tokens=400))

    def __post_init__(self) -> None:
        missing = [name for name in ("{prompt}", "{responses}") if name not in self.template]
        if missing:
            raise ValueError(f"the listwise template must contain {', '.join(missing)}")

    def _request(self, prompt: str, responses: Sequence[str]) -> GenerationRequest:
        shown = "\n\n".join(f"[Response {n}]\n{text}" for n, text in enumerate(responses, start=1))
        text = self.template.replace("{responses}", shown).replace("{prompt}", prompt)
        turns = ([Message("system", self.system)] if self.system else []) + [Message("user", text)]
        return GenerationRequest(messages=tuple(turns), sampling=self.sampling, seed=0)

    def judge(self, lists: Sequence[tuple[str, Sequence[str]]]) -> list[RankVerdict]:
        """Rankings of ``(prompt, responses)`` lists, each asked in both orders (one batch)."""
        requests = []
        for prompt, responses in lists:
            requests += [self._request(prompt, responses), self._request(prompt, list(reversed(responses)))]
        results = self.generator.generate(requests)
        return [_ranked(results[2 * n], results[2 * n + 1], len(responses)) for n, (_, responses) in enumerate(lists)]


def _ranked(straight: Result, reverse: Result, k: int) -> RankVerdict:
    if not isinstance(straight, Generation) or not isinstance(reverse, Generation):
        reason = "; ".join(r.message for r in (straight, reverse) if isinstance(r, GenerationFailure))
        return RankVerdict(None, False, reason=f"the judge could not answer: {reason}")
    replies = (straight.text, reverse.text)
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in (straight, reverse) if not r.cached)
    first = parse_ranking(replies[0], k)
    second = parse_ranking(replies[1], k)
    if second is not None:  # back to the list's own order
        second = [[k - 1 - i for i in place] for place in second]
    if first is None and second is None:
        return RankVerdict(None, False, replies, "neither reply states a ranking of every response", tokens)
    if first is None or second is None:
        return RankVerdict(first or second, False, replies, "only one order's reply states a ranking", tokens)
    place_of = [[0.0] * k, [0.0] * k]
    for which, places in enumerate((first, second)):
        done = 0
        for place in places:
            mean = done + (len(place) - 1) / 2  # tied items share their places' mean
            for i in place:
                place_of[which][i] = mean
            done += len(place)
    mean_place = [(place_of[0][i] + place_of[1][i]) / 2 for i in range(k)]
    combined: list[list[int]] = []
    for i in sorted(range(k), key=lambda i: mean_place[i]):
        if combined and mean_place[combined[-1][0]] == mean_place[i]:
            combined[-1].append(i)
        else:
            combined.append([i])
    consistent = [sorted(p) for p in first] == [sorted(p) for p in second]
    return RankVerdict(combined, consistent, replies, "" if consistent else "the two orders disagree", tokens)
