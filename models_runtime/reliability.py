"""How far each annotator, a person or an AI judge, can be trusted, learned from the
answers themselves; and when AI judges may settle a comparison without a person.

**The model.** Every pairwise comparison ``c`` has a true preference ``z_c`` (left or
right better). Annotator ``k`` reports it correctly with probability ``a_k``, its
*accuracy*, whatever the comparison (Dawid & Skene's "one-coin" model). A tie says
nothing about ``z`` and is left out.

**Two stages, people first.** AI judges are cheap and may agree with each other for
the wrong reasons (one model family, one prompt, one bias). If their votes helped
decide ``z``, a set of judges that all prefer the worse answer would vouch for each
other. So:

1. People's accuracies are fitted among people alone, with gold answers where the
   study has them, by EM on the one-coin model: each accuracy is the posterior mean
   ``(α + agreed) / (α + β + n)`` of a Beta prior centred on a typical crowd worker
   (:attr:`ReliabilityConfig.person_prior`, mean 0.8) given the expected agreements
   of its ``n`` anchored answers. With one person per comparison and no gold nothing
   separates them, and every person keeps the prior; that is the honest answer.
2. Each judge is then measured against the people: on every comparison a person (or
   gold) answered, ``q_c = P(z_c = left | people, gold)``; the judge's accuracy comes
   from ``Π_c [a·agree_c + (1−a)·(1−agree_c)]`` by EM, the same way, under
   :attr:`ReliabilityConfig.judge_prior` (mean ½): a judge is worth nothing until it
   has agreed with people. This is AEGIS's idea (weight judges online by their
   agreement with people) in a likelihood.

**Weights.** A judgment from an annotator of accuracy ``a`` carries, near a tie,
``(2a − 1)²`` of the Fisher information of a noiseless one (the slope of
``(1 − ε)·σ(d) + ε·σ(−d)`` at ``d = 0`` is ``(1 − 2ε)/4``). The reward model weights
each judgment by its annotator's information relative to the study's typical person,
``w = clip(((2a − 1) / (2a_ref − 1))², 0, 1)``, ``a_ref`` the median of the people's
accuracies. For a person ``a`` is their estimate (people are trusted unless measured
otherwise); for a judge it is the *lower* end of its interval, so a judge with little
evidence gets little weight. An annotator no better than a coin, or worse (an
adversarial judge), gets weight 0; nobody gets more than a typical person.

**Routing.** The votes of judges with a weight above 0 combine by Bayes' rule at
their estimated accuracies (:func:`judges_verdict`). Where the combined verdict is
at least as likely right as a typical person's answer (``a_ref``), the judges may
settle the pair without a person (:func:`settles`). A share of settled pairs still
goes to people so that the judges stay measured (the audit), which is what lets the
decision use point estimates. Where the judges disagree, or are not yet trusted,
the pair goes to people.

The intervals are normal on the logit scale, from the observed information of each
annotator's likelihood (an answer checked against an uncertain reference counts for
little); no SciPy.
Pure numpy: no Django, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Reliability",
    "ReliabilityConfig",
    "RoutingConfig",
    "Vote",
    "estimate_reliability",
    "judges_verdict",
    "reference_accuracy",
    "settles",
]

# z for a two-sided 90% interval.
_Z90 = 1.6448536269514722


@dataclass(frozen=True)
class Vote:
    """One annotator's answer to one pairwise comparison: ``left_won`` True when the
    comparison's first item (in a fixed order of the comparison, not the order shown)
    was preferred. ``model`` marks an AI judge. ``weight`` is how many independent
    answers the vote is worth: 1 for a pairwise answer; a ranking of K items gives a
    vote on each of its K(K − 1)/2 pairs, each of weight 2/K, so the ranking counts as
    K − 1 answers, not as that many independent ones (its pairs are tied together
    by transitivity)."""

    comparison: Hashable
    annotator: Hashable
    left_won: bool
    model: bool = False
    weight: float = 1.0


@dataclass(frozen=True)
class ReliabilityConfig:
    """The priors and limits of :func:`estimate_reliability`.

    ``person_prior``: Beta(a, b) of a person's accuracy, mean 0.8 (crowd workers agree
    with the majority 75–85% of the time on preference data) and worth 10 answers, so
    a few dozen shared comparisons move it. ``judge_prior``: Beta(2, 2), mean ½: a
    judge starts untrusted. ``iterations`` and ``tol`` bound the EM.
    """

    person_prior: tuple[float, float] = (8.0, 2.0)
    judge_prior: tuple[float, float] = (2.0, 2.0)
    iterations: int = 100
    tol: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("person_prior", "judge_prior"):
            a, b = getattr(self, name)
            if not (a >= 1.0 and b >= 1.0):
                raise ValueError(f"{name} needs both Beta parameters ≥ 1 (a proper, unimodal prior), got {(a, b)}")


@dataclass(frozen=True)
class Reliability:
    """One annotator's estimate: ``accuracy`` (posterior mean), its 90% interval ``low``–``high``,
    ``anchored``: the answers it was measured on (comparisons someone else or gold
    also answered), ``agreed``: how many of them it expectedly got right, and
    ``weight``: its judgments' weight in the reward model."""

    annotator: Hashable
    model: bool
    accuracy: float
    low: float
    high: float
    anchored: int
    agreed: float
    weight: float = 1.0


@dataclass
class _Votes:
    """The votes as arrays: comparison index, annotator index, 1.0 left won, weight."""

    comparison: np.ndarray
    annotator: np.ndarray
    y: np.ndarray
    w: np.ndarray
    comparisons: list[Hashable] = field(default_factory=list)


def _index(votes: Sequence[Vote], annotators: list[Hashable], comparisons: dict[Hashable, int]) -> _Votes:
    where = {a: i for i, a in enumerate(annotators)}
    c = np.array([comparisons.setdefault(v.comparison, len(comparisons)) for v in votes], dtype=np.int64)
    k = np.array([where[v.annotator] for v in votes], dtype=np.int64)
    y = np.array([1.0 if v.left_won else 0.0 for v in votes], dtype=np.float64)
    w = np.array([v.weight for v in votes], dtype=np.float64)
    return _Votes(c, k, y, w, list(comparisons))


def _log_odds(acc: np.ndarray) -> np.ndarray:
    acc = np.clip(acc, 1e-6, 1.0 - 1e-6)
    return np.log(acc) - np.log1p(-acc)


def _posterior_left(votes: _Votes, acc: np.ndarray, n_comparisons: int, gold: np.ndarray) -> np.ndarray:
    """``P(z_c = left)`` for every comparison from the votes (one-coin model with
    accuracies ``acc``) and gold (``gold[c]``: 1.0, 0.0, or NaN where unknown)."""
    logit = np.zeros(n_comparisons)
    if votes.y.size:
        np.add.at(logit, votes.comparison, votes.w * (2.0 * votes.y - 1.0) * _log_odds(acc[votes.annotator]))
    q = 1.0 / (1.0 + np.exp(-np.clip(logit, -50.0, 50.0)))
    known = ~np.isnan(gold)
    q[known] = gold[known]
    return q


def _interval(
    accuracy: float, agree_prob: np.ndarray, prior: tuple[float, float], weight: np.ndarray | None = None
) -> tuple[float, float]:
    """90% interval of an accuracy around its estimate ``accuracy``, from the observed
    information of ``Σ w·log[a·p + (1 − a)(1 − p)] + log Beta(a)`` (``agree_prob``: each
    anchored answer's probability of being right given everyone else; ``weight``:
    what each answer is worth, 1 by default), normal on the logit scale. An answer
    checked against an uncertain reference (``p`` near ½) adds little information,
    so the interval stays wide where the evidence is thin."""
    a = min(max(accuracy, 1e-4), 1.0 - 1e-4)
    p = np.asarray(agree_prob, dtype=np.float64)
    w = np.ones_like(p) if weight is None else np.asarray(weight, dtype=np.float64)
    info = float(np.sum(w * ((2.0 * p - 1.0) / (a * p + (1.0 - a) * (1.0 - p))) ** 2))
    info += (prior[0] - 1.0) / a**2 + (prior[1] - 1.0) / (1.0 - a) ** 2
    centre = math.log(a / (1.0 - a))
    spread = _Z90 / (math.sqrt(max(info, 1e-12)) * a * (1.0 - a))
    return 1.0 / (1.0 + math.exp(-(centre - spread))), 1.0 / (1.0 + math.exp(-(centre + spread)))


def _accuracy(agreed: float, n: float, prior: tuple[float, float]) -> float:
    """The posterior mean of an accuracy with ``agreed`` of ``n`` answers (expected
    counts from the E-step) right: ``(a + agreed) / (a + b + n)``; the prior's mean
    with no evidence."""
    a, b = prior
    return (a + agreed) / (a + b + n)


def _fit_people(
    votes: _Votes, n_people: int, n_comparisons: int, gold: np.ndarray, cfg: ReliabilityConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Stage 1: people's accuracies by Dawid–Skene EM, with each person's
    expected agreements and anchored answers. Only comparisons that another person
    or gold also answered count toward a person's accuracy: a lone answer is
    consistent with any accuracy and would only slow the EM down."""
    prior = cfg.person_prior
    acc = np.full(n_people, _accuracy(0.0, 0.0, prior))
    others = np.bincount(votes.comparison, minlength=n_comparisons) - 1
    anchored_vote = (others[votes.comparison] > 0) | ~np.isnan(gold[votes.comparison])
    agreed = np.zeros(n_people)
    anchored = np.bincount(votes.annotator[anchored_vote], votes.w[anchored_vote], minlength=n_people)
    if not anchored_vote.any():
        return acc, agreed, anchored, [(np.zeros(0), np.zeros(0))] * n_people
    for _ in range(cfg.iterations):
        q = _posterior_left(votes, acc, n_comparisons, gold)[votes.comparison]
        agree = np.where(votes.y > 0.5, q, 1.0 - q)
        weighted = (agree * votes.w)[anchored_vote]
        agreed = np.bincount(votes.annotator[anchored_vote], weighted, minlength=n_people)
        new = np.array([_accuracy(agreed[k], anchored[k], prior) for k in range(n_people)])
        done = np.max(np.abs(new - acc)) < cfg.tol
        acc = new
        if done:
            break
    # Each anchored answer's chance of being right given everyone else (its own
    # term taken out of the comparison's log-odds; gold stays), for the intervals.
    q = _posterior_left(votes, acc, n_comparisons, gold)
    logit = np.log(np.clip(q, 1e-12, 1.0)) - np.log(np.clip(1.0 - q, 1e-12, 1.0))
    own = votes.w * (2.0 * votes.y - 1.0) * _log_odds(acc[votes.annotator])
    others_left = 1.0 / (1.0 + np.exp(-np.clip(logit[votes.comparison] - own, -50.0, 50.0)))
    is_gold = ~np.isnan(gold[votes.comparison])
    others_left = np.where(is_gold, gold[votes.comparison], others_left)
    loo = np.where(votes.y > 0.5, others_left, 1.0 - others_left)
    mine = [anchored_vote & (votes.annotator == k) for k in range(n_people)]
    return acc, agreed, anchored, [(loo[m], votes.w[m]) for m in mine]


def _fit_judge(agree_prob: np.ndarray, cfg: ReliabilityConfig, weight: np.ndarray | None = None) -> tuple[float, float]:
    """Stage 2 for one judge: ``agree_prob[i]`` is the probability that its i-th
    anchored vote is right (``q`` or ``1 − q``), ``weight[i]`` what it is worth. The
    accuracy of ``Π [a·p + (1 − a)(1 − p)]^w · Beta(a)`` by EM, and the expected agreements."""
    prior = cfg.judge_prior
    w = np.ones_like(agree_prob) if weight is None else weight
    a = _accuracy(0.0, 0.0, prior)
    agreed = 0.0
    for _ in range(cfg.iterations):
        right = a * agree_prob
        resp = right / np.maximum(right + (1.0 - a) * (1.0 - agree_prob), 1e-300)
        agreed = float((w * resp).sum())
        new = _accuracy(agreed, float(w.sum()), prior)
        done = abs(new - a) < cfg.tol
        a = new
        if done:
            break
    return a, agreed


def estimate_reliability(
    votes: Iterable[Vote],
    *,
    gold: Mapping[Hashable, bool] | None = None,
    config: ReliabilityConfig | None = None,
) -> dict[Hashable, Reliability]:
    """Every annotator's :class:`Reliability` from their votes (people first, then
    each judge against the people; see the module docstring). ``gold`` maps a
    comparison to its known answer (True: left better). Annotators are keyed as in
    the votes; an annotator with no anchored vote keeps its prior."""
    cfg = config or ReliabilityConfig()
    votes = list(votes)
    gold = dict(gold or {})
    kind: dict[Hashable, bool] = {}
    for v in votes:
        if kind.setdefault(v.annotator, v.model) != v.model:
            raise ValueError(f"annotator {v.annotator!r} is marked both a person and a model")
    people = [a for a, m in kind.items() if not m]
    judges = [a for a, m in kind.items() if m]
    comparisons: dict[Hashable, int] = {}
    person_votes = _index([v for v in votes if not v.model], people, comparisons)
    for c in gold:
        comparisons.setdefault(c, len(comparisons))
    judge_votes = [v for v in votes if v.model]
    for v in judge_votes:
        comparisons.setdefault(v.comparison, len(comparisons))
    n_c = len(comparisons)
    gold_arr = np.full(n_c, np.nan)
    for c, left in gold.items():
        gold_arr[comparisons[c]] = 1.0 if left else 0.0

    acc, agreed, anchored, loo = _fit_people(person_votes, len(people), n_c, gold_arr, cfg)
    out: dict[Hashable, Reliability] = {}
    for k, name in enumerate(people):
        low, high = _interval(float(acc[k]), loo[k][0], cfg.person_prior, loo[k][1])
        out[name] = Reliability(name, False, float(acc[k]), low, high, round(float(anchored[k])), float(agreed[k]))

    # Stage 2: people (and gold) decide z; judges never vouch for each other.
    q = _posterior_left(person_votes, acc, n_c, gold_arr)
    decided = np.zeros(n_c, dtype=bool)
    decided[person_votes.comparison] = True
    decided |= ~np.isnan(gold_arr)
    by_judge: dict[Hashable, list[tuple[float, float]]] = {j: [] for j in judges}
    for v in judge_votes:
        c = comparisons[v.comparison]
        if decided[c]:
            by_judge[v.annotator].append((q[c] if v.left_won else 1.0 - q[c], v.weight))
    for name in judges:
        pw = np.asarray(by_judge[name], dtype=np.float64).reshape(-1, 2)
        p, w = pw[:, 0], pw[:, 1]
        a, agree = _fit_judge(p, cfg, w)
        low, high = _interval(a, p, cfg.judge_prior, w)
        out[name] = Reliability(name, True, a, low, high, round(float(w.sum())), agree)
    return _weighted(out, cfg)


def reference_accuracy(estimates: Mapping[Hashable, Reliability], cfg: ReliabilityConfig | None = None) -> float:
    """``a_ref``: a typical person's accuracy, the median of the people's estimates,
    or with none the person prior's mean."""
    cfg = cfg or ReliabilityConfig()
    people = [r.accuracy for r in estimates.values() if not r.model]
    if people:
        return float(np.median(people))
    return _accuracy(0.0, 0.0, cfg.person_prior)


def _weighted(estimates: dict[Hashable, Reliability], cfg: ReliabilityConfig) -> dict[Hashable, Reliability]:
    """Each annotator's weight, relative to a typical person: a person's from their
    estimate (people are trusted unless measured otherwise), a judge's from the
    lower end of its interval (a judge must earn trust)."""
    ref = reference_accuracy(estimates, cfg)
    scale = max(2.0 * ref - 1.0, 1e-6)
    out = {}
    for name, r in estimates.items():
        a = r.low if r.model else r.accuracy
        w = float(np.clip((2.0 * a - 1.0) / scale, 0.0, 1.0) ** 2) if a > 0.5 else 0.0
        out[name] = Reliability(r.annotator, r.model, r.accuracy, r.low, r.high, r.anchored, r.agreed, w)
    return out


def judges_verdict(votes: Iterable[tuple[bool, float]]) -> float:
    """``P(left better)`` from judges' votes ``(left_won, accuracy)`` by Bayes' rule
    from an even prior, each judge at the accuracy given. A judge at or below ½
    adds nothing: a judge that is reliably wrong is not turned into a signal, it is
    ignored."""
    logit = 0.0
    for left_won, acc in votes:
        if acc > 0.5:
            logit += (1.0 if left_won else -1.0) * float(_log_odds(np.asarray(acc)))
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))


def settles(p_left: float, reference: float) -> bool:
    """Whether judges' combined verdict ``p_left`` is worth at least one typical
    person's answer (accuracy ``reference``), so they may settle the pair alone."""
    return max(p_left, 1.0 - p_left) >= max(reference, 0.5 + 1e-9)


@dataclass(frozen=True)
class RoutingConfig:
    """How a study shares comparisons between AI judges and people.

    ``judge_share``: the most of a study's comparisons that judges may settle without
    a person (the researcher's budget split; 0 turns routing off, judges then only
    add weighted votes). ``audit_rate``: the share of judge-settled comparisons that
    still go to a person, so every judge keeps being measured against people.
    """

    judge_share: float = 0.5
    audit_rate: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.judge_share < 1.0:
            raise ValueError(f"judge_share lies in [0, 1), got {self.judge_share}")
        if not 0.0 <= self.audit_rate <= 1.0:
            raise ValueError(f"audit_rate lies in [0, 1], got {self.audit_rate}")

    def room(self, settled: int, comparisons: int) -> bool:
        """Whether judges may settle one more comparison when they have settled
        ``settled`` of ``comparisons`` so far."""
        return settled + 1 <= self.judge_share * (comparisons + 1) + 1e-9
