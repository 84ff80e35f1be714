"""Tests for models_runtime.finetune (no Django): full fine-tuning of the packaged
all-MiniLM-L6-v2 encoder with a scalar head on a tiny keyword-preference task, on CPU.

One fit is shared by the module; the other fits use a handful of judgments and one or
two optimiser steps, so the whole file stays fast on a small CI machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import models_runtime
from models_runtime.finetune import (
    FINETUNE_FORMAT_NAME,
    FinetuneConfig,
    FinetunedRewardModel,
    FinetuneResult,
    TrainingDivergedError,
    fit_finetuned,
)
from models_runtime.preferences import LikelihoodConfig, PreferenceData

# Texts about cats are preferred over everything else. Training judgments only compare
# the first six of each group; the last two of each are never judged.
CATS = [
    "My cat sleeps on the warm sofa.",
    "The cat chased a red ball.",
    "A cat purrs when it is happy.",
    "Our cat watches birds from the window.",
    "The kitten and the cat play together.",
    "That cat loves fresh tuna.",
    "A grey cat naps in the sun.",
    "The cat jumped onto the table.",
]
OTHER = [
    "The train was late this morning.",
    "Taxes are due at the end of April.",
    "He repaired the broken bicycle.",
    "The meeting moved to Thursday.",
    "Rain is expected over the weekend.",
    "She planted tomatoes in the garden.",
    "The printer is out of paper.",
    "We bought new shoes yesterday.",
]
TEXTS = CATS[:6] + OTHER[:6]
UNSEEN_CATS, UNSEEN_OTHER = CATS[6:], OTHER[6:]

# Small enough to fine-tune in a few seconds on two CPU cores, with learning rates high
# enough that two epochs over 48 judgments separate the groups clearly.
TINY = FinetuneConfig(max_length=32, epochs=2, batch_judgments=16, lr=1e-4, head_lr=1e-2, device="cpu")


def keyword_judgments(n: int = 60, seed: int = 0) -> PreferenceData:
    """``n`` pairs of one cat text against one other text, sides randomised, the cat
    text always preferred."""
    rng = np.random.default_rng(seed)
    cat = rng.integers(0, 6, n)
    other = rng.integers(6, 12, n)
    cat_left = rng.random(n) < 0.5
    left = np.where(cat_left, cat, other)
    right = np.where(cat_left, other, cat)
    return PreferenceData.from_pairs(left, right, cat_left.astype(np.float32))


@pytest.fixture(scope="module")
def fitted() -> FinetuneResult:
    return fit_finetuned(TEXTS, keyword_judgments(), TINY)


def separation(scores: np.ndarray, n_preferred: int) -> float:
    """Lowest preferred score minus highest other score: positive iff every preferred
    text is ranked above every other one."""
    return float(scores[:n_preferred].min() - scores[n_preferred:].max())


def test_finetuning_learns_the_keyword_preference(fitted: FinetuneResult) -> None:
    """The fitted model predicts held-out judgments, ranks every cat text above every
    other text (also texts no judgment mentioned) and separates the groups far more
    than the same encoder with an untrained head."""
    m = fitted.metrics
    assert fitted.device == "cpu"
    assert (m["n_train"], m["n_heldout"]) == (48.0, 12.0)
    assert 1.0 <= m["epochs"] <= 2.0
    assert m["heldout_accuracy"] >= 0.9
    assert m["heldout_log_loss"] < 0.45  # log 2 ≈ 0.69 is a coin flip
    assert m["train_log_loss"] < 0.45
    assert 0.0 <= m["heldout_ece"] <= 1.0
    assert m["train_seconds"] > 0.0

    trained = fitted.model.scores(TEXTS)
    unseen = fitted.model.scores(UNSEEN_CATS + UNSEEN_OTHER)
    assert trained.dtype == np.float64 and trained.shape == (12,)
    assert separation(trained, 6) > 0.5
    assert separation(unseen, 2) > 0.2
    # The head bias is centred so training items average zero.
    assert abs(trained.mean()) < 1e-4

    baseline = FinetunedRewardModel.from_pretrained(TINY).scores(TEXTS)
    gap = trained[:6].mean() - trained[6:].mean()
    base_gap = baseline[:6].mean() - baseline[6:].mean()
    assert gap > 1.0
    assert gap > 10 * abs(base_gap)


def test_scores_are_batch_and_order_independent(fitted: FinetuneResult) -> None:
    """Scores do not depend on input order or scoring batch size (beyond float
    noise), and an empty input gives an empty array."""
    model = fitted.model
    texts = TEXTS + UNSEEN_CATS
    full = model.scores(texts)
    reversed_scores = model.scores(texts[::-1], batch_size=3)[::-1]
    np.testing.assert_allclose(reversed_scores, full, atol=1e-5)
    assert model.scores([]).shape == (0,)
    with pytest.raises(TypeError):
        model.scores("a single string")


def test_save_and_load_reproduce_scores_exactly(fitted: FinetuneResult, tmp_path: Path) -> None:
    """save() writes encoder, tokenizer, head and config; load() on the CPU gives
    bit-identical scores, also after saving over an existing model directory."""
    target = tmp_path / "v1"
    fitted.model.save(target)
    fitted.model.save(target)  # replacing an existing encoder directory must work
    assert (target / "encoder" / "model.safetensors").is_file()
    assert (target / "encoder" / "tokenizer.json").is_file() or (target / "encoder" / "vocab.txt").is_file()
    assert (target / "head.safetensors").is_file()
    assert not [p.name for p in target.iterdir() if p.name.startswith(".")], "temporary files left behind"
    meta = json.loads((target / "config.json").read_text())
    assert meta["format"] == FINETUNE_FORMAT_NAME
    assert meta["format_version"] == 1
    assert meta["hidden_size"] == 384
    assert meta["config"]["lr"] == TINY.lr
    assert meta["config"]["likelihood"]["ties"] == "davidson"

    loaded = FinetunedRewardModel.load(target)
    texts = TEXTS + UNSEEN_CATS + UNSEEN_OTHER
    assert np.array_equal(loaded.scores(texts), fitted.model.scores(texts))
    assert loaded.config == TINY


def test_load_rejects_other_formats(fitted: FinetuneResult, tmp_path: Path) -> None:
    """Directories that are not fine-tuned models, or come from a newer writer, fail
    loudly instead of loading something else."""
    with pytest.raises(FileNotFoundError):
        FinetunedRewardModel.load(tmp_path / "missing")
    target = fitted.model.save(tmp_path / "m")
    meta = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**meta, "format": "prefloop-bradley-terry"}))
    with pytest.raises(ValueError, match="not a prefloop-finetuned-reward"):
        FinetunedRewardModel.load(target)
    (target / "config.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        FinetunedRewardModel.load(target)


def test_fit_is_deterministic_and_leaves_global_rng_alone() -> None:
    """Two fits with the same seed give identical scores on the CPU, and fitting does
    not advance the caller's torch RNG."""
    data = keyword_judgments(n=16, seed=1)
    config = FinetuneConfig(max_length=16, epochs=1, batch_judgments=8, lr=1e-4, head_lr=1e-2, device="cpu")
    before = torch.random.get_rng_state()
    first = fit_finetuned(TEXTS, data, config)
    assert torch.equal(torch.random.get_rng_state(), before)
    second = fit_finetuned(TEXTS, data, config)
    assert first.metrics["n_heldout"] == 0.0  # 16 judgments are too few to hold any out
    assert np.array_equal(first.model.scores(TEXTS), second.model.scores(TEXTS))


def test_warm_start_continues_from_saved_model(fitted: FinetuneResult, tmp_path: Path) -> None:
    """init_dir starts from the saved encoder and head: with a negligible learning
    rate the result scores like the saved model, not like the base encoder."""
    saved = fitted.model.save(tmp_path / "v1")
    config = FinetuneConfig(max_length=32, epochs=1, batch_judgments=16, lr=1e-12, head_lr=1e-12, device="cpu")
    result = fit_finetuned(TEXTS, keyword_judgments(n=16, seed=2), config, init_dir=saved)
    before, after = fitted.model.scores(TEXTS), result.model.scores(TEXTS)
    # Equal up to the bias re-centring (a constant shift) and one tiny step.
    np.testing.assert_allclose(after - after.mean(), before - before.mean(), atol=1e-4)
    assert separation(after, 6) > 0.5
    assert result.model.config == config


def test_divergence_raises() -> None:
    """An absurd learning rate makes the loss non-finite, which raises
    TrainingDivergedError instead of returning a broken model."""
    config = FinetuneConfig(max_length=8, epochs=1, batch_judgments=8, lr=1e30, head_lr=1e30, device="cpu")
    with pytest.raises(TrainingDivergedError, match=r"non-finite|nan|inf"):
        fit_finetuned(TEXTS, keyword_judgments(n=16, seed=3), config)


def test_fit_rejects_bad_inputs() -> None:
    """Judgments must index the given texts, and there must be some."""
    with pytest.raises(ValueError, match="only 2 texts"):
        fit_finetuned(TEXTS[:2], keyword_judgments(n=8), TINY)
    with pytest.raises(ValueError, match="without any judgments"):
        fit_finetuned(TEXTS, PreferenceData.empty(), TINY)
    with pytest.raises(TypeError):
        fit_finetuned("not a list", keyword_judgments(n=8), TINY)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_length": 0}, "max_length"),
        ({"lr": 0.0}, "lr"),
        ({"head_lr": float("nan")}, "head_lr"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"epochs": 0}, "epochs"),
        ({"batch_judgments": 0}, "batch_judgments"),
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
        ({"min_holdout": 0}, "min_holdout"),
        ({"patience": 0}, "patience"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"likelihood": {"ties": "nonsense"}}, "ties"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    """Invalid hyper-parameters fail at construction, naming the field."""
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**kwargs)


def test_config_accepts_likelihood_dict_and_no_clipping() -> None:
    """The nested likelihood config round-trips through its dict form (as in
    config.json), and grad_clip=None turns clipping off."""
    config = FinetuneConfig(likelihood={"ties": "rao_kupper", "label_flip_rate": 0.1}, grad_clip=None)
    assert config.likelihood == LikelihoodConfig(ties="rao_kupper", label_flip_rate=0.1)
    assert config.grad_clip is None
    assert FinetuneConfig().resolved_model_path().joinpath("config.json").is_file()


def test_import_is_light() -> None:
    """Importing models_runtime.finetune pulls in neither torch nor transformers."""
    root = Path(models_runtime.__file__).resolve().parent.parent
    code = (
        "import sys\n"
        "import models_runtime.finetune\n"
        "print(','.join(m for m in ('django', 'torch', 'transformers', 'safetensors') if m in sys.modules))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"heavy modules imported eagerly: {proc.stdout}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_finetune_on_cuda_with_bf16(tmp_path: Path) -> None:
    """On a GPU the fit runs under bf16 autocast, learns the task and saves a model
    that scores the same on the CPU (up to bf16 rounding)."""
    config = FinetuneConfig(max_length=32, epochs=3, batch_judgments=16, lr=1e-4, head_lr=1e-2, device="cuda")
    result = fit_finetuned(TEXTS, keyword_judgments(), config)
    assert result.device.startswith("cuda")
    assert result.metrics["heldout_accuracy"] >= 0.9
    scores = result.model.scores(TEXTS)
    assert separation(scores, 6) > 0.3
    loaded = FinetunedRewardModel.load(result.model.save(tmp_path / "gpu"), device="cpu")
    np.testing.assert_allclose(loaded.scores(TEXTS), scores, atol=0.1)
