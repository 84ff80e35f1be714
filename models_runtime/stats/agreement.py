"""Inter-annotator agreement on nominal labels: Krippendorff's α, Fleiss' κ, mean
pairwise Cohen's κ and percent agreement.

A *unit* is one thing rated by several annotators (for prefloop, one candidate pair of
a comparison), given as a mapping annotator → label; annotators missing from a unit are
missing data. Labels are any hashable values compared for equality.

α comes from the ``krippendorff`` package (Castro, "Fast Krippendorff", checked here
against Krippendorff's own worked example). Fleiss' and Cohen's κ are the textbook
formulas, a dozen lines each, rather than statsmodels' ``fleiss_kappa`` and
scikit-learn's ``cohen_kappa_score``: either library would add about 2 s and 120–135 MB
to every web worker that opens a dashboard (they import scipy, pandas or joblib), and
statsmodels 70 MB of packages to the install, for two formulas that the tests check
against Fleiss (1971) and scikit-learn.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import krippendorff
import numpy as np

__all__ = [
    "COHEN_MIN_SHARED",
    "AgreementStats",
    "agreement_stats",
    "cohen_kappa",
    "fleiss_kappa",
    "krippendorff_alpha_nominal",
]

# Cohen's κ is averaged over annotator pairs that judged at least this many
# units in common: with fewer, one pair's κ swings between −1 and 1.
COHEN_MIN_SHARED = 5

Unit = Mapping[Hashable, Hashable]


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
        """Whether any unit was rated by two or more annotators."""
        return self.units > 0


def _pairable(units: Iterable[Unit]) -> list[dict[Hashable, Hashable]]:
    return [dict(u) for u in units if len(u) >= 2]


def _value_counts(rows: Sequence[Unit]) -> np.ndarray:
    """Units × categories matrix of how many annotators gave each label to each unit."""
    categories = sorted({v for u in rows for v in u.values()}, key=repr)
    index = {c: k for k, c in enumerate(categories)}
    counts = np.zeros((len(rows), len(categories)), dtype=np.int64)
    for i, unit in enumerate(rows):
        for value in unit.values():
            counts[i, index[value]] += 1
    return counts


def krippendorff_alpha_nominal(units: Iterable[Unit]) -> float | None:
    """Krippendorff's α for nominal data with missing ratings.

    Units with fewer than two values are not pairable and drop out (Krippendorff
    2011, "Computing Krippendorff's alpha-reliability"); α = 1 − D_o/D_e from the
    coincidence matrix. None when no unit is pairable or every value is the same
    (no expected disagreement).
    """
    rows = _pairable(units)
    if not rows:
        return None
    counts = _value_counts(rows)
    if counts.shape[1] < 2:
        return None
    # The package takes the units × values counts directly: no raters × units
    # matrix, so memory grows with units, not with units × annotators.
    return float(krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"))


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


def _percent_and_fleiss(rows: Sequence[Unit]) -> tuple[float, float | None, int, int]:
    """Percent agreement over every unit, and Fleiss' κ over the units with the
    modal rater count: (percent, κ, units used by κ, their rater count)."""
    counts = _value_counts(rows)
    shares = []
    by_size: dict[int, list[np.ndarray]] = defaultdict(list)
    for unit, row in zip(rows, counts, strict=True):
        m = len(unit)
        shares.append(float((row * (row - 1)).sum()) / (m * (m - 1)))
        by_size[m].append(row)
    # Ties between rater counts go to the count covering more ratings.
    raters, fleiss_rows = max(by_size.items(), key=lambda kv: (len(kv[1]), len(kv[1]) * kv[0]))
    return float(np.mean(shares)), fleiss_kappa(np.array(fleiss_rows)), len(fleiss_rows), raters


def _mean_cohen_kappa(rows: Sequence[Unit], min_shared: int) -> tuple[float | None, int]:
    """Cohen's κ averaged over annotator pairs sharing at least ``min_shared``
    units where it is defined: (mean, number of pairs)."""
    shared: dict[tuple[Hashable, Hashable], tuple[list, list]] = {}
    for unit in rows:
        raters_here = sorted(unit, key=repr)
        for i, a in enumerate(raters_here):
            for b in raters_here[i + 1 :]:
                la, lb = shared.setdefault((a, b), ([], []))
                la.append(unit[a])
                lb.append(unit[b])
    kappas = [k for la, lb in shared.values() if len(la) >= min_shared and (k := cohen_kappa(la, lb)) is not None]
    return (float(np.mean(kappas)) if kappas else None), len(kappas)


def agreement_stats(units: Iterable[Unit], *, min_shared: int = COHEN_MIN_SHARED) -> AgreementStats:
    """Percent agreement, Krippendorff's α, Fleiss' κ and mean pairwise Cohen's κ.

    ``units`` maps, per unit, annotator id → label. Units with one rating are
    ignored. Fleiss' κ needs the same number of raters on every item, so it is
    computed on the units with the most common rater count (ties go to the count
    covering more ratings) and says how many that was; α uses every pairable
    unit. Cohen's κ is averaged over annotator pairs sharing at least
    ``min_shared`` units (pairs where it is undefined are left out). Percent
    agreement is the mean over units of the share of agreeing rater pairs.
    """
    rows = _pairable(units)
    if not rows:
        return AgreementStats(0, 0, 0, None, None, None, 0, 0, None, 0, min_shared)
    percent, fleiss, fleiss_units, fleiss_raters = _percent_and_fleiss(rows)
    cohen, cohen_pairs = _mean_cohen_kappa(rows, min_shared)
    return AgreementStats(
        units=len(rows),
        ratings=sum(len(u) for u in rows),
        annotators=len({a for u in rows for a in u}),
        percent_agreement=percent,
        krippendorff_alpha=krippendorff_alpha_nominal(rows),
        fleiss_kappa=fleiss,
        fleiss_units=fleiss_units,
        fleiss_raters=fleiss_raters,
        cohen_kappa_mean=cohen,
        cohen_pairs=cohen_pairs,
        min_shared=min_shared,
    )
