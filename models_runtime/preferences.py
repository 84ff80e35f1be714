"""Preference judgments and their likelihoods.

:class:`PreferenceData` holds every kind of judgment a study collects, as indices into
a feature matrix (one row per item):

* **pairs**: ``left`` vs ``right`` with an outcome (1 left preferred, 0 right
  preferred, 0.5 a tie; other values in [0, 1] are soft labels), a "both bad" flag and
  a weight (e.g. from a strength answer);
* **rankings**: ``K`` items best first, padded with ``-1`` to a common width; only the
  first ``n_ranked`` positions are ordered, the rest of the row was shown but left
  unranked below them (top-k partial rankings; ``n_ranked = K`` is a full ranking).

:class:`models_runtime.likelihood.PreferenceLikelihood` turns utilities ``s`` into the negative log-likelihood of
each judgment:

* pairs: Bradley–Terry, ``P(left) = σ(s_l - s_r)``, with ties through Davidson
  (``P(tie) ∝ ν·sqrt(π_l π_r)``) or Rao–Kupper (``P(left) = π_l / (π_l + θ π_r)``), or
  ``"soft"`` (a tie is a 0.5 label of the plain Bradley–Terry model);
* "both bad": the pair counts as a tie and adds an absolute low-quality signal,
  ``softplus(s - c)`` for both items, where ``c`` is the mean utility of the judged
  items (so the signal says "below the average item" and stays shift invariant);
* a label-flip rate ε (robust DPO, Chowdhury et al. 2024): the observed winner is
  the model's winner with probability ``1 - ε`` and the loser with ``ε``; ε is fixed
  by the configuration or, by default, learned with the model under a weak Beta prior
  (see :class:`models_runtime.likelihood.PreferenceLikelihood`);
* rankings: the full Plackett–Luce likelihood,
  ``Π_j exp(s_(j)) / Σ_{l ≥ j} exp(s_(l))`` over the ordered stages, which uses all
  the information in a K-wise answer (Zhu, Jordan & Jiao 2023); ``"pairwise_split"``
  instead scores every implied pair with Bradley–Terry (kept for comparison).

The tie parameter (ν or θ) is fixed by the configuration, or, when left unset, set by
the method of moments from the weighted share of ties among the pairs: the value at
which two equal items tie that often.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "LikelihoodConfig",
    "PreferenceData",
    "PreferenceTensors",
]

TIE_MODELS = ("davidson", "rao_kupper", "soft")
LISTWISE_MODELS = ("plackett_luce", "pairwise_split")
# Outcomes this close to 0.5 are ties; float32 storage can perturb an exact 0.5.
_TIE_TOL = 1e-6
# The estimated tie share is clipped to this range so ν, θ stay finite and positive.
_TIE_RATE_RANGE = (1e-3, 0.9)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def _indices(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer item indices, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} contains negative item indices")
    return _readonly(arr.astype(np.int64, copy=True))


def _weights(values: Any, n: int, name: str) -> np.ndarray:
    if values is None:
        return _readonly(np.ones(n, dtype=np.float32))
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n}")
    if not np.isfinite(arr).all() or (arr.size and arr.min() < 0.0):
        raise ValueError(f"{name} must be finite and non-negative")
    return _readonly(arr.copy())


@dataclass(frozen=True, eq=False)
class PreferenceData:
    """Pairwise and listwise judgments over items indexed into a feature matrix.

    Build it with :meth:`from_pairs`, :meth:`from_rankings`, :meth:`combine` or
    :meth:`empty`; the arrays are validated, converted and made read-only. Judgments
    are numbered pairs first, then rankings; likelihoods return one value per
    judgment in that order.
    """

    pair_left: np.ndarray
    pair_right: np.ndarray
    pair_outcome: np.ndarray
    pair_both_bad: np.ndarray
    pair_weight: np.ndarray
    rank_items: np.ndarray
    rank_n_ranked: np.ndarray
    rank_weight: np.ndarray

    def __post_init__(self) -> None:
        left = _indices(self.pair_left, "pair_left")
        right = _indices(self.pair_right, "pair_right")
        n = left.shape[0]
        if right.shape[0] != n:
            raise ValueError(f"pair_left and pair_right have {n} and {right.shape[0]} entries")
        if n and (left == right).any():
            raise ValueError(f"pair {int(np.flatnonzero(left == right)[0])} compares an item with itself")
        outcome = np.asarray(self.pair_outcome, dtype=np.float32).reshape(-1)
        if outcome.shape[0] != n:
            raise ValueError(f"pair_outcome has {outcome.shape[0]} entries, expected {n}")
        if n and not (np.isfinite(outcome).all() and outcome.min() >= 0.0 and outcome.max() <= 1.0):
            raise ValueError("pair_outcome values must lie in [0, 1]")
        both_bad = np.asarray(self.pair_both_bad, dtype=bool).reshape(-1)
        if both_bad.shape[0] != n:
            raise ValueError(f"pair_both_bad has {both_bad.shape[0]} entries, expected {n}")
        # "Both bad" is a tie between the two items, whatever the outcome said.
        outcome = np.where(both_bad, np.float32(0.5), outcome)

        items = np.asarray(self.rank_items)
        if items.size == 0:
            items = np.zeros((0, 2), dtype=np.int64)
        if items.ndim != 2 or not np.issubdtype(items.dtype, np.integer):
            raise ValueError(f"rank_items must be a 2-D integer array, got shape {items.shape}, dtype {items.dtype}")
        items = items.astype(np.int64, copy=True)
        r, k = items.shape
        present = items >= 0
        n_present = present.sum(axis=1)
        if r and (items < -1).any():
            raise ValueError("rank_items holds item indices >= 0 and -1 for padding only")
        if r and (present != (np.arange(k) < n_present[:, None])).any():
            row = int(np.flatnonzero((present != (np.arange(k) < n_present[:, None])).any(axis=1))[0])
            raise ValueError(f"ranking {row}: padding (-1) must come after all items")
        if r and (n_present < 2).any():
            raise ValueError(f"ranking {int(np.flatnonzero(n_present < 2)[0])} has fewer than two items")
        if r:
            ordered = np.sort(np.where(present, items, -1 - np.arange(k)), axis=1)
            dup = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
            if dup.any():
                raise ValueError(f"ranking {int(np.flatnonzero(dup)[0])} lists an item twice")
        n_ranked = np.asarray(self.rank_n_ranked).reshape(-1).astype(np.int64)
        if n_ranked.shape[0] != r:
            raise ValueError(f"rank_n_ranked has {n_ranked.shape[0]} entries, expected {r}")
        if r and ((n_ranked < 1) | (n_ranked > n_present)).any():
            row = int(np.flatnonzero((n_ranked < 1) | (n_ranked > n_present))[0])
            raise ValueError(f"ranking {row}: n_ranked must be between 1 and its {int(n_present[row])} items")

        object.__setattr__(self, "pair_left", left)
        object.__setattr__(self, "pair_right", right)
        object.__setattr__(self, "pair_outcome", _readonly(outcome.astype(np.float32)))
        object.__setattr__(self, "pair_both_bad", _readonly(both_bad.copy()))
        object.__setattr__(self, "pair_weight", _weights(self.pair_weight, n, "pair_weight"))
        object.__setattr__(self, "rank_items", _readonly(items))
        object.__setattr__(self, "rank_n_ranked", _readonly(n_ranked))
        object.__setattr__(self, "rank_weight", _weights(self.rank_weight, r, "rank_weight"))

    # -- constructors -------------------------------------------------------------

    @classmethod
    def empty(cls) -> PreferenceData:
        """No judgments at all."""
        return cls.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def from_pairs(
        cls,
        left: Any,
        right: Any,
        outcome: Any = None,
        *,
        weight: Any = None,
        both_bad: Any = None,
    ) -> PreferenceData:
        """Pairwise judgments. ``outcome`` defaults to 1 (left preferred), so
        ``from_pairs(winners, losers)`` works; ``both_bad`` marks pairs judged as both
        bad, which are stored as ties."""
        left = np.asarray(left)
        n = left.reshape(-1).shape[0]
        return cls(
            pair_left=left.reshape(-1),
            pair_right=np.asarray(right).reshape(-1),
            pair_outcome=np.ones(n, np.float32) if outcome is None else outcome,
            pair_both_bad=np.zeros(n, bool) if both_bad is None else both_bad,
            pair_weight=weight,
            rank_items=np.zeros((0, 2), np.int64),
            rank_n_ranked=np.zeros(0, np.int64),
            rank_weight=None,
        )

    @classmethod
    def from_rankings(
        cls, rankings: Sequence[Sequence[int]] | np.ndarray, *, n_ranked: Any = None, weight: Any = None
    ) -> PreferenceData:
        """Rankings, each a sequence of item indices best first (rows may differ in
        length, or be a ``-1``-padded array). ``n_ranked`` gives per ranking how many
        leading positions are ordered (default: all)."""
        rows = [np.asarray(row, dtype=np.int64).reshape(-1) for row in rankings]
        rows = [row[row >= 0] if row.size else row for row in rows]
        width = max((row.size for row in rows), default=2)
        items = np.full((len(rows), max(width, 2)), -1, dtype=np.int64)
        for i, row in enumerate(rows):
            items[i, : row.size] = row
        counts = np.array([row.size for row in rows], dtype=np.int64)
        empty_pairs = np.zeros(0, np.int64)
        return cls(
            pair_left=empty_pairs,
            pair_right=empty_pairs,
            pair_outcome=np.zeros(0, np.float32),
            pair_both_bad=np.zeros(0, bool),
            pair_weight=None,
            rank_items=items,
            rank_n_ranked=counts if n_ranked is None else n_ranked,
            rank_weight=weight,
        )

    @classmethod
    def combine(cls, *parts: PreferenceData) -> PreferenceData:
        """All judgments of ``parts``, pairs then rankings, each in the given order."""
        if not parts:
            return cls.empty()
        width = max(2, *(p.rank_items.shape[1] for p in parts))
        ranks = [np.pad(p.rank_items, ((0, 0), (0, width - p.rank_items.shape[1])), constant_values=-1) for p in parts]
        return cls(
            pair_left=np.concatenate([p.pair_left for p in parts]),
            pair_right=np.concatenate([p.pair_right for p in parts]),
            pair_outcome=np.concatenate([p.pair_outcome for p in parts]),
            pair_both_bad=np.concatenate([p.pair_both_bad for p in parts]),
            pair_weight=np.concatenate([p.pair_weight for p in parts]),
            rank_items=np.concatenate(ranks),
            rank_n_ranked=np.concatenate([p.rank_n_ranked for p in parts]),
            rank_weight=np.concatenate([p.rank_weight for p in parts]),
        )

    # -- views ----------------------------------------------------------------------

    @property
    def n_pairs(self) -> int:
        return int(self.pair_left.shape[0])

    @property
    def n_rankings(self) -> int:
        return int(self.rank_items.shape[0])

    def __len__(self) -> int:
        return self.n_pairs + self.n_rankings

    @property
    def weight(self) -> np.ndarray:
        """Weight of every judgment, pairs then rankings (float32)."""
        return np.concatenate([self.pair_weight, self.rank_weight])

    def max_item(self) -> int:
        """Largest item index referenced, or -1 without judgments."""
        return int(max(self.items(), default=-1))

    def items(self) -> np.ndarray:
        """Sorted unique item indices that appear in any judgment."""
        ranked = self.rank_items[self.rank_items >= 0]
        return np.unique(np.concatenate([self.pair_left, self.pair_right, ranked]))

    def subset(self, pair_idx: Any = None, rank_idx: Any = None) -> PreferenceData:
        """The pairs at ``pair_idx`` and the rankings at ``rank_idx`` (None: none)."""
        p = np.asarray([] if pair_idx is None else pair_idx, dtype=np.int64)
        r = np.asarray([] if rank_idx is None else rank_idx, dtype=np.int64)
        return PreferenceData(
            pair_left=self.pair_left[p],
            pair_right=self.pair_right[p],
            pair_outcome=self.pair_outcome[p],
            pair_both_bad=self.pair_both_bad[p],
            pair_weight=self.pair_weight[p],
            rank_items=self.rank_items[r],
            rank_n_ranked=self.rank_n_ranked[r],
            rank_weight=self.rank_weight[r],
        )

    def select(self, judgment_idx: Any) -> PreferenceData:
        """The judgments at ``judgment_idx`` in the pairs-then-rankings numbering."""
        idx = np.asarray(judgment_idx, dtype=np.int64)
        return self.subset(idx[idx < self.n_pairs], idx[idx >= self.n_pairs] - self.n_pairs)

    def pairwise_split(self) -> PreferenceData:
        """Every ranking replaced by the pairs it implies (each ordered item beats every
        item below it), each with the ranking's weight; pairs are kept as they are."""
        left: list[np.ndarray] = [self.pair_left]
        right: list[np.ndarray] = [self.pair_right]
        weight: list[np.ndarray] = [self.pair_weight]
        for row, k, w in zip(self.rank_items, self.rank_n_ranked, self.rank_weight, strict=True):
            row = row[row >= 0]
            j, lo = np.triu_indices(row.size, k=1)
            keep = j < k
            left.append(row[j[keep]])
            right.append(row[lo[keep]])
            weight.append(np.full(int(keep.sum()), w, dtype=np.float32))
        n_new = sum(a.size for a in left) - self.n_pairs
        return PreferenceData.from_pairs(
            np.concatenate(left),
            np.concatenate(right),
            np.concatenate([self.pair_outcome, np.ones(n_new, np.float32)]),
            weight=np.concatenate(weight),
            both_bad=np.concatenate([self.pair_both_bad, np.zeros(n_new, bool)]),
        )

    def tie_rate(self) -> float:
        """Weighted share of ties among the pairs (nan without weighted pairs)."""
        total = float(self.pair_weight.sum())
        if total <= 0.0:
            return float("nan")
        ties = np.abs(self.pair_outcome - 0.5) <= _TIE_TOL
        return float(self.pair_weight[ties].sum()) / total

    def to_tensors(self, device: Any = "cpu") -> PreferenceTensors:
        """The judgments as torch tensors on ``device``, ready for
        :class:`PreferenceLikelihood`."""
        import torch

        outcome = self.pair_outcome.astype(np.float32)
        tie = np.abs(outcome - 0.5) <= _TIE_TOL
        targets = np.stack(
            [np.where(tie, 0.0, outcome), tie.astype(np.float32), np.where(tie, 0.0, 1.0 - outcome)], axis=1
        )
        present = self.rank_items >= 0
        n_present = present.sum(axis=1)
        stages = np.minimum(self.rank_n_ranked, n_present - 1)
        stage_mask = np.arange(self.rank_items.shape[1]) < stages[:, None]

        def t(arr: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.array(arr, copy=True, order="C")).to(device)

        return PreferenceTensors(
            pair_left=t(self.pair_left),
            pair_right=t(self.pair_right),
            pair_targets=t(targets.astype(np.float32)),
            pair_both_bad=t(self.pair_both_bad),
            rank_items=t(np.where(present, self.rank_items, 0)),
            rank_present=t(present),
            rank_stage=t(stage_mask),
            rank_n_ranked=t(self.rank_n_ranked),
            judged=t(self.items()),
            tie_rate=self.tie_rate(),
        )


class PreferenceTensors(NamedTuple):
    """Torch view of a :class:`PreferenceData` (see :meth:`PreferenceData.to_tensors`).
    ``pair_targets`` is ``(P, 3)``: the weight of left-preferred, tie and
    right-preferred in each outcome; ``rank_stage`` marks the Plackett–Luce choice
    stages of each ranking; ``judged`` lists the items any judgment touches."""

    pair_left: torch.Tensor
    pair_right: torch.Tensor
    pair_targets: torch.Tensor
    pair_both_bad: torch.Tensor
    rank_items: torch.Tensor
    rank_present: torch.Tensor
    rank_stage: torch.Tensor
    rank_n_ranked: torch.Tensor
    judged: torch.Tensor
    tie_rate: float


@dataclass(frozen=True)
class LikelihoodConfig:
    """How judgments are scored. ``ties``: ``"davidson"``, ``"rao_kupper"`` or
    ``"soft"``; ``tie_param``: ν (Davidson, > 0) or θ (Rao–Kupper, > 1), estimated from
    the data's tie share when None; ``label_flip_rate``: probability ε that an
    annotator picked the worse item of a pair, a known value in [0, 0.5) (0: no
    flips), or None (the default) to learn it from the judgments with the model, as a
    real study never knows it; ``listwise``:
    ``"plackett_luce"`` (full K-wise likelihood) or ``"pairwise_split"``;
    ``both_bad_weight``: weight of the absolute "below average" term of both-bad
    pairs (0 turns it off)."""

    ties: str = "davidson"
    tie_param: float | None = None
    label_flip_rate: float | None = None
    listwise: str = "plackett_luce"
    both_bad_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.ties not in TIE_MODELS:
            raise ValueError(f"ties must be one of {', '.join(TIE_MODELS)}, got {self.ties!r}")
        if self.listwise not in LISTWISE_MODELS:
            raise ValueError(f"listwise must be one of {', '.join(LISTWISE_MODELS)}, got {self.listwise!r}")
        if self.label_flip_rate is not None and not 0.0 <= self.label_flip_rate < 0.5:
            raise ValueError(f"label_flip_rate must be in [0, 0.5), got {self.label_flip_rate}")
        if not (self.both_bad_weight >= 0.0 and math.isfinite(self.both_bad_weight)):
            raise ValueError(f"both_bad_weight must be a finite non-negative number, got {self.both_bad_weight}")
        if self.tie_param is not None:
            low = 1.0 if self.ties == "rao_kupper" else 0.0
            if not (self.tie_param > low and math.isfinite(self.tie_param)):
                raise ValueError(f"tie_param for {self.ties} must be a finite number > {low}, got {self.tie_param}")

    def tie_parameter(self, tie_rate: float) -> float:
        """ν or θ: the configured value, else the one at which two equal items tie
        with probability ``tie_rate`` (clipped to a sane range; without any observed
        tie, the values that reduce both models to Bradley–Terry). 0 for soft ties."""
        if self.ties == "soft":
            return 0.0
        if self.tie_param is not None:
            return float(self.tie_param)
        if math.isnan(tie_rate) or tie_rate <= 0.0:
            # No ties observed: plain Bradley–Terry (ν = 0, θ = 1).
            return 0.0 if self.ties == "davidson" else 1.0
        t = min(max(tie_rate, _TIE_RATE_RANGE[0]), _TIE_RATE_RANGE[1])
        if self.ties == "davidson":  # P(tie | equal) = ν / (2 + ν)
            return 2.0 * t / (1.0 - t)
        return (1.0 + t) / (1.0 - t)  # Rao–Kupper: P(tie | equal) = (θ - 1) / (θ + 1)
