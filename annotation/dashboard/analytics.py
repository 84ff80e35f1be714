"""Study analytics for the researcher dashboard: agreement, a leaderboard of
model sources, throughput, the learning curve and simulated regret.

The statistics themselves are pure and live in :mod:`models_runtime.stats`
(agreement coefficients, Bradley–Terry with posterior intervals, pace); this
module turns a study's rows into their inputs, in a fixed number of queries,
and caches the results. Results derived from the judgments are cached in
Django's cache under the study's *judgment fingerprint* (number of judgments
and highest judgment id): every new judgment raises the id and every undo
lowers the count, so a stale entry is never served, while the 5-second
dashboard poll costs one aggregate query when nothing changed.

Pairwise labels. Agreement is measured on the question "which of these two
candidates is better", with the pair written in candidate-id order (the lower
id first), never in screen order: two annotators of one comparison may see it
flipped (``Assignment.display_order``), and they agree when they prefer the
same *response*. A label is ``"first"``, ``"second"`` or ``"tie"``; "both bad"
is stored as a tie and counts as one. A listwise judgment contributes one
label for every pair of candidates it ranks, each pair its own unit.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.db.models.functions import TruncHour

from annotation.models import Candidate, Judgment, RewardModelVersion, SimulationRun, Study
from models_runtime.stats.agreement import COHEN_MIN_SHARED, AgreementStats, agreement_stats
from models_runtime.stats.bradley_terry import PairEvents, bradley_terry_posterior
from models_runtime.stats.throughput import throughput

FIRST, SECOND, TIE = "first", "second", "tie"
PAIR_LABELS = (FIRST, SECOND, TIE)

CACHE_SECONDS = 600
SLOW_SECONDS = 0.25
STALE_FACTOR = 20
# Wall-clock seconds for the cache's "how old, how slow" bookkeeping. Entries are
# shared by every web process, so it is not a per-process monotonic clock; tests
# replace it with a fake one.
clock: Callable[[], float] = time.time


# --- pairwise labels ----------------------------------------------------------------------


def ranking_levels(ranking: Sequence[Any]) -> dict[int, int]:
    """Candidate id → place (0 = best) of a stored ``Judgment.ranking``; tied
    candidates (an inner list) share a place.

    Raises ValueError naming the offending entry when the ranking is not a
    list of ids and lists of ids, or names a candidate twice.
    """
    if not isinstance(ranking, list | tuple):
        raise ValueError(f"ranking must be a list, got {type(ranking).__name__}")
    levels: dict[int, int] = {}
    for place, entry in enumerate(ranking):
        group = entry if isinstance(entry, list | tuple) else [entry]
        for cid in group:
            if isinstance(cid, bool) or not isinstance(cid, int):
                raise ValueError(f"ranking entry {place} holds {cid!r}, not a candidate id")
            if cid in levels:
                raise ValueError(f"ranking names candidate {cid} twice")
            levels[cid] = place
    return levels


def ranking_pairs(ranking: Sequence[Any]) -> list[tuple[int, int, str]]:
    """Every pair of candidates a ranking orders, as ``(lower id, higher id, label)``
    with ``label`` in :data:`PAIR_LABELS` relative to that id order."""
    levels = ranking_levels(ranking)
    ids = sorted(levels)
    pairs = []
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            la, lb = levels[a], levels[b]
            pairs.append((a, b, FIRST if la < lb else SECOND if lb < la else TIE))
    return pairs


def agreement_units(rows: Iterable[tuple[int, int, Sequence[Any]]]) -> list[dict[int, str]]:
    """Agreement units from ``(comparison id, annotator id, ranking)`` rows: one unit
    per candidate pair of a comparison, annotator → label in candidate-id order."""
    units: dict[tuple[int, int, int], dict[int, str]] = {}
    for comparison_id, annotator_id, ranking in rows:
        for a, b, label in ranking_pairs(ranking):
            units.setdefault((comparison_id, a, b), {})[annotator_id] = label
    return list(units.values())


# --- the source leaderboard ---------------------------------------------------------------


@dataclass(frozen=True)
class LeaderboardRow:
    """One model source on the leaderboard."""

    source: str
    score: float  # Bradley–Terry log-strength relative to the average source
    low: float
    high: float
    p_best: float
    comparisons: int  # candidate pairs judged against another source
    wins: float  # ties count half


@dataclass(frozen=True)
class Leaderboard:
    """Model sources ranked by Bradley–Terry score, best first."""

    rows: tuple[LeaderboardRow, ...] = ()
    judgments: int = 0  # judgments that compared two different sources
    samples: int = 0  # posterior samples behind the intervals and P(best)
    skipped_pairs: int = 0  # pairs with an unnamed source or the same source twice


def _source_events(
    rankings: Sequence[Sequence[Any]], source_of: Mapping[int, str], index: Mapping[str, int]
) -> tuple[PairEvents, int]:
    """The pairwise outcomes between sources that the rankings imply (see
    :class:`PairEvents`), and how many pairs were skipped."""
    judgment, winner, loser, weight = [], [], [], []
    used = skipped = 0
    for ranking in rankings:
        counted = False
        for a, b, label in ranking_pairs(ranking):
            sa, sb = source_of.get(a, ""), source_of.get(b, "")
            if not sa or not sb or sa == sb:
                skipped += 1
                continue
            ia, ib = index[sa], index[sb]
            if label == TIE:
                judgment += [used, used]
                winner += [ia, ib]
                loser += [ib, ia]
                weight += [0.5, 0.5]
            else:
                judgment.append(used)
                winner.append(ia if label == FIRST else ib)
                loser.append(ib if label == FIRST else ia)
                weight.append(1.0)
            counted = True
        used += counted
    events = PairEvents(
        judgment=np.array(judgment, dtype=np.int64),
        winner=np.array(winner, dtype=np.int64),
        loser=np.array(loser, dtype=np.int64),
        weight=np.array(weight),
        n_judgments=used,
        k=len(index),
    )
    return events, skipped


def leaderboard_from_judgments(
    rankings: Sequence[Sequence[Any]],
    source_of: Mapping[int, str],
    *,
    n_samples: int = 2000,
    seed: int = 0,
) -> Leaderboard:
    """A leaderboard of model sources from stored rankings (see :func:`study_leaderboard`);
    ``source_of`` maps candidate id → source."""
    sources = sorted({s for s in source_of.values() if s})
    index = {s: k for k, s in enumerate(sources)}
    events, skipped = _source_events(rankings, source_of, index)
    if not events.n_judgments:
        return Leaderboard(skipped_pairs=skipped)
    fit = bradley_terry_posterior(events, n_samples=n_samples, seed=seed)
    wins = events.wins()
    games = wins + wins.T
    rows = [
        LeaderboardRow(
            source=s,
            score=float(fit.scores[k]),
            low=float(fit.low[k]),
            high=float(fit.high[k]),
            p_best=float(fit.p_best[k]),
            comparisons=round(float(games[k].sum())),
            wins=float(wins[k].sum()),
        )
        for s, k in index.items()
        if games[k].sum() > 0
    ]
    rows.sort(key=lambda r: (-r.score, r.source))
    return Leaderboard(rows=tuple(rows), judgments=events.n_judgments, samples=fit.samples, skipped_pairs=skipped)


# --- the cache --------------------------------------------------------------------------------


def judgment_fingerprint(*, study: Study) -> tuple[int, int]:
    """(number of judgments, highest judgment id) of a study, in one query.

    Judgments are only added (a new, higher id) or undone (deleted, a lower
    count), never edited, so equal fingerprints mean equal judgments.
    """
    return judgment_counts(study=study)[0]


def judgment_counts(*, study: Study) -> tuple[tuple[int, int], int]:
    """The study's :func:`judgment_fingerprint` and its people's judgments (AI
    judges' answers left out: the figure the budget counts), in one query."""
    row = Judgment.objects.filter(study=study).aggregate(
        n=Count("id"), last=Max("id"), people=Count("id", filter=Q(by_model=False))
    )
    return (int(row["n"]), int(row["last"] or 0)), int(row["people"])


def _cached(study: Study, name: str, fingerprint: tuple[int, int] | None, compute: Callable[[], Any], *params: Any):
    """``compute()`` cached under the study's judgment fingerprint.

    A computation that took longer than ``SLOW_SECONDS`` (a leaderboard over
    ~10⁵ judgments takes about a second) is reused for up to
    ``STALE_FACTOR`` times its own duration after judgments changed, so a
    busy study's dashboard recomputes it at most every so often instead of on
    every poll; cheap results are always fresh. Durations and ages are read
    from :data:`clock`.
    """
    if fingerprint is None:
        fingerprint = judgment_fingerprint(study=study)
    # The creation time guards against a deleted study's id being reused
    # (SQLite does that) by a study whose judgments happen to match in count and id.
    created = study.created_at.timestamp() if study.created_at else 0
    base = "prefloop:analytics:{}:{}:{}:{}".format(study.id, created, name, ":".join(map(str, params)))
    key = "{}:{}:{}".format(base, *fingerprint)
    value = cache.get(key)
    if value is not None:
        return value
    latest = cache.get(base + ":latest")
    if latest is not None:
        stale_value, computed_at, seconds = latest
        if seconds > SLOW_SECONDS and clock() - computed_at < STALE_FACTOR * seconds:
            return stale_value
    started = clock()
    value = compute()
    finished = clock()
    cache.set(key, value, CACHE_SECONDS)
    cache.set(base + ":latest", (value, finished, finished - started), CACHE_SECONDS)
    return value


# --- selectors --------------------------------------------------------------------------------


def study_leaderboard(
    *, study: Study, n_samples: int = 2000, seed: int = 0, fingerprint: tuple[int, int] | None = None
) -> Leaderboard:
    """Model sources (``Candidate.source``) ranked by Bradley–Terry score from the
    study's judgments, with 95% posterior intervals and P(best) (see
    :func:`models_runtime.stats.bradley_terry.bradley_terry_posterior`).

    Every pair of candidates a judgment orders between two *different* named
    sources is one comparison (a tie counts half a win each); pairs within one
    source or with an unnamed one are skipped and counted. Gold and attention
    items are left out: their answers were designed, not sampled; so are AI
    judges' answers: the leaderboard is what people preferred. Scores are
    log-strengths relative to the average source. Cached per judgment
    fingerprint; two queries when it is not cached.
    """

    def compute() -> Leaderboard:
        rankings = list(
            Judgment.objects.filter(study=study, comparison__is_gold=False, by_model=False)
            .order_by("id")
            .values_list("ranking", flat=True)
        )
        source_of = dict(Candidate.objects.filter(study=study).exclude(source="").values_list("id", "source"))
        return leaderboard_from_judgments(rankings, source_of, n_samples=n_samples, seed=seed)

    return _cached(study, "leaderboard", fingerprint, compute, "posterior", n_samples, seed)


def study_agreement(
    *, study: Study, min_shared: int = COHEN_MIN_SHARED, fingerprint: tuple[int, int] | None = None
) -> AgreementStats:
    """Agreement among annotators on the study's comparisons judged more than once
    (see :func:`models_runtime.stats.agreement.agreement_stats`; labels as in the
    module docstring).

    Gold and attention items are left out: they are answered by everyone and
    designed to be easy, so they would inflate agreement, and gold accuracy
    reports them. So are AI judges' answers: this is agreement among people
    (each judge's agreement with people is its reliability). One query when
    not cached.
    """

    def compute() -> AgreementStats:
        people = Judgment.objects.filter(study=study, by_model=False)
        overlapping = (
            people.filter(comparison__is_gold=False)
            .values("comparison_id")
            .annotate(n=Count("id"))
            .filter(n__gte=2)
            .values("comparison_id")
        )
        rows = people.filter(comparison_id__in=overlapping).values_list("comparison_id", "annotator_id", "ranking")
        return agreement_stats(agreement_units(rows), min_shared=min_shared)

    return _cached(study, "agreement", fingerprint, compute, min_shared)


@dataclass(frozen=True)
class AnnotatorThroughput:
    """One annotator's pace (see :func:`models_runtime.stats.throughput.throughput`)."""

    user_id: int
    judgments: int
    active_seconds: float
    per_hour: float | None  # judgments per hour of active time
    median_seconds: float | None  # median time on task


def annotator_throughput(*, study: Study, fingerprint: tuple[int, int] | None = None) -> dict[int, AnnotatorThroughput]:
    """Per annotator id: judgments per hour while active and median time on task
    (see :func:`models_runtime.stats.throughput.throughput`). One query when not cached."""

    def compute() -> dict[int, AnnotatorThroughput]:
        by_user: dict[int, tuple[list, list]] = defaultdict(lambda: ([], []))
        for user_id, created_at, ms in Judgment.objects.filter(study=study).values_list(
            "annotator_id", "created_at", "time_on_task_ms"
        ):
            times, tasks = by_user[user_id]
            times.append(created_at)
            tasks.append(ms)
        result = {}
        for user_id, (times, tasks) in by_user.items():
            active, per_hour, median = throughput(times, tasks)
            result[user_id] = AnnotatorThroughput(user_id, len(times), active, per_hour, median)
        return result

    return _cached(study, "throughput", fingerprint, compute)


@dataclass(frozen=True)
class HourCount:
    """Judgments made in one clock hour, and how many of them in the last 60 minutes."""

    start: datetime  # the hour's start, UTC
    judgments: int
    recent: int = 0  # of those, made in the 60 minutes before ``now``


def judgments_per_hour(*, study: Study, hours: int = 24, now: datetime | None = None) -> list[HourCount]:
    """People's judgments in each of the last ``hours`` clock hours (UTC), oldest first,
    the current (partial) hour last; hours without judgments count zero. Each hour
    also counts its judgments of the last 60 minutes, so the dashboard's "last 60
    minutes" is a rolling window (the sum over hours, complete when ``hours`` ≥ 2),
    not the clock hour that may have just begun. ``now`` defaults to
    :data:`clock`. One query."""
    if hours < 1:
        raise ValueError("hours must be at least 1")
    now = (now or datetime.fromtimestamp(clock(), UTC)).astimezone(UTC)
    current = now.replace(minute=0, second=0, microsecond=0)
    start = current - timedelta(hours=hours - 1)
    window = now - timedelta(minutes=60)
    counts = {
        row["hour"].astimezone(UTC): (row["n"], row["recent"])
        for row in Judgment.objects.filter(study=study, by_model=False, created_at__gte=start)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour")
        .annotate(n=Count("id"), recent=Count("id", filter=Q(created_at__gt=window, created_at__lte=now)))
    }
    rows = []
    for h in range(hours):
        hour = start + timedelta(hours=h)
        rows.append(HourCount(hour, *counts.get(hour, (0, 0))))
    return rows


@dataclass(frozen=True)
class CurvePoint:
    """One model version's accuracy on the study's evaluation judgments, with its
    95% interval; ``n_judgments`` counts the training judgments it was fitted on."""

    version: int
    n_judgments: int
    heldout_accuracy: float
    low: float | None = None
    high: float | None = None
    n_heldout: int = 0


def learning_curve(*, study: Study) -> list[CurvePoint]:
    """Held-out accuracy of every reward-model version against the training
    judgments it was fitted on, oldest first. Only honest figures: versions
    scored on the fixed evaluation set (which no version trained on) with enough
    evaluation judgments to show one; the others are left out. One query."""
    return [
        CurvePoint(version, n, float(acc), low, high, n_heldout)
        for version, n, acc, low, high, n_heldout in RewardModelVersion.objects.filter(
            study=study, heldout_accuracy__isnull=False, fixed_evaluation=True
        )
        .order_by("version")
        .values_list(
            "version", "n_train", "heldout_accuracy", "heldout_accuracy_low", "heldout_accuracy_high", "n_heldout"
        )
    ]


@dataclass(frozen=True)
class GoldAccuracy:
    """Gold items and attention checks answered in the whole study."""

    answered: int
    correct: int
    attention_answered: int
    attention_failed: int

    @property
    def accuracy(self) -> float | None:
        """Share of gold items answered correctly (None before the first)."""
        return self.correct / self.answered if self.answered else None


def gold_accuracy(*, quality: Iterable[Any]) -> GoldAccuracy:
    """Overall gold accuracy and attention-check failures, summed over the rows of
    ``annotation.dashboard.selectors.annotator_quality`` (no query of its own)."""
    rows = list(quality)
    return GoldAccuracy(
        answered=sum(q.gold_answered for q in rows),
        correct=sum(q.gold_correct for q in rows),
        attention_answered=sum(q.attention_answered for q in rows),
        attention_failed=sum(q.attention_failed for q in rows),
    )


@dataclass(frozen=True)
class RegretPoint:
    """Simulated regret after some number of judgments."""

    judgments: int
    regret: float
    model_version: int | None


@dataclass(frozen=True)
class RegretCurve:
    """The regret checkpoints of a recorded simulation run."""

    run_id: int
    created_at: datetime
    utility_kind: str
    annotators: int
    points: tuple[RegretPoint, ...] = ()
    unscored: int = 0  # checkpoints whose model could not be scored
    runs: int = 1  # simulation runs recorded for the study

    @property
    def last(self) -> RegretPoint | None:
        """The last scored checkpoint, if any."""
        return self.points[-1] if self.points else None


def simulation_regret(*, study: Study) -> RegretCurve | None:
    """The newest recorded simulation run's regret checkpoints, or None when the
    study has never been simulated. Regret is the normalised simple regret of
    the live model's favourite response (0 = always the best, 1 = chance), as
    ``simulate_annotators`` computed it against its hidden utilities when it
    ran: the dashboard shows the recorded figures and recomputes nothing. One query.
    """
    runs = SimulationRun.objects.filter(study=OuterRef("study")).order_by().values("study").annotate(n=Count("id"))
    run = (
        SimulationRun.objects.filter(study=study)
        .annotate(runs=Subquery(runs.values("n")[:1]))
        .order_by("-created_at", "-id")
        .first()
    )
    if run is None:
        return None
    points = []
    unscored = 0
    for checkpoint in run.checkpoints or []:
        regret = checkpoint.get("regret")
        if regret is None or not math.isfinite(regret):
            unscored += 1
            continue
        points.append(RegretPoint(int(checkpoint["judgments"]), float(regret), checkpoint.get("model_version")))
    return RegretCurve(
        run_id=run.id,
        created_at=run.created_at,
        utility_kind=run.utility_kind,
        annotators=run.annotators,
        points=tuple(points),
        unscored=unscored,
        runs=run.runs or 1,
    )


@dataclass(frozen=True)
class StudyAnalytics:
    """Everything the dashboard derives from judgments and model versions."""

    fingerprint: tuple[int, int]
    leaderboard: Leaderboard
    agreement: AgreementStats
    throughput: dict[int, AnnotatorThroughput] = field(default_factory=dict)
    per_hour: tuple[HourCount, ...] = ()
    curve: tuple[CurvePoint, ...] = ()
    regret: RegretCurve | None = None

    @property
    def judgments_last_hour(self) -> int:
        """Judgments in the last 60 minutes (a rolling window, not the clock hour)."""
        return sum(h.recent for h in self.per_hour)


def study_analytics(*, study: Study, fingerprint: tuple[int, int] | None = None) -> StudyAnalytics:
    """The dashboard's analytics in a fixed number of queries: three (per hour,
    learning curve, regret) when the judgment-derived figures are cached, seven
    when they are not, plus one for the fingerprint unless it is passed in."""
    fingerprint = fingerprint or judgment_fingerprint(study=study)
    return StudyAnalytics(
        fingerprint=fingerprint,
        leaderboard=study_leaderboard(study=study, fingerprint=fingerprint),
        agreement=study_agreement(study=study, fingerprint=fingerprint),
        throughput=annotator_throughput(study=study, fingerprint=fingerprint),
        per_hour=tuple(judgments_per_hour(study=study)),
        curve=tuple(learning_curve(study=study)),
        regret=simulation_regret(study=study),
    )
