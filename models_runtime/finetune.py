"""Reward model that fine-tunes a small transformer encoder end to end.

The frozen-embedding head of :mod:`models_runtime.reward` is the default: cheap, exact
and good enough while judgments are few. Once a study has thousands of judgments the
encoder itself becomes the bottleneck, and this module trains it together with the
head: texts go through a Hugging Face encoder (all-MiniLM-L6-v2 by default), the last
hidden state is mean-pooled over the attention mask and L2-normalised (exactly what
:class:`models_runtime.embedding.TransformerEmbedder` returns, so a fine-tuned model
starts from the same geometry as the frozen one), and a ``Linear(hidden, 1)`` head
gives the utility ``s``. :func:`fit_finetuned` minimises the same weighted likelihood
as :func:`models_runtime.reward.fit_reward_model` (Bradley–Terry/Davidson/Rao–Kupper
pairs, Plackett–Luce rankings, label flips) with mini-batches of judgments, AdamW with
separate learning rates for encoder and head, gradient clipping, bf16 autocast on CUDA
and early stopping on the held-out NLL.

It is meant for a GPU; on a CPU it works, slowly (tests use a handful of texts).

Saved models use a directory format: ``<dir>/encoder/`` is the encoder and tokenizer as
written by ``save_pretrained`` (safetensors), ``<dir>/head.safetensors`` the head and
``<dir>/config.json`` the format name/version, the hidden size and the
:class:`FinetuneConfig` fields.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models_runtime.checkpoint import read_config, write_config, write_tensors
from models_runtime.device import pick_device
from models_runtime.embedding import _check_texts, default_model_path
from models_runtime.preferences import LikelihoodConfig, PreferenceData
from models_runtime.training import (
    EarlyStopping,
    Split,
    TrainingDivergedError,
    check_non_negative,
    check_positive,
    check_training_fields,
    ensure_finite,
    fit_summary,
    require_judgments,
    run_epochs,
    split_judgments,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "FINETUNE_FORMAT_NAME",
    "FINETUNE_FORMAT_VERSION",
    "FinetuneConfig",
    "FinetuneResult",
    "FinetunedRewardModel",
    "TrainingDivergedError",
    "fit_finetuned",
]

log = logging.getLogger(__name__)

FINETUNE_FORMAT_NAME = "prefloop-finetuned-reward"
FINETUNE_FORMAT_VERSION = 1
ENCODER_DIR = "encoder"
HEAD_FILE = "head.safetensors"


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters for :func:`fit_finetuned`. ``model_path`` is a local Hugging
    Face encoder directory (``None``: the packaged all-MiniLM-L6-v2, as in
    :class:`models_runtime.embedding.EmbedderConfig`); inputs are truncated to
    ``max_length`` tokens. AdamW trains the encoder at ``lr`` and the head at
    ``head_lr``, with ``weight_decay`` on weight matrices (not biases or LayerNorm) and
    gradients clipped to norm ``grad_clip`` (``None``: no clipping). Each step uses
    ``batch_judgments`` judgments; at most ``epochs`` passes, stopping after
    ``patience`` epochs without held-out improvement. The held-out split follows
    :class:`models_runtime.reward.RewardModelConfig` (``holdout_fraction``,
    ``min_holdout``, ``seed``). ``mixed_precision`` runs the encoder under bf16
    autocast on CUDA devices that support it (never on CPU); ``device`` goes to
    ``pick_device``; ``likelihood`` configures ties, label flips and rankings. Its
    label-flip rate must be a number (0 by default): learning ε is implemented for
    the heads over frozen embeddings (``reward.py``, ``ensemble.py``) only."""

    model_path: str | None = None
    max_length: int = 256
    lr: float = 2e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    epochs: int = 3
    batch_judgments: int = 16
    holdout_fraction: float = 0.2
    min_holdout: int = 5
    patience: int = 1
    seed: int = 0
    device: str = "auto"
    grad_clip: float | None = 1.0
    mixed_precision: bool = True
    likelihood: LikelihoodConfig = field(default_factory=lambda: LikelihoodConfig(label_flip_rate=0.0))

    def __post_init__(self) -> None:
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        check_positive("head_lr", self.head_lr)
        check_non_negative("weight_decay", self.weight_decay)
        if self.batch_judgments < 1:
            raise ValueError(f"batch_judgments must be >= 1, got {self.batch_judgments}")
        if self.grad_clip is not None and not (self.grad_clip > 0.0 and math.isfinite(self.grad_clip)):
            raise ValueError(f"grad_clip must be None or a finite positive number, got {self.grad_clip}")
        check_training_fields(self, epochs_field="epochs")
        if self.likelihood.label_flip_rate is None:
            raise ValueError("fine-tuning needs a fixed label_flip_rate (a number in [0, 0.5)); it does not learn ε")

    def resolved_model_path(self) -> Path:
        """The encoder directory to start from: ``model_path`` or the packaged model."""
        raw = self.model_path if self.model_path is not None else default_model_path()
        return Path(raw).expanduser()


def _load_encoder(path: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a Hugging Face model directory (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    # float32 master weights whatever the checkpoint's dtype: autocast handles bf16.
    encoder = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    return encoder, tokenizer


def _use_autocast(config: FinetuneConfig, device: torch.device) -> bool:
    import torch

    return bool(config.mixed_precision and device.type == "cuda" and torch.cuda.is_bf16_supported())


class FinetunedRewardModel:
    """An encoder plus scalar head: ``scores(texts)`` gives float64 utilities of raw
    texts. Built by :func:`fit_finetuned`, :meth:`from_pretrained` (untrained head) or
    :meth:`load`; ``save`` writes the directory format described in this module's
    docstring. Not thread-safe: share one instance per worker, not across threads."""

    def __init__(self, encoder: nn.Module, tokenizer: Any, head: nn.Module, config: FinetuneConfig) -> None:
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.head = head
        self.config = config
        # Position embeddings are finite; truncating beyond what the model supports
        # would crash the forward pass.
        limit = getattr(tokenizer, "model_max_length", None)
        self.max_length = config.max_length
        if isinstance(limit, int) and 0 < limit < 1_000_000:
            self.max_length = min(config.max_length, limit)
        self.encoder.eval()
        self.head.eval()

    @classmethod
    def from_pretrained(
        cls, config: FinetuneConfig = FinetuneConfig(), device: str | None = None
    ) -> FinetunedRewardModel:
        """The base encoder at ``config.resolved_model_path()`` with a fresh head
        seeded by ``config.seed``: the starting point of a fit, and a baseline."""
        import torch

        encoder, tokenizer = _load_encoder(config.resolved_model_path())
        hidden = int(encoder.config.hidden_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            head = torch.nn.Linear(hidden, 1)
        target = pick_device(config.device if device is None else device)
        return cls(encoder.to(target), tokenizer, head.to(target), config)

    @property
    def device(self) -> torch.device:
        """Device the head's (and encoder's) parameters live on."""
        return next(self.head.parameters()).device

    @property
    def hidden_size(self) -> int:
        """Width of the pooled encoder output, the head's input."""
        return int(self.head.in_features)

    def _forward(self, texts: list[str], autocast: bool) -> torch.Tensor:
        """Utilities ``(len(texts),)`` float32, differentiable; the caller picks
        train/eval mode and grad mode."""
        import torch

        device = self.device
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            hidden = self.encoder(**enc).last_hidden_state
        # Pooling and head in float32: the utilities feed a likelihood whose
        # differences of large scores bf16 would round away.
        hidden = hidden.float()
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return self.head(pooled).squeeze(-1)

    def _eval_scores(self, texts: list[str], batch_size: int) -> torch.Tensor:
        import torch

        self.encoder.eval()
        self.head.eval()
        autocast = _use_autocast(self.config, self.device)
        out = torch.empty(len(texts), dtype=torch.float32, device=self.device)
        # Similar lengths in a batch keep padding low; the stable sort keeps results
        # independent of the input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                out[torch.tensor(idx, device=self.device)] = self._forward([texts[i] for i in idx], autocast)
        return out

    def scores(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Utility of each text as a float64 array ``(len(texts),)`` in input order,
        computed ``batch_size`` texts at a time under ``torch.inference_mode`` (bf16
        autocast on CUDA when the config enables it)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        items = _check_texts(texts)
        if not items:
            return np.zeros(0, dtype=np.float64)
        return self._eval_scores(items, batch_size).double().cpu().numpy()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Detached CPU copies of all parameters and buffers, keys prefixed
        ``encoder.`` and ``head.``."""
        state = {f"encoder.{k}": v.detach().to("cpu", copy=True) for k, v in self.encoder.state_dict().items()}
        state.update({f"head.{k}": v.detach().to("cpu", copy=True) for k, v in self.head.state_dict().items()})
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore parameters from :meth:`state_dict` output (strict)."""
        enc = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        head = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
        self.encoder.load_state_dict(enc, strict=True)
        self.head.load_state_dict(head, strict=True)

    def save(self, path: str | Path) -> Path:
        """Write the model into directory ``path`` (created if needed) and return it.
        The encoder directory is written beside the target and renamed into place,
        the other files atomically, ``config.json`` last; use a fresh directory per
        model version so readers never pair a new encoder with an old head."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-encoder-", dir=directory))
        try:
            self.encoder.save_pretrained(str(staging))
            self.tokenizer.save_pretrained(str(staging))
            target = directory / ENCODER_DIR
            old: Path | None = None
            if target.exists():
                # rename() cannot replace a non-empty directory: move the old one aside.
                old = Path(tempfile.mkdtemp(prefix=".old-encoder-", dir=directory))
                os.replace(target, old / ENCODER_DIR)
            os.replace(staging, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

        write_tensors(directory / HEAD_FILE, self.head.state_dict(), FINETUNE_FORMAT_NAME)
        meta = {
            "format": FINETUNE_FORMAT_NAME,
            "format_version": FINETUNE_FORMAT_VERSION,
            "hidden_size": self.hidden_size,
            "config": dataclasses.asdict(self.config),
        }
        write_config(directory, meta)
        return directory

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> FinetunedRewardModel:
        """Load a model saved by :meth:`save` onto ``device`` (CPU by default, where
        scores match the saved model's exactly). Unknown config fields from newer
        writers are ignored; another format or a newer format version raises
        ``ValueError``, missing files ``FileNotFoundError``."""
        import torch
        from safetensors.torch import load_file

        directory = Path(path)
        meta, config = read_config(
            directory,
            format_name=FINETUNE_FORMAT_NAME,
            format_version=FINETUNE_FORMAT_VERSION,
            config_cls=FinetuneConfig,
            required=(HEAD_FILE, ENCODER_DIR),
            what="fine-tuned reward model",
        )
        encoder, tokenizer = _load_encoder(directory / ENCODER_DIR)
        hidden = int(encoder.config.hidden_size)
        if int(meta.get("hidden_size", hidden)) != hidden:
            raise ValueError(f"{directory} says hidden_size {meta['hidden_size']}, the encoder has {hidden}")
        head = torch.nn.Linear(hidden, 1)
        head.load_state_dict(load_file(str(directory / HEAD_FILE), device="cpu"), strict=True)
        target = pick_device(device)
        return cls(encoder.to(target), tokenizer, head.to(target), config)


@dataclass
class FinetuneResult:
    """Outcome of :func:`fit_finetuned`, shaped like
    :class:`models_runtime.reward.FitResult`: the fitted ``model``; ``metrics`` with
    ``heldout_accuracy``, ``heldout_ece``, ``heldout_log_loss``, ``train_log_loss``,
    ``n_train``, ``n_heldout``, ``epochs`` (run), ``best_epoch`` (kept; 0 is the
    starting point) and ``train_seconds``; and the ``device`` it trained on."""

    model: FinetunedRewardModel
    metrics: dict[str, float]
    device: str


def _param_groups(model: FinetunedRewardModel, config: FinetuneConfig) -> list[dict[str, Any]]:
    def split(module: nn.Module) -> tuple[list[Any], list[Any]]:
        decay, no_decay = [], []
        for name, p in module.named_parameters():
            # The usual transformer recipe: no decay on biases and normalisation gains.
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
        return decay, no_decay

    enc_decay, enc_plain = split(model.encoder)
    head_decay, head_plain = split(model.head)
    groups = [
        {"params": enc_decay, "lr": config.lr, "weight_decay": config.weight_decay},
        {"params": enc_plain, "lr": config.lr, "weight_decay": 0.0},
        {"params": head_decay, "lr": config.head_lr, "weight_decay": config.weight_decay},
        {"params": head_plain, "lr": config.head_lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def _batches(idx: np.ndarray, size: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    order = idx[np.random.default_rng((seed, epoch)).permutation(idx.size)]
    for start in range(0, order.size, size):
        # Sorted so the judgments' order inside a step depends only on which were drawn.
        yield np.sort(order[start : start + size])


def fit_finetuned(
    texts: Sequence[str],
    data: PreferenceData,
    config: FinetuneConfig = FinetuneConfig(),
    init_dir: str | Path | None = None,
) -> FinetuneResult:
    """Fine-tune encoder and head on the judgments in ``data``, whose item indices
    index ``texts``. Judgments are split into train and held-out parts exactly as in
    :func:`models_runtime.reward.fit_reward_model`; each step draws
    ``config.batch_judgments`` training judgments (reshuffled every epoch), encodes
    only the texts they reference and takes an AdamW step on their weighted mean NLL.
    After each epoch the held-out NLL decides early stopping and the best weights
    (epoch 0, the starting point, included) are restored; without a held-out split all
    epochs run and the last weights are kept. ``init_dir`` warm-starts from a
    directory written by :meth:`FinetunedRewardModel.save` (its encoder replaces
    ``config.model_path``). The head bias is shifted so training items score zero on
    average, which changes no prediction. Seeded and deterministic on CPU (CUDA
    kernels may not be). Raises ``TrainingDivergedError`` on a non-finite loss or
    gradient and ``ValueError`` on invalid inputs."""
    import torch

    from models_runtime.likelihood import PreferenceLikelihood

    started = time.perf_counter()
    items = _check_texts(texts)
    require_judgments(data, "a reward model")
    if data.max_item() >= len(items):
        raise ValueError(f"Judgments reference item index {data.max_item()}, but only {len(items)} texts were given")
    split = split_judgments(data, config)

    device = pick_device(config.device)
    fork_devices: list[int] = []
    if device.type == "cuda":
        fork_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    # fork_rng keeps the process-wide RNGs untouched: head init and dropout are seeded
    # for this fit without changing randomness anywhere else in the worker.
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(config.seed)
        if init_dir is not None:
            saved = FinetunedRewardModel.load(init_dir, device=str(device))
            model = FinetunedRewardModel(saved.encoder, saved.tokenizer, saved.head, config)
            log.debug("Warm-starting fine-tuned reward model from %s", init_dir)
        else:
            model = FinetunedRewardModel.from_pretrained(config, device=str(device))
        epochs, best_epoch = _train(model, items, data, split, device)
    train_seconds = time.perf_counter() - started

    scores = _centre(model, items, data, split)
    likelihood = PreferenceLikelihood(config.likelihood)
    metrics = fit_summary(likelihood, scores, data.to_tensors("cpu"), data, split)
    metrics.update(epochs=float(epochs), best_epoch=float(best_epoch), train_seconds=train_seconds)
    return FinetuneResult(model=model, metrics=metrics, device=str(device))


def _centre(model: FinetunedRewardModel, texts: list[str], data: PreferenceData, split: Split) -> torch.Tensor:
    """Shift the head bias so the training items score zero on average and return the
    utilities of all texts (float64, CPU; unjudged texts are not scored and stay zero).
    The bias cancels in every likelihood (score differences only, and the both-bad
    term is relative to the mean): centring it makes utilities comparable across
    fits."""
    import torch

    used = data.items()
    with torch.no_grad():
        s_used = model._eval_scores([texts[i] for i in used], 64).double().cpu()
        ensure_finite(s_used, "fitted model produces non-finite scores")
        train_pos = np.searchsorted(used, split.train_items(data))
        shift = float(s_used[torch.from_numpy(train_pos)].mean())
        model.head.bias.sub_(shift)
        return torch.zeros(len(texts), dtype=torch.float64).index_copy(0, torch.from_numpy(used), s_used - shift)


def _train(
    model: FinetunedRewardModel, texts: list[str], data: PreferenceData, split: Split, device: torch.device
) -> tuple[int, int]:
    """The optimisation loop of :func:`fit_finetuned`; returns (epochs run, epoch
    kept). Leaves the model in eval mode with the kept weights loaded."""
    config = model.config
    training = _FinetuneTraining(model, texts, data, split, device)
    if split.has_heldout:
        # The held-out NLL of mini-batch training is noisy, so only the absolute
        # threshold applies.
        stopping = EarlyStopping(config.patience, has_heldout=True, relative=False)
        best_state, epochs = run_epochs(
            max_epochs=config.epochs,
            stopping=stopping,
            evaluate=training.evaluate,
            step=training.step,
            snapshot=model.state_dict,
        )
        best_epoch = stopping.best_epoch
        if best_epoch != epochs:
            model.load_state_dict(best_state)
    else:
        # Nothing to monitor: every epoch runs and the last weights are kept.
        for epoch in range(1, config.epochs + 1):
            training.step(epoch, None)
        epochs = best_epoch = config.epochs
    model.encoder.eval()
    model.head.eval()
    return epochs, best_epoch


class _FinetuneTraining:
    """One fine-tuning run's state: the AdamW optimizer over encoder and head, and
    the weighted likelihood of any subset of judgments over ``texts``.
    :func:`run_epochs` drives it through :meth:`evaluate` and :meth:`step`."""

    def __init__(
        self, model: FinetunedRewardModel, texts: list[str], data: PreferenceData, split: Split, device: torch.device
    ) -> None:
        import torch

        from models_runtime.likelihood import PreferenceLikelihood

        config = model.config
        self.model = model
        self.texts = texts
        self.data = data
        self.split = split
        self.device = device
        self.config = config
        self.likelihood = PreferenceLikelihood(config.likelihood)
        self.autocast = _use_autocast(config, device)
        groups = _param_groups(model, config)
        self.params = [p for group in groups for p in group["params"]]
        self.optimizer = torch.optim.AdamW(groups)
        self.max_norm = config.grad_clip if config.grad_clip is not None else math.inf

    def _weighted_nll(self, s: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """Weighted mean NLL of judgments ``idx`` given the utilities ``s`` of the
        items they mention (in ``items()`` order)."""
        import torch

        part = self.data.select(idx)
        used = torch.from_numpy(part.items()).to(self.device)
        # Likelihood tensors index the full text list; only referenced slots are read.
        scores = s.new_zeros(len(self.texts)).index_copy(0, used, s)
        w = torch.from_numpy(np.ascontiguousarray(self.split.weight[idx])).to(self.device)
        return (self.likelihood(scores, part.to_tensors(self.device)) * w).sum() / w.sum()

    def _texts_of(self, idx: np.ndarray) -> list[str]:
        return [self.texts[i] for i in self.data.select(idx).items()]

    def evaluate(self, epoch: int) -> tuple[float, None]:
        """Held-out NLL of the current weights."""
        import torch

        hold = self.split.heldout
        with torch.no_grad():
            value = float(self._weighted_nll(self.model._eval_scores(self._texts_of(hold), 64), hold))
        if not math.isfinite(value):
            raise TrainingDivergedError(f"held-out loss became {value}")
        return value, None

    def step(self, epoch: int, _: None = None) -> None:
        """Train epoch number ``epoch`` (1-based): one AdamW step per mini-batch of
        training judgments with weight."""
        import torch

        self.model.encoder.train()
        self.model.head.train()
        weight = self.split.weight
        for batch in _batches(self.split.train, self.config.batch_judgments, self.config.seed, epoch):
            if float(weight[batch].sum()) <= 0.0:
                continue
            loss = self._weighted_nll(self.model._forward(self._texts_of(batch), self.autocast), batch)
            if not math.isfinite(float(loss.detach())):
                raise TrainingDivergedError(
                    f"training loss became {float(loss.detach())} at epoch {epoch}; try a smaller lr"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
            if not math.isfinite(float(norm)):
                raise TrainingDivergedError(f"gradient norm became {float(norm)} at epoch {epoch}; try a smaller lr")
            self.optimizer.step()
