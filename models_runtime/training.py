"""The training core that every reward-model fit shares.

:func:`models_runtime.reward.fit_reward_model`, :func:`models_runtime.ensemble.fit_ensemble`
and :func:`models_runtime.finetune.fit_finetuned` differ in what they train; the steps
around that are the same and live here:

1. check the inputs (:func:`judged_features`, :func:`require_judgments`);
2. split the judgments into a training and a held-out part
   (:func:`split_judgments`), refusing a training part without weight;
3. run epochs, keeping the one with the lowest monitored loss and stopping early
   (:func:`run_epochs`, :class:`EarlyStopping`, :func:`capped_epochs`);
4. stop with :class:`TrainingDivergedError` as soon as a loss, a parameter or a
   score is not finite (:func:`ensure_finite`);
5. report the standard metrics of the fitted utilities (:func:`fit_summary`).

The config dataclasses validate their shared fields with :func:`check_training_fields`.
Nothing here imports torch at import time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from models_runtime.checkpoint import check_features
from models_runtime.metrics import fit_metrics
from models_runtime.preferences import LikelihoodConfig, PreferenceData

if TYPE_CHECKING:
    import torch

    from models_runtime.likelihood import PreferenceLikelihood

__all__ = [
    "EarlyStopping",
    "JudgedFeatures",
    "Split",
    "TrainingDivergedError",
    "capped_epochs",
    "check_non_negative",
    "check_positive",
    "check_training_fields",
    "ensure_finite",
    "fit_summary",
    "judged_features",
    "require_judgments",
    "run_epochs",
    "split_judgments",
]

# An epoch counts as an improvement only if it beats the best monitored loss by more
# than this, so float noise cannot keep a plateaued run alive.
_MIN_DELTA = 1e-6
# Adam epochs must also improve by this fraction of the loss (ten times more when there
# is no held-out set: the training objective keeps creeping down for hundreds of epochs
# on a handful of judgments, which only delays the first model). L-BFGS, used for exact
# fits, and the mini-batch fine-tuning keep the absolute threshold.
_REL_DELTA = 1e-4
# Without a held-out set nothing says when more epochs stop helping; a few judgments are
# fitted well long before this, and the next fit warm-starts from the result.
_MAX_EPOCHS_WITHOUT_HOLDOUT = 100

S = TypeVar("S")
T = TypeVar("T")


class TrainingDivergedError(RuntimeError):
    """Raised when fitting produces a non-finite loss, parameter or score (or is given
    non-finite features). No model is returned in that case."""


# --- config fields ---------------------------------------------------------------------


def check_positive(name: str, value: float) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is finite and > 0."""
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite positive number, got {value}")


def check_non_negative(name: str, value: float) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is finite and >= 0."""
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite non-negative number, got {value}")


def check_training_fields(config: Any, *, epochs_field: str = "max_epochs") -> None:
    """Validate the fields every fit config has (``lr``, the epoch budget named
    ``epochs_field``, ``patience``, ``holdout_fraction``, ``min_holdout``) and turn a
    ``likelihood`` given as a dict (as ``config.json`` stores it) into a
    :class:`LikelihoodConfig`, ignoring unknown keys. Call it from a frozen
    dataclass's ``__post_init__``."""
    check_positive("lr", config.lr)
    epochs = getattr(config, epochs_field)
    if epochs < 1:
        raise ValueError(f"{epochs_field} must be >= 1, got {epochs}")
    if config.patience < 1:
        raise ValueError(f"patience must be >= 1, got {config.patience}")
    if not 0.0 <= config.holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {config.holdout_fraction}")
    if config.min_holdout < 1:
        raise ValueError(f"min_holdout must be >= 1, got {config.min_holdout}")
    if isinstance(config.likelihood, Mapping):
        # config.json stores the nested dataclass as a dict.
        known = {f.name for f in dataclasses.fields(LikelihoodConfig)}
        likelihood = LikelihoodConfig(**{k: v for k, v in config.likelihood.items() if k in known})
        object.__setattr__(config, "likelihood", likelihood)


# --- inputs ----------------------------------------------------------------------------


def require_judgments(data: PreferenceData, what: str) -> None:
    """Raise ``ValueError`` when ``data`` holds no judgment; ``what`` names the model
    (``"a reward model"``)."""
    if len(data) == 0:
        raise ValueError(f"Cannot fit {what} without any judgments")


@dataclass(frozen=True)
class JudgedFeatures:
    """The checked feature matrix (float32 ``(N, d)``), the sorted indices of the
    items some judgment mentions, and those items' rows."""

    matrix: np.ndarray
    items: np.ndarray
    rows: np.ndarray

    @property
    def dim(self) -> int:
        """Feature dimension ``d``."""
        return int(self.matrix.shape[1])


def judged_features(features: np.ndarray, data: PreferenceData, *, what: str) -> JudgedFeatures:
    """Check ``features`` against the judgments in ``data`` and return the judged
    rows. ``ValueError`` when the matrix is not 2-D, there are no judgments (``what``
    names the model), it has no columns or a judgment references a row beyond it;
    :class:`TrainingDivergedError` when a judged row is not finite (unjudged rows,
    e.g. of the unlabelled pool, may be)."""
    matrix = check_features(features)
    require_judgments(data, what)
    n_items, dim = matrix.shape
    if dim == 0:
        raise ValueError("features must have at least one column")
    items = data.items()
    if items[-1] >= n_items:
        raise ValueError(f"Judgments reference item index >= {n_items}, the number of feature rows")
    rows = matrix[items]
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        raise TrainingDivergedError(
            f"features contain NaN or infinite values in {int(bad.sum())} judged "
            f"item row(s) (e.g. row {int(items[bad][0])}); refusing to train"
        )
    return JudgedFeatures(matrix=matrix, items=items, rows=rows)


# --- the held-out split ----------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Judgment indices (pairs first, then rankings) used for training and held out,
    both sorted, and every judgment's weight."""

    train: np.ndarray
    heldout: np.ndarray
    weight: np.ndarray

    @property
    def has_heldout(self) -> bool:
        """Whether some held-out judgment carries weight, i.e. there is something to
        monitor besides the training objective."""
        return self.heldout.size > 0 and float(self.weight[self.heldout].sum()) > 0.0

    def train_weights(self) -> np.ndarray:
        """Float32 weight per judgment, zero for held-out ones."""
        return self._masked(self.train)

    def heldout_weights(self) -> np.ndarray:
        """Float32 weight per judgment, zero for training ones."""
        return self._masked(self.heldout)

    def train_items(self, data: PreferenceData) -> np.ndarray:
        """Sorted indices of the items the training judgments mention."""
        return data.select(self.train).items()

    def _masked(self, idx: np.ndarray) -> np.ndarray:
        out = np.zeros(self.weight.shape[0], dtype=np.float32)
        out[idx] = self.weight[idx]
        return out


def split_judgments(
    data: PreferenceData, config: Any, rng: np.random.Generator | None = None, holdout: np.ndarray | None = None
) -> Split:
    """Hold out ``round(n * config.holdout_fraction)`` of the ``n`` judgments, chosen by
    a permutation drawn from ``rng`` (default: a fresh generator seeded with
    ``config.seed``), when that is at least ``config.min_holdout`` and leaves at least
    as many for training; otherwise train on all. A caller that passes its own ``rng``
    draws its next random numbers after this permutation. ``holdout`` (judgment
    indices) chooses the held-out judgments instead, with the same minimum, and
    draws nothing from ``rng``: the loop passes a split that stays the same from
    fit to fit, so a warm start is never validated on judgments it trained on.
    Raises ``ValueError`` when the training judgments have zero total weight."""
    n = len(data)
    held = np.zeros(n, dtype=bool)
    if holdout is not None:
        held[np.asarray(holdout, dtype=np.int64)] = True
    elif config.min_holdout <= round(n * config.holdout_fraction) <= n / 2:
        perm = (rng if rng is not None else np.random.default_rng(config.seed)).permutation(n)
        held[perm[: round(n * config.holdout_fraction)]] = True
    n_hold = int(held.sum())
    if n_hold >= config.min_holdout and n - n_hold >= n_hold:
        # Sorted so the training order (and thus float summation order) depends only on
        # which judgments were chosen, keeping results reproducible.
        train, heldout = np.flatnonzero(~held), np.flatnonzero(held)
    else:
        train, heldout = np.arange(n), np.zeros(0, dtype=np.int64)
    weight = data.weight
    if float(weight[train].sum()) <= 0.0:
        raise ValueError("Training judgments have zero total weight")
    return Split(train=train, heldout=heldout, weight=weight)


# --- epochs and early stopping ---------------------------------------------------------


def capped_epochs(max_epochs: int, has_heldout: bool) -> int:
    """The epoch budget of a fit that stops early: ``max_epochs``, but at most 100
    without a held-out set."""
    return max_epochs if has_heldout else min(max_epochs, _MAX_EPOCHS_WITHOUT_HOLDOUT)


class EarlyStopping:
    """Tracks the best monitored loss. An epoch improves on it when it is lower by more
    than ``1e-6`` and, with ``relative``, by more than ``1e-4`` of it (``1e-3``
    without a held-out set, where the training objective is monitored); after
    ``patience`` epochs in a row without improvement, :attr:`exhausted` turns true.
    Epoch 0, the starting point, competes but never counts as stale. It also keeps
    the starting point's loss and the lowest loss of any later epoch, for
    :meth:`report`."""

    def __init__(self, patience: int, *, has_heldout: bool, relative: bool = True) -> None:
        self.patience = patience
        self.has_heldout = has_heldout
        self.relative = (_REL_DELTA if has_heldout else 10 * _REL_DELTA) if relative else None
        self.best = math.inf
        self.best_epoch = -1
        self.stale = 0
        self.start = math.nan
        self.best_trained = math.inf

    def threshold(self) -> float:
        """How much the next epoch must improve on the best loss."""
        if self.relative is None or not math.isfinite(self.best):
            return _MIN_DELTA
        return max(_MIN_DELTA, self.relative * abs(self.best))

    def improved(self, epoch: int, loss: float) -> bool:
        """Record the monitored ``loss`` of ``epoch``; True when it is the new best."""
        if epoch == 0:
            self.start = loss
        else:
            self.best_trained = min(self.best_trained, loss)
        if loss < self.best - self.threshold():
            self.best, self.best_epoch, self.stale = loss, epoch, 0
            return True
        if epoch > 0:
            self.stale += 1
        return False

    @property
    def exhausted(self) -> bool:
        """Whether ``patience`` epochs in a row brought no improvement."""
        return self.stale >= self.patience

    def report(self) -> dict[str, float]:
        """What the fit's metrics say about early stopping: ``best_epoch`` (the epoch
        kept; 0 means no epoch improved on the starting point, i.e. the initial or
        warm-start weights come back unchanged), ``start_loss`` (the monitored loss
        of the starting point), ``best_trained_loss`` (the lowest monitored loss of
        any trained epoch, ``nan`` when none ran) and ``monitored_heldout`` (1 when
        the monitored loss is the held-out NLL, 0 when it is the training
        objective)."""
        return {
            "best_epoch": float(self.best_epoch),
            "start_loss": float(self.start),
            "best_trained_loss": float(self.best_trained) if math.isfinite(self.best_trained) else math.nan,
            "monitored_heldout": 1.0 if self.has_heldout else 0.0,
        }


def run_epochs(
    *,
    max_epochs: int,
    stopping: EarlyStopping,
    evaluate: Callable[[int], tuple[float, T]],
    step: Callable[[int, T], None],
    snapshot: Callable[[], S],
) -> tuple[S, int]:
    """Train for up to ``max_epochs`` epochs and return the :func:`snapshot` of the
    best one with the number of epochs run. Before each epoch (and once after the
    last) ``evaluate(epoch)`` gives the monitored loss of the current weights and a
    value that ``step(epoch + 1, value)`` then uses to train one epoch (e.g. the loss
    tensor of the same forward pass). Epoch 0, the starting point, competes, so a warm
    start that is already best is kept as it is. Raises
    :class:`TrainingDivergedError` on a non-finite monitored loss."""
    best: S | None = None
    epochs = 0
    for epoch in range(max_epochs + 1):
        current, value = evaluate(epoch)
        if not math.isfinite(current):
            raise TrainingDivergedError(f"monitored loss became {current} after {epoch} epochs")
        if stopping.improved(epoch, current):
            best = snapshot()
        if stopping.exhausted or epoch == max_epochs:
            break
        step(epoch + 1, value)
        epochs = epoch + 1
    # Epoch 0 always improves on an infinite best loss, so there is a snapshot.
    return cast(S, best), epochs


def ensure_finite(tensors: torch.Tensor | Iterable[torch.Tensor], message: str) -> None:
    """Raise :class:`TrainingDivergedError` with ``message`` unless every value of
    ``tensors`` (one tensor, or e.g. a module's parameters) is finite."""
    import torch

    if isinstance(tensors, torch.Tensor):
        finite = torch.isfinite(tensors).all()
    else:
        finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
    if not bool(finite):
        raise TrainingDivergedError(message)


# --- the result ------------------------------------------------------------------------


def fit_summary(
    likelihood: PreferenceLikelihood,
    scores: torch.Tensor,
    tensors: Any,
    data: PreferenceData,
    split: Split,
    *,
    what: str = "model",
) -> dict[str, float]:
    """The metrics of :func:`models_runtime.metrics.fit_metrics` for fitted utilities
    ``scores``: ``(N,)`` for one model, or ``(M, N)`` for ``M`` members, which are then
    scored by their averaged probabilities (Bayesian model averaging). ``tensors`` are
    ``data.to_tensors`` on the scores' device. Raises :class:`TrainingDivergedError`
    (naming ``what``) when a score is not finite."""
    import torch

    ensure_finite(scores, f"fitted {what} produces non-finite scores")
    with torch.no_grad():
        nll = likelihood(scores, tensors).double().cpu().numpy()
        p_left, _, p_right = likelihood.pair_probabilities(scores, tensors)
    p_left, p_right = p_left.double(), p_right.double()
    if scores.ndim == 2:
        nll = -(np.logaddexp.reduce(-nll, axis=0) - math.log(scores.shape[0]))
        p_left, p_right = p_left.mean(dim=0), p_right.mean(dim=0)
    p_left_np, p_right_np = p_left.cpu().numpy(), p_right.cpu().numpy()
    # Probability that left wins given that the pair was decided, for accuracy and ECE.
    q_left = p_left_np / np.maximum(p_left_np + p_right_np, 1e-300)
    return fit_metrics(nll, q_left, data.pair_outcome, split.weight, split.train, split.heldout)
