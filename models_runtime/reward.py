"""Reward model over frozen item embeddings: one linear or MLP head.

A small torch head (linear or one-hidden-layer MLP) maps an item's feature vector to a
scalar utility ``s``. :func:`fit_reward_model` maximises the weighted likelihood of a
:class:`models_runtime.preferences.PreferenceData` under a
:class:`models_runtime.preferences.LikelihoodConfig` (Bradley–Terry pairs with
Davidson / Rao–Kupper ties and label-flip robustness, Plackett–Luce rankings), with
L2 weight decay, full-batch Adam or L-BFGS, early stopping on the held-out NLL and a
warm start from a previous version.

Saved models use a directory format: ``<dir>/model.safetensors`` holds the weights and
``<dir>/config.json`` holds the format name/version, ``input_dim`` and the
:class:`RewardModelConfig` fields.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models_runtime.checkpoint import (
    check_features,
    load_init_state,
    read_config,
    write_config,
    write_tensors,
)
from models_runtime.metrics import fit_metrics
from models_runtime.preferences import LikelihoodConfig, PreferenceData, _indices

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FitResult",
    "RewardModel",
    "RewardModelConfig",
    "TrainingDivergedError",
    "fit_reward_model",
]

log = logging.getLogger(__name__)

FORMAT_NAME = "prefloop-bradley-terry"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"

# Scoring batch size: large enough to amortise per-call overhead, small enough that an
# (batch, hidden) activation never strains memory.
_SCORE_BATCH = 65_536
# Early stopping counts an epoch as an improvement only if it beats the best monitored
# loss by more than this, so float noise cannot keep a plateaued run alive.
_MIN_DELTA = 1e-6
# Adam epochs must also improve by this fraction of the loss (ten times more when
# there is no held-out set: the training objective keeps creeping down for hundreds
# of epochs on a handful of judgments, which only delays the first model). L-BFGS,
# used for exact fits, keeps the absolute threshold.
_REL_DELTA = 1e-4
# Without a held-out set nothing says when more epochs stop helping; a few judgments
# are fitted well long before this, and the next fit warm-starts from the result.
_MAX_EPOCHS_WITHOUT_HOLDOUT = 100


class TrainingDivergedError(RuntimeError):
    """Raised when fitting produces a non-finite loss, parameter or score (or is given
    non-finite features). No model is returned in that case."""


@dataclass(frozen=True)
class RewardModelConfig:
    """Hyper-parameters for :func:`fit_reward_model`. ``head`` is ``"linear"`` or
    ``"mlp"`` (one hidden layer of ``hidden`` GELU units); ``l2`` penalises the squared
    weights (not biases). ``optimizer`` ``"adam"`` takes full-batch Adam steps at
    ``lr``; ``"lbfgs"`` takes full-batch L-BFGS steps (strong Wolfe line search), the
    choice for an exact maximum-likelihood fit of a small model. Either way an epoch is
    one step, at most ``max_epochs`` of them, stopping after ``patience`` epochs
    without held-out improvement. A ``holdout_fraction`` of judgments is held out only
    when that is at least ``min_holdout`` judgments and no more than what remains for
    training. ``seed`` fixes initialisation and the split; ``device`` goes to
    ``pick_device``; ``likelihood`` configures ties, label flips and rankings."""

    head: str = "mlp"
    hidden: int = 64
    l2: float = 1e-3
    optimizer: str = "adam"
    lr: float = 1e-2
    max_epochs: int = 300
    patience: int = 20
    holdout_fraction: float = 0.2
    min_holdout: int = 5
    seed: int = 0
    device: str = "auto"
    likelihood: LikelihoodConfig = field(default_factory=LikelihoodConfig)

    def __post_init__(self) -> None:
        if self.head not in ("linear", "mlp"):
            raise ValueError(f"head must be 'linear' or 'mlp', got {self.head!r}")
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        if not (self.l2 >= 0.0 and math.isfinite(self.l2)):
            raise ValueError(f"l2 must be a finite non-negative number, got {self.l2}")
        if self.optimizer not in ("adam", "lbfgs"):
            raise ValueError(f"optimizer must be 'adam' or 'lbfgs', got {self.optimizer!r}")
        if not (self.lr > 0.0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite positive number, got {self.lr}")
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.min_holdout < 1:
            raise ValueError(f"min_holdout must be >= 1, got {self.min_holdout}")
        if isinstance(self.likelihood, Mapping):
            # config.json stores the nested dataclass as a dict.
            known = {f.name for f in dataclasses.fields(LikelihoodConfig)}
            lik = LikelihoodConfig(**{k: v for k, v in self.likelihood.items() if k in known})
            object.__setattr__(self, "likelihood", lik)


def _build_head(input_dim: int, config: RewardModelConfig) -> nn.Module:
    from torch import nn

    if config.head == "linear":
        return nn.Sequential(nn.Linear(input_dim, 1))
    return nn.Sequential(nn.Linear(input_dim, config.hidden), nn.GELU(), nn.Linear(config.hidden, 1))


def _seeded_head(input_dim: int, config: RewardModelConfig) -> nn.Module:
    import torch

    # fork_rng keeps the process-wide RNG untouched: seeding must make this fit
    # reproducible without changing randomness anywhere else in the worker.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _build_head(input_dim, config)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # tanh form never overflows, unlike 1 / (1 + exp(-z)) for large negative z.
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class RewardModel:
    """A fitted Bradley–Terry utility head: wraps the torch module, its
    :class:`RewardModelConfig` and the input (embedding) dimension. ``scores`` gives
    float64 utilities, ``prob_left`` pairwise preference probabilities; ``save``/``load``
    use the directory format described in this module's docstring."""

    def __init__(self, head: nn.Module, config: RewardModelConfig, input_dim: int) -> None:
        self.head = head
        self.config = config
        self.input_dim = int(input_dim)
        self.head.eval()

    @property
    def device(self) -> torch.device:
        """Device the head's parameters live on."""
        return next(self.head.parameters()).device

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Utility of each row of ``features`` (shape ``(n, input_dim)``) as a float64
        array of shape ``(n,)``, computed in batches under ``torch.inference_mode``."""
        import torch

        x = check_features(features, self.input_dim)
        out = np.empty(x.shape[0], dtype=np.float64)
        device = self.device
        self.head.eval()
        with torch.inference_mode():
            for start in range(0, x.shape[0], _SCORE_BATCH):
                chunk = torch.from_numpy(x[start : start + _SCORE_BATCH]).to(device)
                out[start : start + chunk.shape[0]] = self.head(chunk).squeeze(-1).double().cpu().numpy()
        return out

    def prob_left(self, features: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Probability (float64) that item ``left[i]`` is preferred over ``right[i]``,
        i.e. ``sigmoid(s_left - s_right)``, where indices are rows of ``features``. Only
        the rows actually referenced are scored."""
        x = check_features(features, self.input_dim)
        li = _indices(left, "left")
        ri = _indices(right, "right")
        if li.shape != ri.shape:
            raise ValueError("left and right must have the same length")
        if li.size == 0:
            return np.zeros(0, dtype=np.float64)
        if max(li.max(), ri.max()) >= x.shape[0]:
            raise ValueError("item index out of range for features")
        used, inv = np.unique(np.concatenate([li, ri]), return_inverse=True)
        s = self.scores(x[used])
        return _sigmoid(s[inv[: li.size]] - s[inv[li.size :]])

    def last_layer_features(self, features: np.ndarray) -> np.ndarray:
        """The inputs of the head's output layer for each row of ``features`` (the
        hidden activations of an MLP head, the features themselves for a linear
        head), with a trailing column of ones for the output bias: float64
        ``(n, q)``. ``scores == last_layer_features @ last_layer_weights``."""
        import torch

        x = check_features(features, self.input_dim)
        out = []
        with torch.inference_mode():
            for start in range(0, x.shape[0], _SCORE_BATCH):
                chunk = torch.from_numpy(x[start : start + _SCORE_BATCH]).to(self.device)
                out.append(self.head[:-1](chunk).double().cpu().numpy())
        hidden = np.concatenate(out) if out else np.zeros((0, self.head[-1].in_features))
        return np.hstack([hidden, np.ones((hidden.shape[0], 1))])

    def last_layer_weights(self) -> np.ndarray:
        """The output layer's weights followed by its bias, float64 ``(q,)``."""
        last = self.head[-1]
        return np.concatenate([last.weight.detach().double().cpu().numpy().ravel(), [float(last.bias.detach())]])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Detached CPU copies of the head's parameters, usable as ``init_state`` for a
        warm-started :func:`fit_reward_model`."""
        return {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()}

    def save(self, path: str | Path) -> Path:
        """Write the model into directory ``path`` (created if needed) as
        ``model.safetensors`` + ``config.json`` and return the directory. Each file is
        written atomically; use a fresh directory per model version so readers never
        pair new weights with an old config."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        write_tensors(directory / WEIGHTS_FILE, self.state_dict(), FORMAT_NAME)
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "input_dim": self.input_dim,
            "config": dataclasses.asdict(self.config),
        }
        write_config(directory, meta)
        return directory

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> RewardModel:
        """Load a model saved by :meth:`save` from directory ``path`` onto ``device``
        (CPU by default, where predictions match the saved model's exactly). Unknown
        config fields from newer writers are ignored; a different format or a newer
        format version raises ``ValueError``."""
        from safetensors.torch import load_file

        from models_runtime.device import pick_device

        directory = Path(path)
        meta, config = read_config(
            directory,
            format_name=FORMAT_NAME,
            format_version=FORMAT_VERSION,
            config_cls=RewardModelConfig,
            required=(WEIGHTS_FILE,),
            what="reward model",
        )
        input_dim = int(meta["input_dim"])
        head = _seeded_head(input_dim, config)
        head.load_state_dict(load_file(str(directory / WEIGHTS_FILE), device="cpu"), strict=True)
        head.to(pick_device(device))
        return cls(head, config, input_dim)


@dataclass
class FitResult:
    """Outcome of :func:`fit_reward_model`: the fitted ``model``; ``metrics`` with keys
    ``heldout_accuracy`` and ``heldout_ece`` (decided held-out pairs),
    ``heldout_log_loss`` and ``train_log_loss`` (weighted mean NLL per judgment under
    the configured likelihood), ``n_train``, ``n_heldout``, ``epochs`` (epochs actually
    run) and ``train_seconds`` (held-out values are ``nan`` when nothing was held out);
    and the ``device`` it trained on."""

    model: RewardModel
    metrics: dict[str, float]
    device: str


def _split(n: int, config: RewardModelConfig) -> tuple[np.ndarray, np.ndarray]:
    n_hold = round(n * config.holdout_fraction)
    if n_hold >= config.min_holdout and n - n_hold >= n_hold:
        perm = np.random.default_rng(config.seed).permutation(n)
        # Sorted so the training order (and thus float summation order) depends only on
        # which judgments were chosen, keeping results reproducible.
        return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])
    return np.arange(n), np.zeros(0, dtype=np.int64)


def fit_reward_model(
    features: np.ndarray,
    data: PreferenceData,
    config: RewardModelConfig = RewardModelConfig(),
    init_state: Mapping[str, Any] | None = None,
) -> FitResult:
    """Fit a utility head on frozen ``features`` (``(N, d)`` float32, one row per item)
    from the pairwise and listwise judgments in ``data``, which index rows of
    ``features``. Judgments are split deterministically by ``config.seed`` into train
    and held-out parts (see :class:`RewardModelConfig`); the head minimises the
    weighted mean NLL of the training judgments under ``config.likelihood`` plus L2 on
    weights, with early stopping on the held-out NLL (training objective when nothing
    is held out) and the best epoch restored. ``init_state`` warm-starts from a
    previous ``state_dict`` with matching shapes, otherwise it is ignored. Scores are
    centred to mean zero over training items. Deterministic on CPU. Raises
    ``TrainingDivergedError`` on non-finite features, losses or parameters (the caller
    keeps its previous model) and ``ValueError`` on invalid inputs."""
    import torch

    from models_runtime.device import pick_device
    from models_runtime.likelihood import PreferenceLikelihood

    started = time.perf_counter()
    x_all = check_features(features)
    n_items, dim = x_all.shape
    n = len(data)
    if n == 0:
        raise ValueError("Cannot fit a reward model without any judgments")
    if dim == 0:
        raise ValueError("features must have at least one column")
    used = data.items()
    if used[-1] >= n_items:
        raise ValueError(f"Judgments reference item index >= {n_items}, the number of feature rows")
    # Only judged items are scored while training; feature matrices may hold many more
    # (e.g. the whole unlabelled pool).
    x_used = x_all[used]
    bad_rows = ~np.isfinite(x_used).all(axis=1)
    if bad_rows.any():
        raise TrainingDivergedError(
            f"features contain NaN or infinite values in {int(bad_rows.sum())} judged "
            f"item row(s) (e.g. row {int(used[bad_rows][0])}); refusing to train"
        )
    weight = data.weight
    train_idx, hold_idx = _split(n, config)
    if float(weight[train_idx].sum()) <= 0.0:
        raise ValueError("Training judgments have zero total weight")
    has_hold = hold_idx.size > 0 and float(weight[hold_idx].sum()) > 0.0

    device = pick_device(config.device)
    head = _seeded_head(dim, config)
    if load_init_state(head, init_state):
        log.debug("Warm-starting reward model from init_state")
    head.to(device)
    likelihood = PreferenceLikelihood(config.likelihood)
    x_t = torch.from_numpy(x_used).to(device)
    used_t = torch.from_numpy(used).to(device)

    full = data.to_tensors(device)
    w_train = np.zeros(n, dtype=np.float32)
    w_train[train_idx] = weight[train_idx]
    w_hold = np.zeros(n, dtype=np.float32)
    w_hold[hold_idx] = weight[hold_idx]
    w_train_t, w_hold_t = torch.from_numpy(w_train).to(device), torch.from_numpy(w_hold).to(device)
    train_total, hold_total = float(w_train.sum()), float(w_hold.sum())
    params = list(head.parameters())
    decayed = [p for name, p in head.named_parameters() if name.endswith("weight")]

    def all_scores() -> torch.Tensor:
        # Likelihood tensors index rows of the full feature matrix; only judged rows are
        # read, so the rest can stay zero.
        return x_t.new_zeros(n_items).index_copy(0, used_t, head(x_t).squeeze(-1))

    def losses() -> tuple[torch.Tensor, float]:
        """Training objective and monitored loss from one forward pass over every
        judgment (held-out ones simply carry zero training weight)."""
        nll = likelihood(all_scores(), full)
        loss = (nll * w_train_t).sum() / train_total
        if config.l2 > 0.0:
            loss = loss + config.l2 * sum((p * p).sum() for p in decayed)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDivergedError(f"training loss became {value}; try a smaller lr or check the features")
        return loss, float((nll.detach() * w_hold_t).sum()) / hold_total if has_hold else value

    lbfgs = config.optimizer == "lbfgs"
    if lbfgs:
        optimizer: torch.optim.Optimizer = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=20,
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
        )
    else:
        optimizer = torch.optim.Adam(params, lr=config.lr)

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = losses()
        loss.backward()
        return loss

    best_loss = math.inf
    best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    stale = 0
    epochs = 0
    # L-BFGS fits are meant to be exact, so they keep their full budget.
    max_epochs = config.max_epochs if has_hold or lbfgs else min(config.max_epochs, _MAX_EPOCHS_WITHOUT_HOLDOUT)
    for epoch in range(max_epochs + 1):
        # Epoch 0 competes too, so a warm start that is already optimal is kept as is.
        # With Adam the same forward pass gives the monitored loss of the current
        # weights and the gradient of the next step.
        with torch.set_grad_enabled(not lbfgs):
            loss, current = losses()
        if not math.isfinite(current):
            raise TrainingDivergedError(f"monitored loss became {current} after {epoch} epochs")
        rel = _REL_DELTA if has_hold else 10 * _REL_DELTA
        delta = _MIN_DELTA if lbfgs or not math.isfinite(best_loss) else max(_MIN_DELTA, rel * abs(best_loss))
        if current < best_loss - delta:
            best_loss = current
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
            stale = 0
        elif epoch > 0:
            stale += 1
        if stale >= config.patience or epoch == max_epochs:
            break
        if lbfgs:
            optimizer.step(closure)
        else:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        epochs = epoch + 1
        if not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            raise TrainingDivergedError(f"model parameters became non-finite at epoch {epochs}; try a smaller lr")
    head.load_state_dict(best_state)
    head.eval()

    # The output bias cancels in every likelihood (they see score differences only,
    # and the both-bad term is relative to the mean), so shifting it to centre the
    # training items' scores at zero changes no prediction but makes utilities
    # comparable across fits.
    train_items = np.searchsorted(used, data.select(train_idx).items())
    with torch.no_grad():
        s_train = head(x_t[torch.from_numpy(train_items).to(device)]).squeeze(-1)
        head[-1].bias.sub_(s_train.mean())

    model = RewardModel(head, config, dim)
    with torch.no_grad():
        scores = all_scores()
        if not bool(torch.isfinite(scores[used_t]).all()):
            raise TrainingDivergedError("fitted model produces non-finite scores")
        nll = likelihood(scores, full).double().cpu().numpy()
        p_left, _, p_right = likelihood.pair_probabilities(scores, full)
    p_left_np, p_right_np = p_left.double().cpu().numpy(), p_right.double().cpu().numpy()
    # Probability that left wins given that the pair was decided.
    q_left = p_left_np / np.maximum(p_left_np + p_right_np, 1e-300)
    metrics = fit_metrics(nll, q_left, data.pair_outcome, weight, train_idx, hold_idx)
    metrics["epochs"] = float(epochs)
    metrics["train_seconds"] = time.perf_counter() - started
    return FitResult(model=model, metrics=metrics, device=str(device))
