"""A Bayesian kernel Bradley–Terry model: a Gaussian-process-like posterior over
utilities whose spread shrinks where judgments are, with its hyper-parameters chosen
by the evidence. It is the study default (``Study.model_type = "kernel"``), and the
posterior every kind's leaderboard is read from (``models_runtime.kinds``).

Utilities are ``u(x) = φ(x)·w + e_x`` with ``w ~ N(0, I)`` and the feature map

``φ(x) = [a · P(x − x̄) / r,  b · sqrt(2/D) cos(Ω z(x) / ℓ + β)]``

* the first block is the candidates' centred features projected on their leading
  ``k_lin`` (256) principal directions ``P``, scaled so that their mean squared
  norm is 1 (``r²``): a linear kernel on (nearly all of) the embedding;
* the second is ``D`` random Fourier features (Rahimi & Recht 2007) of ``z(x)``,
  the projection on the candidates' ``k`` (16) leading principal components, each
  in its own standard deviations, divided by the median distance between
  candidates there: an RBF kernel of length-scale ``ℓ`` (in median distances) on
  the directions where the candidates differ most;
* ``e_x ~ N(0, c²)`` is a judged candidate's own effect: what its embedding does
  not say about it (a response can be better than all its neighbours).

``a² + b² + c²`` is the prior variance of a candidate's utility (``prior_sd²``),
``ρ = b² / (a² + b²)`` the non-linear share and ``c² / prior_sd²`` the item share.
The point ``(prior_sd, ρ, ℓ, item share)`` is chosen from a fixed grid by the
Laplace approximation of the marginal likelihood of the judgments (type-II maximum
likelihood, the way a Gaussian-process preference model fits its kernel; Chu &
Ghahramani 2005), so one configuration adapts to a sharp or a noisy crowd and to a
linear or a wavy utility without being told which. Given the choice, the posterior
over the weights is the Laplace approximation at its mode (the solvers of
:mod:`models_runtime.recommend`), and samples are joint across all candidates:
``(S, N)`` utility draws serve Thompson sampling (as an epistemic model's members)
and the leaderboard's P(best) alike.

Conditioning is cheap (Newton steps on the judged pairs, in the pairs' space while
there are fewer pairs than weights), so the posterior is recomputed from the
judgments whenever samples are asked for: a refill between two fits conditions on
every judgment so far, under the hyper-parameters and feature map of the live
version. The map (centre, principal directions, scale, random frequencies) is fitted
on the study's candidates once per fit and saved with the model, so a version scores
candidates imported after it the same way. Everything is numpy.

Cost is bounded whatever the study's size: the evidence is computed on at most
``evidence_judgments`` judgments (evenly spaced), the weights number at most
``k_lin + D`` plus one per judged candidate, and candidates' own effects are dropped
once more than ``max_item_effects`` candidates are judged (the features then carry
all of the prior variance), so a Newton step solves at most a
``(k_lin + D + max_item_effects)``-square system: about 1,800.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from models_runtime.checkpoint import atomic_write, check_features, read_config, write_config
from models_runtime.gradients import bonus_arguments
from models_runtime.preferences import PreferenceData
from models_runtime.recommend import _dual_posterior, _log_likelihood, _primal_posterior, _sigmoid

__all__ = [
    "KERNEL_FORMAT_NAME",
    "KERNEL_FORMAT_VERSION",
    "POSTERIOR_METHOD",
    "HyperChoice",
    "KernelBTConfig",
    "KernelBTModel",
    "KernelFeatureMap",
    "KernelFitResult",
    "KernelGradientSource",
    "choose_hyper",
    "fit_kernel_bt",
]

KERNEL_FORMAT_NAME = "prefloop-kernel-bt"
POSTERIOR_METHOD = "Bayesian kernel Bradley–Terry, Laplace, evidence-tuned"
KERNEL_FORMAT_VERSION = 1
ARRAYS_FILE = "map.safetensors"
# Candidates scored per matrix product: a (rows, dims) block of φ of 8k x 2.8k
# doubles is ~180 MB at the widest features (2,304-d pooled layers + 512).
_SCORE_ROWS = 8_192
# Rows the map's principal directions and median distance are estimated from.
_PCA_ROWS = 4_096
_DISTANCE_ROWS = 1_024


@dataclass(frozen=True)
class KernelBTConfig:
    """The model's configuration: the grids the evidence chooses from, the principal
    components and random features of the non-linear block, the seed of the random
    features, and how many posterior samples a strategy gets as members.
    ``prior_sds`` are in Bradley–Terry units (1: a one-sd difference is a 73 %
    preference; 10: a sharp crowd); ``length_scales`` in median distances between
    candidates in the projection; ``item_shares`` the shares of the prior variance
    a judged candidate's own effect may take. ``whiten`` measures each principal
    component of the RBF block in its own standard deviations; ``linear_components``
    bounds the linear block; ``evidence_judgments`` and ``max_item_effects`` bound
    the cost on a large study (module docstring). ``holdout_fraction`` /
    ``min_holdout`` decide, as for the other kinds, when a validation split gates
    publishing; ``device`` is accepted for the common interface (the model is numpy
    on the CPU)."""

    prior_sds: tuple[float, ...] = (1.0, 3.0, 10.0)
    nonlinear_shares: tuple[float, ...] = (0.0, 0.5, 1.0)
    length_scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    item_shares: tuple[float, ...] = (0.0, 0.3)
    components: int = 16
    random_features: int = 512
    whiten: bool = True
    linear_components: int = 256
    evidence_judgments: int = 300
    max_item_effects: int = 1_000
    n_samples: int = 32
    seed: int = 0
    max_iter: int = 50
    holdout_fraction: float = 0.2
    min_holdout: int = 5
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("prior_sds", "length_scales"):
            values = getattr(self, name)
            if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
                raise ValueError(f"{name} must be positive numbers, got {values!r}")
        if not self.nonlinear_shares or any(not 0.0 <= v <= 1.0 for v in self.nonlinear_shares):
            raise ValueError(f"nonlinear_shares must lie in [0, 1], got {self.nonlinear_shares!r}")
        if not self.item_shares or any(not 0.0 <= v < 1.0 for v in self.item_shares):
            raise ValueError(f"item_shares must lie in [0, 1), got {self.item_shares!r}")
        for name in (
            "components",
            "random_features",
            "n_samples",
            "max_iter",
            "linear_components",
            "evidence_judgments",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def grid(self) -> list[tuple[float, float, float, float]]:
        """Every (prior_sd, ρ, ℓ, item share) the evidence compares (ℓ is moot when
        ρ = 0: NaN)."""
        out = []
        for sd in self.prior_sds:
            for item in self.item_shares:
                for rho in self.nonlinear_shares:
                    for ell in self.length_scales if rho > 0 else (math.nan,):
                        out.append((float(sd), float(rho), float(ell), float(item)))
        return out


@dataclass(frozen=True)
class HyperChoice:
    """The chosen hyper-parameters and their Laplace log evidence."""

    prior_sd: float
    nonlinear_share: float
    length_scale: float
    item_share: float
    log_evidence: float

    @property
    def item_sd(self) -> float:
        """Prior standard deviation of a candidate's own effect."""
        return self.prior_sd * math.sqrt(self.item_share)


# Above this many dimensions (of the smaller side), the map's principal axes come
# from the Gram matrix's eigendecomposition instead of a thin SVD (_principal_axes).
_SVD_MAX_DIMS = 1_024


def _principal_axes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The singular values and right singular vectors (as rows) of ``rows``,
    largest first. A thin SVD while the smaller side is at most
    ``_SVD_MAX_DIMS``; beyond, the eigendecomposition of the smaller Gram
    matrix, with each axis's sign fixed (its largest component positive): the
    same axes to rounding, and about five times quicker (4,096 rows of 2,304-d
    pooled embeddings: 2.6 CPU seconds, against 12.8 for the SVD, which was
    most of a large study's first fit)."""
    if min(rows.shape) <= _SVD_MAX_DIMS:
        _, singular, vt = np.linalg.svd(rows, full_matrices=False)
        return singular, vt
    tall = rows.shape[0] >= rows.shape[1]
    values, vectors = np.linalg.eigh(rows.T @ rows if tall else rows @ rows.T)
    singular = np.sqrt(np.maximum(values[::-1], 0.0))
    vt = vectors[:, ::-1].T
    if not tall:  # the eigenvectors are the left singular vectors: Vᵀ = Σ⁻¹ Uᵀ X
        vt = (vt @ rows) / np.where(singular > singular[0] * 1e-12, singular, np.inf)[:, None]
    largest = np.abs(vt).argmax(axis=1)
    vt = vt * np.where(vt[np.arange(vt.shape[0]), largest] < 0, -1.0, 1.0)[:, None]
    return singular, vt


class KernelFeatureMap:
    """``φ`` (see the module docstring), fitted on one candidate feature matrix and
    applicable to any rows of the same dimension."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.center = arrays["center"]
        self.linear_directions = arrays["linear_directions"]  # (k_lin, d)
        self.directions = arrays["directions"]  # (k, d)
        self.linear_scale = float(np.asarray(arrays["linear_scale"]).reshape(-1)[0])
        self.z_scale = float(np.asarray(arrays["z_scale"]).reshape(-1)[0])
        self.omega = arrays["omega"]  # (k, D)
        self.phase = arrays["phase"]  # (D,)
        self.max_item_effects = int(np.asarray(arrays.get("max_item_effects", [1_000])).reshape(-1)[0])

    @classmethod
    def fit(cls, features: np.ndarray, config: KernelBTConfig) -> KernelFeatureMap:
        x = np.asarray(features, dtype=np.float64)
        rng = np.random.default_rng([config.seed, 7])
        center = x.mean(axis=0)
        xc = x - center
        spread = float((xc * xc).sum(axis=1).mean())
        k = max(1, min(config.components, x.shape[1], x.shape[0] - 1))
        rows = xc if x.shape[0] <= _PCA_ROWS else xc[rng.choice(x.shape[0], _PCA_ROWS, replace=False)]
        k_lin = max(1, min(config.linear_components, x.shape[1], rows.shape[0]))
        if spread > 0:
            singular, vt = _principal_axes(rows)
            linear_directions = vt[:k_lin]
            kept = float((singular[:k_lin] ** 2).sum()) / max(rows.shape[0], 1)
            sd = singular[:k] / math.sqrt(max(rows.shape[0] - 1, 1))
            # Each principal direction in its own standard deviations, so every one
            # of the k counts alike in the RBF (as min-max scaling per dimension does
            # for a GP without per-dimension length-scales).
            directions = vt[:k] / np.where(sd > 0, sd, 1.0)[:, None] if config.whiten else vt[:k]
        else:
            directions, linear_directions, kept = np.zeros((k, x.shape[1])), np.zeros((k_lin, x.shape[1])), 0.0
        z = (rows if rows.shape[0] <= _DISTANCE_ROWS else rows[:_DISTANCE_ROWS]) @ directions.T
        sq = (z * z).sum(axis=1)
        dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0))
        median = float(np.median(dist[np.triu_indices(z.shape[0], 1)])) if z.shape[0] > 1 else 0.0
        return cls(
            {
                "center": center,
                "linear_directions": linear_directions,
                "directions": directions,
                "linear_scale": np.float64(1.0 / math.sqrt(kept) if kept > 0 else 0.0),
                "z_scale": np.float64(1.0 / median if median > 0 else 1.0),
                "omega": rng.standard_normal((k, config.random_features)),
                "phase": rng.uniform(0.0, 2.0 * math.pi, config.random_features),
                "max_item_effects": np.asarray([config.max_item_effects]),
            }
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "center": self.center,
            "linear_directions": self.linear_directions,
            "directions": self.directions,
            "linear_scale": np.asarray([self.linear_scale]),
            "z_scale": np.asarray([self.z_scale]),
            "omega": self.omega,
            "phase": self.phase,
            "max_item_effects": np.asarray([self.max_item_effects]),
        }

    def __call__(self, features: np.ndarray, choice: HyperChoice, dtype: type = np.float64) -> np.ndarray:
        """``φ`` of the rows of ``features`` under one hyper-parameter choice (the
        features' share of the prior variance: all of it but the item share),
        computed in ``dtype`` (float32 is several times quicker, its cosine above
        all, for a use that needs no more than float32's precision)."""
        return self.projected(features, dtype)(choice)

    def projected(self, features: np.ndarray, dtype: type = np.float64) -> Callable[[HyperChoice], np.ndarray]:
        """``choice ↦ φ(features)`` with the projections that do not depend on the
        choice computed once (and each length-scale's cosines once): the evidence
        asks for ``φ`` of the same rows under every grid point. The arithmetic is
        :meth:`__call__`'s, so the values are the same to the bit."""
        xc = np.asarray(features, dtype=dtype) - self.center.astype(dtype, copy=False)
        cache: dict[Any, np.ndarray] = {}

        def linear() -> np.ndarray:
            if "linear" not in cache:
                cache["linear"] = xc @ self.linear_directions.T.astype(dtype, copy=False)
            return cache["linear"]

        def cosines(ell: float) -> np.ndarray:
            if ("cos", ell) not in cache:
                if "zw" not in cache:
                    z = (xc @ self.directions.T.astype(dtype, copy=False)) * self.z_scale
                    cache["zw"] = z @ self.omega.astype(dtype, copy=False)
                angle = cache["zw"] / ell + self.phase.astype(dtype, copy=False)
                cache["cos", ell] = math.sqrt(2.0 / self.phase.size) * np.cos(angle)
            return cache["cos", ell]

        def phi(choice: HyperChoice) -> np.ndarray:
            sd = choice.prior_sd * math.sqrt(1.0 - choice.item_share)
            rho, ell = choice.nonlinear_share, choice.length_scale
            parts = []
            if rho < 1.0:
                parts.append(sd * math.sqrt(1.0 - rho) * self.linear_scale * linear())
            if rho > 0.0:
                parts.append(sd * math.sqrt(rho) * cosines(ell))
            return np.concatenate(parts, axis=1)

        return phi


def _pairs(data: PreferenceData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pairs = data.pairwise_split()
    return (
        pairs.pair_left.astype(np.int64),
        pairs.pair_right.astype(np.int64),
        pairs.pair_outcome.astype(np.float64),
        pairs.pair_weight.astype(np.float64),
    )


def _merged_pairs(data: PreferenceData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_pairs` with every judgment of one unordered pair merged into one row:
    weight the sum of theirs, outcome their weighted mean (oriented to the first
    occurrence's order); rows of total weight 0 are dropped, and the rows keep the
    order of each pair's first judgment. The weighted soft-label Bradley–Terry
    log-likelihood is linear in the outcome, so this is exact for the mode, the
    Laplace posterior and the evidence, and a pair judged by several annotators
    (an overlap, AI judges) costs the solvers one row, not one per judgment."""
    left, right, y, weight = _pairs(data)
    if left.size < 2:
        keep = weight > 0
        return left[keep], right[keep], y[keep], weight[keep]
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    keys = lo * (int(max(left.max(), right.max())) + 1) + hi
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if unique.size == left.size and (weight > 0).all():
        return left, right, y, weight
    y_lo = np.where(left == lo, y, 1.0 - y)  # the outcome as "lo preferred"
    total = np.bincount(inverse, weights=weight, minlength=unique.size)
    won = np.bincount(inverse, weights=weight * y_lo, minlength=unique.size)
    order = np.argsort(first, kind="stable")
    order = order[total[order] > 0]
    a, b = left[first[order]], right[first[order]]
    mean_lo = won[order] / total[order]
    return a, b, np.where(a == lo[first[order]], mean_lo, 1.0 - mean_lo), total[order]


class _Design(NamedTuple):
    """The judged pairs in weight space: ``d`` (pairs × dims) with the feature
    block's ``dims_features`` columns first, then one column per judged candidate's
    own effect (none when the item share is 0); ``items`` the judged rows, sorted."""

    d: np.ndarray
    items: np.ndarray
    dims_features: int


def _design(
    fmap: KernelFeatureMap,
    features: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    choice: HyperChoice,
    projected: Callable[[HyperChoice], np.ndarray] | None = None,
) -> _Design:
    """``φ(left) − φ(right)`` on the judged rows only, with each candidate's own
    effect as an indicator column scaled by the item sd (``projected``: the
    judged rows' :meth:`KernelFeatureMap.projected`, when the caller has it)."""
    items, where = np.unique(np.concatenate([left, right]), return_inverse=True)
    phi = (projected or fmap.projected(features[items]))(choice)
    dims = phi.shape[1]
    if choice.item_share > 0.0 and items.size <= fmap.max_item_effects:
        phi = np.concatenate([phi, choice.item_sd * np.eye(items.size)], axis=1)
    return _Design(phi[where[: left.size]] - phi[where[left.size :]], items, dims)


def _solver(d: np.ndarray) -> Any:
    return _dual_posterior if d.shape[0] < d.shape[1] else _primal_posterior


def _log_evidence(d: np.ndarray, y: np.ndarray, weight: np.ndarray, max_iter: int) -> float:
    """Laplace log marginal likelihood of the judgments under ``w ~ N(0, I)``:
    ``log p(y | ŵ) − ½ ŵᵀŵ − ½ log det(I + S K S)``, ``K = D Dᵀ``, ``S = W^½``
    (Rasmussen & Williams 2006, eq. 3.32)."""
    w, _ = _solver(d)(d, y, weight, 1.0, max_iter)
    z = d @ w
    p = _sigmoid(z)
    root = np.sqrt(weight * p * (1.0 - p))
    if d.shape[0] < d.shape[1]:
        m = np.eye(d.shape[0]) + root[:, None] * (d @ d.T) * root[None, :]
    else:
        m = np.eye(d.shape[1]) + (d * (root * root)[:, None]).T @ d  # same determinant
    logdet = 2.0 * float(np.log(np.diag(np.linalg.cholesky(m))).sum())
    return _log_likelihood(z, y, weight) - 0.5 * float(w @ w) - 0.5 * logdet


def choose_hyper(
    fmap: KernelFeatureMap, features: np.ndarray, data: PreferenceData, config: KernelBTConfig
) -> tuple[HyperChoice, list[HyperChoice]]:
    """The grid point of highest Laplace evidence for the judgments ``data`` on
    ``features`` (at most ``evidence_judgments`` of them, evenly spaced), and every
    grid point's evidence. Without judgments every point has evidence 0 and the
    first (the most cautious prior) is chosen."""
    left, right, y, weight = _merged_pairs(data)
    if left.size > config.evidence_judgments:
        keep = np.linspace(0, left.size - 1, config.evidence_judgments).round().astype(np.int64)
        left, right, y, weight = left[keep], right[keep], y[keep], weight[keep]
    table = []
    projected = fmap.projected(features[np.unique(np.concatenate([left, right]))]) if left.size else None
    for point in config.grid():
        value = 0.0
        choice = HyperChoice(*point, log_evidence=0.0)
        if left.size:
            d = _design(fmap, features, left, right, choice, projected).d
            value = _log_evidence(d, y, weight, config.max_iter)
        table.append(dataclasses.replace(choice, log_evidence=value))
    best = max(range(len(table)), key=lambda i: (table[i].log_evidence, -i))
    return table[best], table


class KernelBTModel:
    """A fitted kernel Bradley–Terry model: the feature map, the chosen
    hyper-parameters and the weights at the posterior mode of the judgments it was
    fitted on. ``scores`` uses those weights; ``posterior`` conditions on the
    judgments it is given."""

    flip_rate = None  # no label-flip parameter: the evidence tempers the prior scale instead

    def __init__(self, config: KernelBTConfig, fmap: KernelFeatureMap, choice: HyperChoice, w: np.ndarray) -> None:
        self.config = config
        self.fmap = fmap
        self.choice = choice
        self.w = np.asarray(w, dtype=np.float64)
        self.input_dim = int(fmap.center.shape[0])

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Utilities of ``features`` at the posterior mode of the judgments the
        model was fitted on, from the features alone (a candidate's own effect needs
        to know which candidate it is: :meth:`posterior` has it), float32 ``(N,)``."""
        x = check_features(features, self.input_dim)
        return _scored(self.fmap, x, self.choice, self.w[:, None])[:, 0].astype(np.float32)

    def posterior(
        self, features: np.ndarray, data: PreferenceData, rng: np.random.Generator, n_samples: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(mean (N,), samples (n_samples, N))`` of the utilities of ``features``
        under the Laplace posterior given the judgments ``data`` (indices into
        ``features``), with this version's map and hyper-parameters; joint across
        candidates. A judged candidate's own effect is part of the posterior; an
        unjudged one's is a fresh draw from its prior."""
        return _posterior(
            self.fmap, check_features(features, self.input_dim), data, self.choice, rng, n_samples, self.config.max_iter
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        """Nothing to warm-start from: a fit chooses its hyper-parameters afresh."""
        return {}

    def save(self, path: str | Path) -> Path:
        """Write the model into directory ``path``: the map and weights as
        safetensors, the config and choice in ``config.json``."""
        from safetensors.numpy import save_file

        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in self.fmap.arrays().items()}
        arrays["w"] = np.ascontiguousarray(self.w)
        atomic_write(
            directory / ARRAYS_FILE, lambda tmp: save_file(arrays, tmp, metadata={"format": KERNEL_FORMAT_NAME})
        )
        write_config(
            directory,
            {
                "format": KERNEL_FORMAT_NAME,
                "format_version": KERNEL_FORMAT_VERSION,
                "input_dim": self.input_dim,
                "config": dataclasses.asdict(self.config),
                "choice": dataclasses.asdict(self.choice),
            },
        )
        return directory

    @classmethod
    def load(cls, path: str | Path) -> KernelBTModel:
        """Load a model saved by :meth:`save`."""
        from safetensors.numpy import load_file

        directory = Path(path)
        meta, config = read_config(
            directory,
            format_name=KERNEL_FORMAT_NAME,
            format_version=KERNEL_FORMAT_VERSION,
            config_cls=KernelBTConfig,
            required=(ARRAYS_FILE,),
            what="kernel Bradley–Terry model",
        )
        config = dataclasses.replace(
            config, **{k: tuple(getattr(config, k)) for k in ("prior_sds", "nonlinear_shares", "length_scales")}
        )
        arrays = load_file(str(directory / ARRAYS_FILE))
        w = arrays.pop("w")
        choice = meta["choice"]
        return cls(config, KernelFeatureMap(arrays), HyperChoice(**choice), w)


@dataclass
class KernelFitResult:
    """Outcome of :func:`fit_kernel_bt`: ``model``, ``metrics`` (the keys the loop
    reads from every kind: ``best_epoch`` 1 when published-worthy, ``start_loss`` /
    ``best_trained_loss`` / ``monitored_heldout`` for the not-improved note,
    ``heldout_*`` on the validation split, ``n_train``, ``n_heldout``,
    ``train_seconds``; and the choice: ``log_evidence``, ``prior_sd``,
    ``nonlinear_share``, ``length_scale``) and ``device``."""

    model: KernelBTModel
    metrics: dict[str, float]
    device: str = "cpu"


def _scored(fmap: KernelFeatureMap, x: np.ndarray, choice: HyperChoice, weights: np.ndarray) -> np.ndarray:
    """``φ(x) @ weights``, a block of rows at a time (``φ`` of every candidate at
    once would not fit in memory on a large study)."""
    out = np.empty((x.shape[0], weights.shape[1]), dtype=np.float64)
    for start in range(0, x.shape[0], _SCORE_ROWS):
        out[start : start + _SCORE_ROWS] = fmap(x[start : start + _SCORE_ROWS], choice) @ weights
    return out


def _feature_solution(
    fmap: KernelFeatureMap, x: np.ndarray, data: PreferenceData, choice: HyperChoice, max_iter: int
) -> tuple[_Design | None, np.ndarray, Any]:
    """The design of the judgments, the posterior mode over all its columns and
    the sampler of deviations (None, zeros, None without judgments)."""
    left, right, y, weight = _merged_pairs(data)
    if left.size == 0:
        return None, np.zeros(fmap(x[:1], choice).shape[1]), None
    design = _design(fmap, x, left, right, choice)
    w, draw = _solver(design.d)(design.d, y, weight, 1.0, max_iter)
    return design, w, draw


def _posterior(
    fmap: KernelFeatureMap,
    x: np.ndarray,
    data: PreferenceData,
    choice: HyperChoice,
    rng: np.random.Generator,
    n_samples: int,
    max_iter: int,
    solution: tuple[_Design | None, np.ndarray, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and draws of the utilities of ``x`` (``solution``: the judgments'
    :func:`_feature_solution`, when the caller has it already)."""
    design, w, draw = solution or _feature_solution(fmap, x, data, choice, max_iter)
    dims = w.size if design is None else design.dims_features
    deviations = rng.standard_normal((w.size, n_samples)) if draw is None else draw(rng, n_samples)
    weights = np.concatenate([w[:dims, None], w[:dims, None] + deviations[:dims]], axis=1)
    scored = _scored(fmap, x, choice, weights)
    if choice.item_share > 0.0 and (design is None or design.d.shape[1] > design.dims_features):
        own = choice.item_sd * rng.standard_normal((x.shape[0], n_samples))
        own = np.concatenate([np.zeros((x.shape[0], 1)), own], axis=1)
        if design is not None:
            own[design.items] += choice.item_sd * np.concatenate(
                [w[dims:, None], w[dims:, None] + deviations[dims:]], axis=1
            )
        scored += own
    return scored[:, 0], scored[:, 1:].T.astype(np.float32)


class KernelGradientSource:
    """APOHF's view of a kernel model (``activelearn.strategies.GradientSource``).

    The model is linear in its weights, ``u(x) = φ(x)·w``, so its tangent features
    are ``φ(x)`` itself and APOHF's design is ``λI + Σ_judged (φ(a) − φ(b))²`` with
    ``λ = 1``, the precision of the prior ``w ~ N(0, I)``: the same design a
    linear head's source builds, on the version's feature map and hyper-parameters
    instead of the raw embedding. A judged pair adds its judgment weight (1, or a
    tie's share). Candidates' own effects are not part of the bonus: they are one
    parameter per candidate, so the bonus would need a dimension per candidate; the
    scores APOHF ranks by (the posterior mean) do include them.

    Features are computed on demand, ``chunk_size`` rows at a time, in float32 (a
    bonus weighs exploration, it needs no more; the design is summed in float64);
    :meth:`bonuses` computes each distinct reference's features once per call."""

    def __init__(
        self, model: KernelBTModel, features: np.ndarray, data: PreferenceData, *, chunk_size: int = 4_096
    ) -> None:
        self._x = check_features(features, model.input_dim)
        self._fmap, self._choice = model.fmap, model.choice
        self._chunk_size = int(chunk_size)
        left, right, _, weight = _merged_pairs(data)
        diag = np.ones(self._phi(self._x[:1]).shape[1])
        if left.size:
            items, where = np.unique(np.concatenate([left, right]), return_inverse=True)
            phi = self._phi(self._x[items])
            diff = (phi[where[: left.size]] - phi[where[left.size :]]).astype(np.float64)
            diag += weight @ (diff * diff)
        self._diag = diag

    def _phi(self, rows: np.ndarray) -> np.ndarray:
        return self._fmap(rows, self._choice, np.float32)

    @property
    def dim(self) -> int:
        return int(self._diag.shape[0])

    @property
    def design_diag(self) -> np.ndarray:
        return self._diag

    def chunks(self, items: np.ndarray) -> Any:
        """Yield ``(item indices, (rows, dim) float32 features)`` covering ``items``."""
        idx = np.asarray(items, dtype=np.int64).reshape(-1)
        for start in range(0, idx.size, self._chunk_size):
            part = idx[start : start + self._chunk_size]
            yield part, self._phi(self._x[part])

    def bonuses(self, items: np.ndarray, refs: np.ndarray, inv_diag: np.ndarray) -> np.ndarray:
        """``sqrt(Σ_k (φ_k(x) − φ_k(r))² · inv_diag_k)`` for each item ``x`` of ``items``
        and its reference ``r`` (same position in ``refs``)."""
        items, refs, inv = bonus_arguments(items, refs, inv_diag, self.dim)
        distinct, ref_row = np.unique(refs, return_inverse=True)
        ref_phi = self._phi(self._x[distinct])
        out = np.empty(items.size, dtype=np.float64)
        for start in range(0, items.size, self._chunk_size):
            stop = start + self._chunk_size
            diff = self._phi(self._x[items[start:stop]]) - ref_phi[ref_row[start:stop]]
            out[start:stop] = np.square(diff, dtype=np.float64) @ inv
        return np.sqrt(np.maximum(out, 0.0))


def _pair_log_loss(scores: np.ndarray, data: PreferenceData) -> tuple[float, float]:
    """Mean log-loss and accuracy of Bradley–Terry probabilities on ``data``'s pairs
    (a tie counts half each way)."""
    left, right, y, weight = _pairs(data)
    if left.size == 0 or weight.sum() <= 0:
        return math.nan, math.nan
    z = scores[left].astype(np.float64) - scores[right]
    p = np.clip(_sigmoid(z), 1e-7, 1 - 1e-7)
    loss = -(weight * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / weight.sum()
    correct = np.where(np.abs(y - 0.5) < 1e-6, 0.5, ((p > 0.5) == (y > 0.5)).astype(float))
    return float(loss), float((weight * correct).sum() / weight.sum())


# The last map fitted in this process, by its features and configuration: a study's
# candidates rarely change between two fits, and the map's principal directions (a
# thin SVD of up to 4,096 rows) were a third of a fit's time on 2,304-d features.
_MAP_CACHE: dict[tuple, KernelFeatureMap] = {}


def _fitted_map(x: np.ndarray, config: KernelBTConfig) -> KernelFeatureMap:
    """:meth:`KernelFeatureMap.fit` of ``x``, reused when the previous call had
    the same rows and the same map settings (the fit is deterministic, so the
    map is the same; a map is never modified once fitted)."""
    map_settings = (config.seed, config.components, config.random_features, config.whiten)
    map_settings += (config.linear_components, config.max_item_effects)
    rows = np.ascontiguousarray(x)
    key = (rows.shape, str(rows.dtype), hashlib.blake2b(rows.data, digest_size=20).digest(), map_settings)
    fmap = _MAP_CACHE.get(key)
    if fmap is None:
        fmap = KernelFeatureMap.fit(rows, config)
        _MAP_CACHE.clear()
        _MAP_CACHE[key] = fmap
    return fmap


def fit_kernel_bt(
    features: np.ndarray,
    data: PreferenceData,
    config: KernelBTConfig,
    init_state: Any = None,
    holdout: np.ndarray | None = None,
) -> KernelFitResult:
    """Fit the map on ``features``, choose the hyper-parameters by the evidence of
    every judgment in ``data`` and take the posterior mode. ``init_state`` is
    ignored (nothing to warm-start). When ``holdout`` rows pass the usual rule
    (at least ``min_holdout``, no more than the rest), a fit on the other rows with
    the same choice must beat a coin on them (validation log-loss below log 2)
    for ``best_epoch`` to be 1 (published); otherwise the training objective must
    improve on the prior's, which any judgment does."""
    started = time.perf_counter()
    x = check_features(features)
    fmap = _fitted_map(x, config)
    choice, _ = choose_hyper(fmap, x, data, config)
    solution = _feature_solution(fmap, x, data, choice, config.max_iter)
    design, w, _ = solution
    model = KernelBTModel(config, fmap, choice, w if design is None else w[: design.dims_features])
    rng = np.random.default_rng([config.seed, 13])
    train_mean = _posterior(fmap, x, data, choice, rng, 1, config.max_iter, solution)[0]
    train_loss, train_acc = _pair_log_loss(train_mean, data)
    metrics: dict[str, float] = {
        "n_train": float(len(data)),
        "train_log_loss": train_loss,
        "train_accuracy": train_acc,
        "log_evidence": choice.log_evidence,
        "prior_sd": choice.prior_sd,
        "nonlinear_share": choice.nonlinear_share,
        "length_scale": choice.length_scale,
        "item_share": choice.item_share,
        "start_loss": math.log(2.0),
        "epochs": 0.0,
    }
    held = np.asarray(holdout if holdout is not None else [], dtype=np.int64)
    # Rows of weight 0 (an annotator the reliability model does not trust) are
    # not judgments the split can count on either side.
    counted = data.weight > 0
    held = held[counted[held]]
    validates = config.min_holdout <= held.size <= int(counted.sum()) - held.size
    if validates:
        rest = np.setdiff1d(np.arange(len(data)), held)
        mean = _posterior(fmap, x, data.select(rest), choice, rng, 1, config.max_iter)[0]
        loss, acc = _pair_log_loss(mean, data.select(held))
        metrics.update(heldout_log_loss=loss, heldout_accuracy=acc, n_heldout=float(held.size))
        metrics.update(monitored_heldout=1.0, best_trained_loss=loss)
        improved = math.isfinite(loss) and loss < math.log(2.0)
    else:
        metrics.update(heldout_log_loss=math.nan, heldout_accuracy=math.nan, n_heldout=0.0)
        metrics.update(monitored_heldout=0.0, best_trained_loss=train_loss)
        improved = math.isfinite(train_loss) and train_loss < math.log(2.0)
    metrics["best_epoch"] = 1.0 if improved else 0.0
    metrics["train_seconds"] = time.perf_counter() - started
    return KernelFitResult(model, metrics)
