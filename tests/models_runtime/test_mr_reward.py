"""Tests for models_runtime.reward, models_runtime.metrics and device selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models_runtime.device import pick_device
from models_runtime.metrics import log_loss, pairwise_accuracy
from models_runtime.preferences import PreferenceData
from models_runtime.reward import (
    RewardModel,
    RewardModelConfig,
    TrainingDivergedError,
    fit_reward_model,
)

CPU = RewardModelConfig(device="cpu")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def make_problem(
    n_items: int = 300, dim: int = 16, n_pairs: int = 3000, seed: int = 1
) -> tuple[np.ndarray, np.ndarray, PreferenceData]:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n_items, dim)).astype(np.float32)
    w = rng.standard_normal(dim)
    utility = features @ (2.0 * w / np.linalg.norm(w))
    left = rng.integers(0, n_items, n_pairs)
    right = (left + rng.integers(1, n_items, n_pairs)) % n_items
    p = 1.0 / (1.0 + np.exp(-(utility[left] - utility[right])))
    outcome = (rng.random(n_pairs) < p).astype(np.float32)
    return features, utility, PreferenceData.from_pairs(left, right, outcome)


@pytest.fixture(scope="module")
def problem() -> tuple[np.ndarray, np.ndarray, PreferenceData]:
    return make_problem()


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_recovers_known_utilities(problem, head: str) -> None:
    features, utility, data = problem
    result = fit_reward_model(features, data, RewardModelConfig(head=head, device="cpu"))
    scores = result.model.scores(features)
    assert scores.dtype == np.float64 and scores.shape == (features.shape[0],)
    assert np.isfinite(scores).all()
    assert spearman(scores, utility) >= 0.9
    m = result.metrics
    assert set(m) == {
        "heldout_accuracy",
        "heldout_log_loss",
        "heldout_ece",
        "train_log_loss",
        "n_train",
        "n_heldout",
        "epochs",
        "best_epoch",
        "start_loss",
        "best_trained_loss",
        "monitored_heldout",
        "flip_rate",
        "train_seconds",
    }
    assert m["n_heldout"] == 600 and m["n_train"] == 2400
    # Early stopping kept a trained epoch, which beat the starting point on the held-out NLL.
    assert 1 <= m["best_epoch"] <= m["epochs"] and m["monitored_heldout"] == 1.0
    assert m["best_trained_loss"] < m["start_loss"]
    assert m["heldout_accuracy"] >= 0.72
    assert m["heldout_log_loss"] < 0.6
    assert 0.0 <= m["heldout_ece"] < 0.1
    assert 1 <= m["epochs"] <= 300
    assert result.device == "cpu"
    # scores are centred over training items
    assert abs(scores.mean()) < 0.5


def test_prob_left_matches_scores(problem) -> None:
    features, _, data = problem
    model = fit_reward_model(features, data, CPU).model
    s = model.scores(features)
    p = model.prob_left(features, data.pair_left[:100], data.pair_right[:100])
    expected = 1.0 / (1.0 + np.exp(-(s[data.pair_left[:100]] - s[data.pair_right[:100]])))
    np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        model.prob_left(features, data.pair_right[:100], data.pair_left[:100]), 1.0 - p, atol=1e-6
    )


def test_deterministic_with_same_seed(problem) -> None:
    features, _, data = problem
    a = fit_reward_model(features, data, CPU)
    b = fit_reward_model(features, data, CPU)
    np.testing.assert_array_equal(a.model.scores(features), b.model.scores(features))
    assert a.metrics["epochs"] == b.metrics["epochs"]
    c = fit_reward_model(features, data, RewardModelConfig(seed=7, device="cpu"))
    assert not np.array_equal(a.model.scores(features), c.model.scores(features))


def test_save_load_round_trip(problem, tmp_path: Path) -> None:
    features, _, data = problem
    model = fit_reward_model(features, data, CPU).model
    out = model.save(tmp_path / "rm-v1")
    assert out == tmp_path / "rm-v1"
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    loaded = RewardModel.load(out)
    assert loaded.config == model.config
    assert loaded.input_dim == model.input_dim
    assert np.array_equal(loaded.scores(features), model.scores(features))
    with pytest.raises(FileNotFoundError):
        RewardModel.load(tmp_path / "missing")


def test_warm_start_converges_faster(problem) -> None:
    features, _, data = problem
    cold = fit_reward_model(features, data, CPU)
    warm = fit_reward_model(features, data, CPU, init_state=cold.model.state_dict())
    assert warm.metrics["epochs"] < cold.metrics["epochs"]
    assert warm.metrics["heldout_log_loss"] <= cold.metrics["heldout_log_loss"] + 1e-3


def test_mismatched_init_state_is_ignored(problem) -> None:
    features, _, data = problem
    linear = fit_reward_model(features, data, RewardModelConfig(head="linear", device="cpu"))
    fresh = fit_reward_model(features, data, CPU)
    ignored = fit_reward_model(features, data, CPU, init_state=linear.model.state_dict())
    np.testing.assert_array_equal(fresh.model.scores(features), ignored.model.scores(features))


def test_nan_features_raise(problem) -> None:
    features, _, data = problem
    bad = features.copy()
    bad[data.pair_left[0], 3] = np.nan
    with pytest.raises(TrainingDivergedError, match="NaN"):
        fit_reward_model(bad, data, CPU)


def test_divergence_raises(problem) -> None:
    features, _, data = problem
    huge = features * 1e30
    with pytest.raises(TrainingDivergedError):
        fit_reward_model(huge, data, RewardModelConfig(head="linear", lr=1e30, device="cpu"))


def test_cuda_fit_matches_cpu(problem) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    features, _, data = problem
    cfg = RewardModelConfig(head="linear", max_epochs=100, device="cuda")
    gpu = fit_reward_model(features, data, cfg)
    cpu = fit_reward_model(features, data, RewardModelConfig(head="linear", max_epochs=100, device="cpu"))
    assert gpu.device.startswith("cuda")
    np.testing.assert_allclose(gpu.model.scores(features), cpu.model.scores(features), atol=1e-3)


def test_small_data_has_no_holdout() -> None:
    features = np.eye(4, dtype=np.float32)
    data = PreferenceData.from_pairs([0, 1, 2, 0], [1, 2, 3, 3], [1.0, 1.0, 0.5, 1.0])
    result = fit_reward_model(features, data, RewardModelConfig(max_epochs=50, device="cpu"))
    assert math.isnan(result.metrics["heldout_accuracy"])
    assert math.isnan(result.metrics["heldout_log_loss"])
    assert result.metrics["n_heldout"] == 0 and result.metrics["n_train"] == 4
    assert math.isfinite(result.metrics["train_log_loss"])
    s = result.model.scores(features)
    assert s[0] > s[3]


def test_weights_are_used() -> None:
    features = np.eye(2, dtype=np.float32)
    # conflicting judgments: the heavily weighted one must win
    data = PreferenceData.from_pairs([0, 0], [1, 1], [1.0, 0.0], weight=[5.0, 1.0])
    model = fit_reward_model(features, data, RewardModelConfig(head="linear", device="cpu")).model
    s = model.scores(features)
    assert s[0] > s[1]


def test_fit_rejects_bad_inputs(problem) -> None:
    features, _, data = problem
    with pytest.raises(ValueError):
        fit_reward_model(features[:10], data, CPU)  # indices out of range
    with pytest.raises(ValueError):
        fit_reward_model(features, PreferenceData.empty(), CPU)
    with pytest.raises(ValueError):
        RewardModelConfig(head="transformer")
    with pytest.raises(ValueError):
        RewardModelConfig(holdout_fraction=1.0)


def test_metrics() -> None:
    p = np.array([0.9, 0.2, 0.7, 0.5])
    y = np.array([1.0, 0.0, 0.0, 0.5])
    assert pairwise_accuracy(p, y) == pytest.approx(2 / 3)
    assert math.isnan(pairwise_accuracy(p[3:], y[3:]))
    assert log_loss(np.array([0.5]), np.array([1.0])) == pytest.approx(math.log(2))
    assert math.isfinite(log_loss(np.array([0.0]), np.array([1.0])))
    assert math.isnan(log_loss(np.array([]), np.array([])))
    with pytest.raises(ValueError):
        log_loss(np.array([0.5, 0.5]), np.array([1.0]))


def test_pick_device() -> None:
    import torch

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        pick_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda:1")
