"""Study analytics for the researcher dashboard: agreement, a leaderboard of
model sources, throughput, the learning curve and simulated regret.

The first half of the module is pure numpy (arrays and plain Python values in,
numbers out) and is tested against textbook examples; the second half holds
thin selectors that read a study's rows in a fixed number of queries and call
it. Results derived from the judgments are cached in Django's cache under the
study's *judgment fingerprint* (number of judgments and highest judgment id):
every new judgment raises the id and every undo lowers the count, so a stale
entry is never served, while the 5-second dashboard poll costs one aggregate
query when nothing changed.

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
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from annotation.models import Study

FIRST, SECOND, TIE = "first", "second", "tie"
PAIR_LABELS = (FIRST, SECOND, TIE)

# Cohen's κ is averaged over annotator pairs that judged at least this many
# units in common: with fewer, one pair's κ swings between −1 and 1.
COHEN_MIN_SHARED = 5
# Bradley–Terry ridge: a N(0, 1/ridge) prior on every score, enough to keep a
# source that won (or lost) every comparison, or a set of sources never
# compared with the rest, finite without moving well-measured scores visibly.
BT_RIDGE = 0.1
# Two judgments by one annotator further apart than this belong to different
# working sessions; the gap is not counted as time at work.
IDLE_GAP_SECONDS = 600.0
CACHE_SECONDS = 600
SLOW_SECONDS = 0.25
STALE_FACTOR = 20


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


# --- agreement (pure) --------------------------------------------------------------------


@dataclass(frozen=True)
class AgreementStats:
    """Inter-annotator agreement on units rated by two or more annotators.

    ``None`` where a coefficient is undefined: no pairable units, or every
    rating in one category (expected disagreement zero).
    """

    units: int  # units with at least two ratings
    ratings: int  # ratings in those units
    annotators: int
    percent_agreement: float | None
    krippendorff_alpha: float | None
    fleiss_kappa: float | None
    fleiss_units: int  # units with the modal number of raters, the ones Fleiss' κ uses
    fleiss_raters: int  # that number of raters
    cohen_kappa_mean: float | None
    cohen_pairs: int  # annotator pairs with at least ``min_shared`` shared units
    min_shared: int = COHEN_MIN_SHARED

    @property
    def has_data(self) -> bool:
        return self.units > 0


def _pairable(units: Iterable[Mapping[Hashable, Hashable]]) -> list[dict[Hashable, Hashable]]:
    return [dict(u) for u in units if len(u) >= 2]


def krippendorff_alpha_nominal(units: Iterable[Mapping[Hashable, Hashable]]) -> float | None:
    """Krippendorff's α for nominal data with missing ratings.

    ``units`` maps, per unit, rater → value; raters missing from a unit are
    missing data, and units with fewer than two values are not pairable and
    drop out (Krippendorff 2011, "Computing Krippendorff's alpha-reliability").
    α = 1 − D_o/D_e from the coincidence matrix. None when fewer than two
    pairable values exist or all values are equal.
    """
    rows = _pairable(units)
    if not rows:
        return None
    categories = sorted({v for u in rows for v in u.values()}, key=repr)
    index = {c: k for k, c in enumerate(categories)}
    coincidence = np.zeros((len(categories), len(categories)))
    for unit in rows:
        counts = np.bincount([index[v] for v in unit.values()], minlength=len(categories)).astype(float)
        m = counts.sum()
        # Ordered pairs of values from different raters within the unit, each
        # unit contributing m values in all: o_ck += n_c (n_k − [c = k]) / (m − 1).
        coincidence += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    observed = coincidence.sum() - np.trace(coincidence)
    expected = (n_c.sum() ** 2 - (n_c**2).sum()) / (n - 1)
    if n < 2 or expected <= 0:
        return None
    return float(1.0 - observed / expected)


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' κ (1971) from an items × categories matrix of rating counts.

    Every row must sum to the same number of raters m ≥ 2 (ValueError
    otherwise). None when all ratings fall into one category.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ValueError("counts must be a non-empty items × categories matrix")
    m = counts.sum(axis=1)
    if not np.allclose(m, m[0]) or m[0] < 2:
        raise ValueError("every item needs the same number of raters, at least two")
    raters = m[0]
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = ((counts**2).sum(axis=1) - raters) / (raters * (raters - 1))
    p_bar, p_e = p_i.mean(), (p_j**2).sum()
    if p_e >= 1.0:
        return None
    return float((p_bar - p_e) / (1.0 - p_e))


def cohen_kappa(labels_a: Sequence[Hashable], labels_b: Sequence[Hashable]) -> float | None:
    """Cohen's κ of two raters' labels on the same items (None when chance
    agreement is 1, i.e. both raters used one and the same category throughout)."""
    if len(labels_a) != len(labels_b):
        raise ValueError("both raters need a label for every item")
    if not labels_a:
        return None
    n = len(labels_a)
    p_o = sum(a == b for a, b in zip(labels_a, labels_b, strict=True)) / n
    ca, cb = Counter(labels_a), Counter(labels_b)
    p_e = sum(ca[c] * cb[c] for c in ca) / (n * n)
    if p_e >= 1.0:
        return None
    return float((p_o - p_e) / (1.0 - p_e))


def agreement_stats(
    units: Iterable[Mapping[Hashable, Hashable]], *, min_shared: int = COHEN_MIN_SHARED
) -> AgreementStats:
    """Percent agreement, Krippendorff's α, Fleiss' κ and mean pairwise Cohen's κ.

    ``units`` maps, per unit (for prefloop: a candidate pair of a comparison),
    annotator id → label. Units with one rating are ignored. Fleiss' κ needs
    the same number of raters on every item, so it is computed on the units
    with the most common rater count (ties go to the count covering more
    ratings) and says how many that was; α uses every pairable unit. Cohen's
    κ is averaged over annotator pairs sharing at least ``min_shared`` units
    (pairs where it is undefined are left out). Percent agreement is the mean
    over units of the share of agreeing rater pairs.
    """
    rows = _pairable(units)
    ratings = sum(len(u) for u in rows)
    annotators = {a for u in rows for a in u}
    if not rows:
        return AgreementStats(0, 0, 0, None, None, None, 0, 0, None, 0, min_shared)
    categories = sorted({v for u in rows for v in u.values()}, key=repr)
    index = {c: k for k, c in enumerate(categories)}

    shares = []
    by_size: dict[int, list[np.ndarray]] = defaultdict(list)
    for unit in rows:
        counts = np.bincount([index[v] for v in unit.values()], minlength=len(categories))
        m = len(unit)
        shares.append(float((counts * (counts - 1)).sum()) / (m * (m - 1)))
        by_size[m].append(counts)
    raters, fleiss_rows = max(by_size.items(), key=lambda kv: (len(kv[1]), len(kv[1]) * kv[0]))
    kappa = fleiss_kappa(np.array(fleiss_rows))

    shared: dict[tuple[Hashable, Hashable], tuple[list, list]] = {}
    for unit in rows:
        raters_here = sorted(unit, key=repr)
        for i, a in enumerate(raters_here):
            for b in raters_here[i + 1 :]:
                la, lb = shared.setdefault((a, b), ([], []))
                la.append(unit[a])
                lb.append(unit[b])
    kappas = [k for la, lb in shared.values() if len(la) >= min_shared and (k := cohen_kappa(la, lb)) is not None]
    return AgreementStats(
        units=len(rows),
        ratings=ratings,
        annotators=len(annotators),
        percent_agreement=float(np.mean(shares)),
        krippendorff_alpha=krippendorff_alpha_nominal(rows),
        fleiss_kappa=kappa,
        fleiss_units=len(fleiss_rows),
        fleiss_raters=raters,
        cohen_kappa_mean=float(np.mean(kappas)) if kappas else None,
        cohen_pairs=len(kappas),
        min_shared=min_shared,
    )


# --- Bradley–Terry (pure) ----------------------------------------------------------------


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def bradley_terry_scores(wins: np.ndarray, *, ridge: float = BT_RIDGE, max_iter: int = 100) -> np.ndarray:
    """Bradley–Terry log-strengths from a k × k matrix of (weighted) wins.

    ``wins[i, j]`` is how often i beat j; a tie counts half to each side.
    Maximises Σ wins_ij log σ(θ_i − θ_j) − ridge/2 ‖θ‖² by Newton's method
    with step halving (the objective is strictly concave for ridge > 0).
    The ridge term makes the scores sum to zero at the optimum, so each is
    relative to the average item, and keeps them finite for items that won
    or lost everything or were never compared with the rest.
    """
    wins = np.asarray(wins, dtype=float)
    k = wins.shape[0]
    if wins.shape != (k, k) or (wins < 0).any():
        raise ValueError("wins must be a square matrix of non-negative counts")
    if ridge <= 0:
        raise ValueError("ridge must be positive")
    games = wins + wins.T
    theta = np.zeros(k)

    def objective(t: np.ndarray) -> float:
        return float((wins * _log_sigmoid(t[:, None] - t[None, :])).sum() - 0.5 * ridge * t @ t)

    value = objective(theta)
    for _ in range(max_iter):
        diff = theta[:, None] - theta[None, :]
        p = np.exp(_log_sigmoid(diff))  # P(i beats j)
        grad = (wins - games * p).sum(axis=1) - ridge * theta
        weight = games * p * (1.0 - p)
        laplacian = np.diag(weight.sum(axis=1)) - weight
        step = np.linalg.solve(laplacian + ridge * np.eye(k), grad)
        t = 1.0
        while True:
            candidate = theta + t * step
            new_value = objective(candidate)
            if new_value >= value - 1e-12 or t < 1e-8:
                break
            t *= 0.5
        theta, value = candidate, new_value
        if np.abs(t * step).max() < 1e-10:
            break
    return theta


@dataclass(frozen=True)
class PairEvents:
    """Pairwise outcomes between k items, each tagged with the judgment it came from.

    One event per ordered (winner, loser) with weight 1, or two events of
    weight 0.5 (one each way) for a tie. Bootstrap replicates resample
    judgments, so all pairs a listwise judgment implies move together.
    """

    judgment: np.ndarray  # int, index into 0..n_judgments-1
    winner: np.ndarray  # int, index into 0..k-1
    loser: np.ndarray
    weight: np.ndarray
    n_judgments: int
    k: int

    def wins(self, judgment_weights: np.ndarray | None = None) -> np.ndarray:
        w = self.weight if judgment_weights is None else self.weight * judgment_weights[self.judgment]
        flat = np.bincount(self.winner * self.k + self.loser, weights=w, minlength=self.k * self.k)
        return flat.reshape(self.k, self.k)


@dataclass(frozen=True)
class BootstrapFit:
    scores: np.ndarray  # fit on all judgments
    low: np.ndarray  # 2.5 % percentile of the replicates
    high: np.ndarray  # 97.5 %
    p_best: np.ndarray  # share of replicates in which each item scores highest
    replicates: int


def bradley_terry_bootstrap(
    events: PairEvents, *, n_bootstrap: int = 200, seed: int = 0, ridge: float = BT_RIDGE
) -> BootstrapFit:
    """Bradley–Terry scores with 95% percentile-bootstrap intervals and P(best).

    Each replicate draws ``n_judgments`` judgments with replacement and refits;
    P(best) is the share of replicates in which an item has the highest score
    (so it sums to one). With ``n_bootstrap=0`` the intervals collapse onto the
    point estimate and P(best) is one for the top item.
    """
    scores = bradley_terry_scores(events.wins(), ridge=ridge)
    if n_bootstrap <= 0 or events.n_judgments == 0:
        p_best = np.zeros(events.k)
        if events.k:
            p_best[int(np.argmax(scores))] = 1.0
        return BootstrapFit(scores, scores.copy(), scores.copy(), p_best, 0)
    rng = np.random.default_rng(seed)
    reps = np.empty((n_bootstrap, events.k))
    for r in range(n_bootstrap):
        counts = np.bincount(rng.integers(0, events.n_judgments, events.n_judgments), minlength=events.n_judgments)
        reps[r] = bradley_terry_scores(events.wins(counts.astype(float)), ridge=ridge)
    best = np.bincount(np.argmax(reps, axis=1), minlength=events.k) / n_bootstrap
    low, high = np.percentile(reps, [2.5, 97.5], axis=0)
    return BootstrapFit(scores, low, high, best, n_bootstrap)


# --- throughput (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatorThroughput:
    user_id: int
    judgments: int
    active_seconds: float
    per_hour: float | None  # judgments per hour of active time
    median_seconds: float | None  # median time on task


def throughput(
    times: Sequence[datetime], task_ms: Sequence[int | None], *, idle_gap: float = IDLE_GAP_SECONDS
) -> tuple[float, float | None, float | None]:
    """(active seconds, judgments per active hour, median seconds on task) of one annotator.

    Active time is the sum of gaps between consecutive judgments that are at
    most ``idle_gap`` long, plus the time on task of each session's first
    judgment (the work before it that no earlier judgment brackets). Judgments
    per hour is undefined (None) without any active time.
    """
    order = sorted(range(len(times)), key=lambda i: times[i])
    active = 0.0
    previous: datetime | None = None
    for i in order:
        gap = None if previous is None else (times[i] - previous).total_seconds()
        if gap is not None and gap <= idle_gap:
            active += gap
        else:
            active += (task_ms[i] or 0) / 1000.0
        previous = times[i]
    known = [ms for ms in task_ms if ms is not None]
    median = float(np.median(known)) / 1000.0 if known else None
    return active, (len(times) * 3600.0 / active if active > 0 else None), median


# --- selectors -----------------------------------------------------------------------------------


def judgment_fingerprint(*, study: Study) -> tuple[int, int]:
    """(number of judgments, highest judgment id) of a study, in one query.

    Judgments are only added (a new, higher id) or undone (deleted, a lower
    count), never edited, so equal fingerprints mean equal judgments.
    """
    from django.db.models import Count, Max

    from annotation.models import Judgment

    row = Judgment.objects.filter(study=study).aggregate(n=Count("id"), last=Max("id"))
    return int(row["n"]), int(row["last"] or 0)


def _cached(study: Study, name: str, fingerprint: tuple[int, int] | None, compute, *params: Any):
    """``compute()`` cached under the study's judgment fingerprint.

    A computation that took longer than ``SLOW_SECONDS`` (a leaderboard over
    ~10⁵ judgments takes about a second) is reused for up to
    ``STALE_FACTOR`` times its own duration after judgments changed, so a
    busy study's dashboard recomputes it at most every so often instead of on
    every poll; cheap results are always fresh.
    """
    import time

    from django.core.cache import cache

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
        if seconds > SLOW_SECONDS and time.time() - computed_at < STALE_FACTOR * seconds:
            return stale_value
    started = time.time()
    value = compute()
    cache.set(key, value, CACHE_SECONDS)
    cache.set(base + ":latest", (value, time.time(), time.time() - started), CACHE_SECONDS)
    return value


@dataclass(frozen=True)
class LeaderboardRow:
    source: str
    score: float  # Bradley–Terry log-strength relative to the average source
    low: float
    high: float
    p_best: float
    comparisons: int  # candidate pairs judged against another source
    wins: float  # ties count half


@dataclass(frozen=True)
class Leaderboard:
    rows: tuple[LeaderboardRow, ...] = ()
    judgments: int = 0  # judgments that compared two different sources
    replicates: int = 0
    skipped_pairs: int = 0  # pairs with an unnamed source or the same source twice


def leaderboard_from_judgments(
    rankings: Sequence[Sequence[Any]],
    source_of: Mapping[int, str],
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> Leaderboard:
    """A leaderboard of model sources from stored rankings (see :func:`study_leaderboard`)."""
    sources = sorted({s for s in source_of.values() if s})
    index = {s: k for k, s in enumerate(sources)}
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
    if not used:
        return Leaderboard(skipped_pairs=skipped)
    events = PairEvents(
        judgment=np.array(judgment, dtype=np.int64),
        winner=np.array(winner, dtype=np.int64),
        loser=np.array(loser, dtype=np.int64),
        weight=np.array(weight),
        n_judgments=used,
        k=len(sources),
    )
    fit = bradley_terry_bootstrap(events, n_bootstrap=n_bootstrap, seed=seed)
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
    return Leaderboard(rows=tuple(rows), judgments=used, replicates=fit.replicates, skipped_pairs=skipped)


def study_leaderboard(
    *, study: Study, n_bootstrap: int = 200, seed: int = 0, fingerprint: tuple[int, int] | None = None
) -> Leaderboard:
    """Model sources (``Candidate.source``) ranked by Bradley–Terry score from the
    study's judgments, with 95% bootstrap intervals (resampling judgments) and P(best).

    Every pair of candidates a judgment orders between two *different* named
    sources is one comparison (a tie counts half a win each); pairs within one
    source or with an unnamed one are skipped and counted. Gold and attention
    items are left out: their answers were designed, not sampled. Scores are
    log-strengths relative to the average source. Cached per judgment
    fingerprint; two queries when it is not cached.
    """
    from annotation.models import Candidate, Judgment

    def compute() -> Leaderboard:
        rankings = list(
            Judgment.objects.filter(study=study, comparison__is_gold=False)
            .order_by("id")
            .values_list("ranking", flat=True)
        )
        source_of = dict(Candidate.objects.filter(study=study).exclude(source="").values_list("id", "source"))
        return leaderboard_from_judgments(rankings, source_of, n_bootstrap=n_bootstrap, seed=seed)

    return _cached(study, "leaderboard", fingerprint, compute, n_bootstrap, seed)


def agreement_units(rows: Iterable[tuple[int, int, Sequence[Any]]]) -> list[dict[int, str]]:
    """Agreement units from ``(comparison id, annotator id, ranking)`` rows: one unit
    per candidate pair of a comparison, annotator → label in candidate-id order."""
    units: dict[tuple[int, int, int], dict[int, str]] = {}
    for comparison_id, annotator_id, ranking in rows:
        for a, b, label in ranking_pairs(ranking):
            units.setdefault((comparison_id, a, b), {})[annotator_id] = label
    return list(units.values())


def study_agreement(
    *, study: Study, min_shared: int = COHEN_MIN_SHARED, fingerprint: tuple[int, int] | None = None
) -> AgreementStats:
    """Agreement among annotators on the study's comparisons judged more than once
    (see :func:`agreement_stats`; labels as in the module docstring).

    Gold and attention items are left out: they are answered by everyone and
    designed to be easy, so they would inflate agreement, and gold accuracy
    reports them. One query when not cached.
    """
    from django.db.models import Count

    from annotation.models import Judgment

    def compute() -> AgreementStats:
        overlapping = (
            Judgment.objects.filter(study=study, comparison__is_gold=False)
            .values("comparison_id")
            .annotate(n=Count("id"))
            .filter(n__gte=2)
            .values("comparison_id")
        )
        rows = Judgment.objects.filter(study=study, comparison_id__in=overlapping).values_list(
            "comparison_id", "annotator_id", "ranking"
        )
        return agreement_stats(agreement_units(rows), min_shared=min_shared)

    return _cached(study, "agreement", fingerprint, compute, min_shared)


def annotator_throughput(*, study: Study, fingerprint: tuple[int, int] | None = None) -> dict[int, AnnotatorThroughput]:
    """Per annotator id: judgments per hour while active and median time on task
    (see :func:`throughput`). One query when not cached."""
    from annotation.models import Judgment

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
    start: datetime  # the hour's start, UTC
    judgments: int


def judgments_per_hour(*, study: Study, hours: int = 24, now: datetime | None = None) -> list[HourCount]:
    """Judgments in each of the last ``hours`` clock hours (UTC), oldest first,
    the current (partial) hour last; hours without judgments count zero. One query."""
    from django.db.models import Count
    from django.db.models.functions import TruncHour

    from annotation.models import Judgment

    if hours < 1:
        raise ValueError("hours must be at least 1")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    current = now.replace(minute=0, second=0, microsecond=0)
    start = current - timedelta(hours=hours - 1)
    counts = {
        row["hour"].astimezone(UTC): row["n"]
        for row in Judgment.objects.filter(study=study, created_at__gte=start)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour")
        .annotate(n=Count("id"))
    }
    return [HourCount(start + timedelta(hours=h), counts.get(start + timedelta(hours=h), 0)) for h in range(hours)]


@dataclass(frozen=True)
class CurvePoint:
    version: int
    n_judgments: int
    heldout_accuracy: float


def learning_curve(*, study: Study) -> list[CurvePoint]:
    """Held-out accuracy of every reward-model version against the judgments it
    was fitted on, oldest first; versions without a held-out score are left out. One query."""
    from annotation.models import RewardModelVersion

    return [
        CurvePoint(version, n, float(acc))
        for version, n, acc in RewardModelVersion.objects.filter(study=study, heldout_accuracy__isnull=False)
        .order_by("version")
        .values_list("version", "n_judgments", "heldout_accuracy")
    ]


@dataclass(frozen=True)
class GoldAccuracy:
    answered: int
    correct: int
    attention_answered: int
    attention_failed: int

    @property
    def accuracy(self) -> float | None:
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
    judgments: int
    regret: float
    model_version: int | None


@dataclass(frozen=True)
class RegretCurve:
    run_id: int
    created_at: datetime
    utility_kind: str
    annotators: int
    points: tuple[RegretPoint, ...] = ()
    unscored: int = 0  # checkpoints whose model could not be scored
    runs: int = 1  # simulation runs recorded for the study

    @property
    def last(self) -> RegretPoint | None:
        return self.points[-1] if self.points else None


def simulation_regret(*, study: Study) -> RegretCurve | None:
    """The newest recorded simulation run's regret checkpoints, or None when the
    study has never been simulated. Regret is the normalised simple regret of
    the live model's favourite response (0 = always the best, 1 = chance), as
    ``simulate_annotators`` computed it against its hidden utilities when it
    ran: the dashboard shows the recorded figures and recomputes nothing. One query.
    """
    from django.db.models import Count, OuterRef, Subquery

    from annotation.models import SimulationRun

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
        return self.per_hour[-1].judgments if self.per_hour else 0


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
