"""Reward model over frozen item embeddings: one linear or MLP head.

A small torch head (linear or one-hidden-layer MLP) maps an item's feature vector to a
scalar utility ``s``. :func:`fit_reward_model` maximises the weighted likelihood of a
:class:`models_runtime.preferences.PreferenceData` under a
:class:`models_runtime.preferences.LikelihoodConfig` (Bradley–Terry pairs with
Davidson / Rao–Kupper ties and label-flip robustness, Plackett–Luce rankings), with
L2 weight decay, full-batch Adam or L-BFGS, early stopping on the held-out NLL and a
warm start from a previous version. By default the label-flip rate ε is learned with
the head (``model.flip_rate``).

Saved models use a directory format: ``<dir>/model.safetensors`` holds the weights (and
a learned ε's logit, ``flip_logit``) and ``<dir>/config.json`` holds the format
name/version, ``input_dim`` and the :class:`RewardModelConfig` fields.
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
from models_runtime.device import pick_device
from models_runtime.preferences import LikelihoodConfig, PreferenceData, _indices
from models_runtime.training import (
    EarlyStopping,
    JudgedFeatures,
    Split,
    TrainingDivergedError,
    capped_epochs,
    check_non_negative,
    check_training_fields,
    ensure_finite,
    fit_summary,
    judged_features,
    run_epochs,
    split_judgments,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from models_runtime.likelihood import PreferenceLikelihood

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
    ``pick_device``; ``likelihood`` configures ties, label flips and rankings (a
    learned label-flip rate takes Adam steps of its own size,
    ``likelihood.FLIP_RATE_LR``, whatever ``lr``)."""

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
        check_non_negative("l2", self.l2)
        if self.optimizer not in ("adam", "lbfgs"):
            raise ValueError(f"optimizer must be 'adam' or 'lbfgs', got {self.optimizer!r}")
        check_training_fields(self)


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
    :class:`RewardModelConfig`, the input (embedding) dimension and the likelihood it
    was fitted under (which holds a learned ε). ``scores`` gives float64 utilities,
    ``prob_left`` pairwise preference probabilities (of the utilities, before label
    flips); ``save``/``load`` use the directory format described in this module's
    docstring."""

    def __init__(
        self,
        head: nn.Module,
        config: RewardModelConfig,
        input_dim: int,
        likelihood: PreferenceLikelihood | None = None,
    ) -> None:
        from models_runtime.likelihood import PreferenceLikelihood

        self.head = head
        self.config = config
        self.input_dim = int(input_dim)
        self.likelihood = likelihood if likelihood is not None else PreferenceLikelihood(config.likelihood)
        self.head.eval()

    @property
    def flip_rate(self) -> float:
        """The label-flip rate ε of the fit: learned from the judgments, or the
        configured one."""
        return float(self.likelihood.flip_rate())

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
        """Detached CPU copies of the head's parameters and of a learned ε's logit,
        usable as ``init_state`` for a warm-started :func:`fit_reward_model`."""
        return {k: v.detach().cpu().clone() for k, v in _joint_state(self.head, self.likelihood).items()}

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
        format version raises ``ValueError``. A model saved before ε could be learned
        keeps the fixed ε it was fitted with."""
        from safetensors.torch import load_file

        from models_runtime.likelihood import FLIP_RATE_KEY, PreferenceLikelihood

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
        state = load_file(str(directory / WEIGHTS_FILE), device="cpu")
        if config.likelihood.label_flip_rate is None and FLIP_RATE_KEY not in state:
            # Written before ε could be learned, by a config whose missing field then
            # meant no flips.
            config = dataclasses.replace(config, likelihood=dataclasses.replace(config.likelihood, label_flip_rate=0.0))
        head = _seeded_head(input_dim, config)
        likelihood = PreferenceLikelihood(config.likelihood)
        _load_joint_state(head, likelihood, state)
        target = pick_device(device)
        return cls(head.to(target), config, input_dim, likelihood.to(target))


def _joint_state(head: nn.Module, likelihood: PreferenceLikelihood) -> dict[str, torch.Tensor]:
    """The head's state and the likelihood's (a learned ε's logit) in one mapping:
    the head's names are its layer numbers, so the two never clash."""
    return {**head.state_dict(), **likelihood.state_dict()}


def _load_joint_state(head: nn.Module, likelihood: PreferenceLikelihood, state: Mapping[str, Any]) -> None:
    """Load a :func:`_joint_state` mapping back, strictly."""
    own = set(likelihood.state_dict())
    likelihood.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    head.load_state_dict({k: v for k, v in state.items() if k not in own}, strict=True)


@dataclass
class FitResult:
    """Outcome of :func:`fit_reward_model`: the fitted ``model``; ``metrics`` with keys
    ``heldout_accuracy`` and ``heldout_ece`` (decided held-out pairs),
    ``heldout_log_loss`` and ``train_log_loss`` (weighted mean NLL per judgment under
    the configured likelihood), ``n_train``, ``n_heldout``, ``epochs`` (epochs actually
    run), the early-stopping figures of :meth:`EarlyStopping.report` (``best_epoch``,
    the epoch kept, 0 when nothing improved on the starting point; ``start_loss``,
    ``best_trained_loss``, ``monitored_heldout``), ``flip_rate`` (the label-flip
    rate ε fitted, or the configured one) and ``train_seconds`` (held-out values
    are ``nan`` when nothing was held out); and the ``device`` it trained on."""

    model: RewardModel
    metrics: dict[str, float]
    device: str


class _HeadTraining:
    """One fit's training state: the head and the likelihood (with a learned ε), their
    objective over every judgment (held-out ones carry zero training weight) and the
    optimizer. :func:`run_epochs` drives it through :meth:`evaluate`, :meth:`step` and
    :meth:`snapshot`."""

    def __init__(
        self,
        head: nn.Module,
        likelihood: PreferenceLikelihood,
        judged: JudgedFeatures,
        data: PreferenceData,
        split: Split,
        config: RewardModelConfig,
        device: torch.device,
    ) -> None:
        import torch

        self.head = head
        self.config = config
        self.lbfgs = config.optimizer == "lbfgs"
        self.likelihood = likelihood
        self.tensors = data.to_tensors(device)
        self.n_items = judged.matrix.shape[0]
        self.judged_items = judged.items
        self.x = torch.from_numpy(judged.rows).to(device)
        self.items = torch.from_numpy(judged.items).to(device)
        w_train, w_hold = split.train_weights(), split.heldout_weights()
        self.w_train, self.w_hold = torch.from_numpy(w_train).to(device), torch.from_numpy(w_hold).to(device)
        self.train_total, self.hold_total = float(w_train.sum()), float(w_hold.sum())
        self.has_heldout = split.has_heldout
        flip = list(likelihood.parameters())
        self.params = [*head.parameters(), *flip]
        self.decayed = [p for name, p in head.named_parameters() if name.endswith("weight")]
        self.optimizer = _optimizer(config, list(head.parameters()), flip)

    def scores(self) -> torch.Tensor:
        """Utilities of all ``N`` items: likelihood tensors index rows of the full
        feature matrix, but only judged rows are read, so the rest stay zero."""
        return self.x.new_zeros(self.n_items).index_copy(0, self.items, self.head(self.x).squeeze(-1))

    def losses(self) -> tuple[torch.Tensor, float]:
        """Training objective and monitored loss (held-out NLL, or the objective
        without a held-out set) from one forward pass over every judgment."""
        nll = self.likelihood(self.scores(), self.tensors)
        loss = (nll * self.w_train).sum() / self.train_total
        if self.config.l2 > 0.0:
            loss = loss + self.config.l2 * sum((p * p).sum() for p in self.decayed)
        if self.likelihood.learns_flip_rate:
            loss = loss + self.likelihood.prior_nll() / self.train_total
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDivergedError(f"training loss became {value}; try a smaller lr or check the features")
        if not self.has_heldout:
            return loss, value
        return loss, float((nll.detach() * self.w_hold).sum()) / self.hold_total

    def evaluate(self, epoch: int) -> tuple[float, torch.Tensor]:
        """Monitored loss of the current weights; with Adam the same forward pass
        gives the gradient of the next step."""
        import torch

        with torch.set_grad_enabled(not self.lbfgs):
            loss, current = self.losses()
        return current, loss

    def step(self, epoch: int, loss: torch.Tensor) -> None:
        """One optimizer step, which makes ``epoch``; L-BFGS re-evaluates ``loss``
        itself."""
        if self.lbfgs:
            self.optimizer.step(self._closure)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        ensure_finite(self.params, f"model parameters became non-finite at epoch {epoch}; try a smaller lr")

    def _closure(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self.losses()
        loss.backward()
        return loss

    def snapshot(self) -> dict[str, torch.Tensor]:
        """Copies of the head's current weights and ε's logit."""
        return {k: v.detach().clone() for k, v in _joint_state(self.head, self.likelihood).items()}

    def restore(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a :meth:`snapshot` back."""
        _load_joint_state(self.head, self.likelihood, state)

    def centre(self, train_items: np.ndarray) -> None:
        """Shift the output bias so the training items' scores average zero. It cancels
        in every likelihood (they see score differences only, and the both-bad term is
        relative to the mean), so this changes no prediction but makes utilities
        comparable across fits."""
        import torch

        rows = torch.from_numpy(np.searchsorted(self.judged_items, train_items)).to(self.x.device)
        with torch.no_grad():
            self.head[-1].bias.sub_(self.head(self.x[rows]).squeeze(-1).mean())


def _optimizer(
    config: RewardModelConfig, params: list[torch.Tensor], flip: list[torch.Tensor]
) -> torch.optim.Optimizer:
    """L-BFGS over the head's ``params`` and a learned ε's logit ``flip``, or Adam with
    ``flip`` at its own learning rate."""
    import torch

    from models_runtime.likelihood import FLIP_RATE_LR

    if config.optimizer == "lbfgs":
        return torch.optim.LBFGS(
            params + flip,
            lr=1.0,
            max_iter=20,
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
        )
    groups: list[dict[str, Any]] = [{"params": params}]
    if flip:
        groups.append({"params": flip, "lr": FLIP_RATE_LR})
    return torch.optim.Adam(groups, lr=config.lr)


def fit_reward_model(
    features: np.ndarray,
    data: PreferenceData,
    config: RewardModelConfig = RewardModelConfig(),
    init_state: Mapping[str, Any] | None = None,
    holdout: np.ndarray | None = None,
) -> FitResult:
    """Fit a utility head on frozen ``features`` (``(N, d)`` float32, one row per item)
    from the pairwise and listwise judgments in ``data``, which index rows of
    ``features``. Judgments are split deterministically by ``config.seed`` into train
    and held-out parts (see :class:`RewardModelConfig`); the head minimises the
    weighted mean NLL of the training judgments under ``config.likelihood`` plus L2 on
    weights, with early stopping on the held-out NLL (training objective when nothing
    is held out) and the best epoch restored. ``init_state`` warm-starts from a
    previous ``state_dict`` with matching shapes, otherwise it is ignored (a learned
    ε is taken from it when it has one, else starts at the prior mean); ``holdout``
    (judgment indices) fixes the held-out part instead of ``config.seed``. Scores are
    centred to mean zero over training items. Deterministic on CPU. Raises
    ``TrainingDivergedError`` on non-finite features, losses or parameters (the caller
    keeps its previous model) and ``ValueError`` on invalid inputs."""
    import torch

    from models_runtime.likelihood import FLIP_RATE_KEY, PreferenceLikelihood

    started = time.perf_counter()
    # Only judged items are scored while training; feature matrices may hold many more
    # (e.g. the whole unlabelled pool).
    judged = judged_features(features, data, what="a reward model")
    split = split_judgments(data, config, holdout=holdout)
    device = pick_device(config.device)
    head = _seeded_head(judged.dim, config)
    likelihood = PreferenceLikelihood(config.likelihood)
    if load_init_state(head, init_state, optional=(FLIP_RATE_KEY,)):
        log.debug("Warm-starting reward model from init_state")
        load_init_state(
            likelihood, {k: v for k, v in init_state.items() if k == FLIP_RATE_KEY}, optional=(FLIP_RATE_KEY,)
        )
    head.to(device)
    likelihood.to(device)
    training = _HeadTraining(head, likelihood, judged, data, split, config, device)
    # L-BFGS fits are meant to be exact, so they keep their full budget and the
    # absolute improvement threshold.
    lbfgs = config.optimizer == "lbfgs"
    stopping = EarlyStopping(config.patience, has_heldout=split.has_heldout, relative=not lbfgs)
    best_state, epochs = run_epochs(
        max_epochs=config.max_epochs if lbfgs else capped_epochs(config.max_epochs, split.has_heldout),
        stopping=stopping,
        evaluate=training.evaluate,
        step=training.step,
        snapshot=training.snapshot,
    )
    training.restore(best_state)
    head.eval()
    training.centre(split.train_items(data))

    model = RewardModel(head, config, judged.dim, likelihood)
    with torch.no_grad():
        scores = training.scores()
    metrics = fit_summary(training.likelihood, scores, training.tensors, data, split)
    metrics["epochs"] = float(epochs)
    metrics.update(stopping.report())
    metrics["flip_rate"] = model.flip_rate
    metrics["train_seconds"] = time.perf_counter() - started
    return FitResult(model=model, metrics=metrics, device=str(device))
