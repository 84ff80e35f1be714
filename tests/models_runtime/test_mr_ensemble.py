"""Tests for models_runtime.ensemble: the anchored ensemble of reward heads."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models_runtime.ensemble import (
    ENSEMBLE_FORMAT_NAME,
    EnsembleConfig,
    EnsembleFitResult,
    EnsembleRewardModel,
    fit_ensemble,
)
from models_runtime.metrics import spearman_rho
from models_runtime.preferences import LikelihoodConfig, PreferenceData
from models_runtime.reward import TrainingDivergedError
from models_runtime.simulate import linear_utilities, simulate_pairs, simulate_rankings

# These tests use 16-d features, where a larger step than the default (chosen for
# 384-d sentence embeddings, see EnsembleConfig) converges within their budgets.
CFG = EnsembleConfig(n_members=4, max_epochs=150, device="cpu", lr=1e-2)
METRIC_KEYS = {
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
    "member_disagreement",
    "flip_rate",
    "train_seconds",
}


@pytest.fixture(scope="module", autouse=True)
def single_intra_op_thread() -> Iterator[None]:
    """Run this module's fits on one intra-op thread, restored afterwards.

    These tests check what a fit computes, not how fast. On a 2-core box shared with
    other processes, two OpenMP threads stall at the barrier of every parallel op
    while the other core is busy: a 0.1 s fit of these small problems was measured
    taking up to 7 s, and this module 135 s instead of 7 s. The thread count is a
    process-wide setting, so it is changed here, for tests only, not in the library.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def problem() -> tuple[np.ndarray, np.ndarray, PreferenceData]:
    rng = np.random.default_rng(0)
    features, utility = linear_utilities(200, 16, rng)
    return features, utility, simulate_pairs(utility, 2400, rng)


@pytest.fixture(scope="module")
def fitted(problem) -> EnsembleFitResult:
    features, _, data = problem
    return fit_ensemble(features, data, CFG)


def block_problem(seed: int = 3) -> tuple[np.ndarray, PreferenceData]:
    """Items 0-149 live in feature dims 0-7 and are judged; items 150-199 live only in
    dims 8-15 and never appear in a judgment, so the data say nothing about them."""
    rng = np.random.default_rng(seed)
    features = np.zeros((200, 16), np.float32)
    features[:150, :8] = rng.standard_normal((150, 8))
    features[150:, 8:] = rng.standard_normal((50, 8))
    utility = features @ rng.standard_normal(16)
    left = rng.integers(0, 150, 2000)
    right = (left + rng.integers(1, 150, 2000)) % 150
    outcome = (rng.random(2000) < 1.0 / (1.0 + np.exp(-(utility[left] - utility[right])))).astype(np.float32)
    return features, PreferenceData.from_pairs(left, right, outcome)


def test_fit_recovers_utilities_and_reports_metrics(problem, fitted) -> None:
    """The ensemble mean ranks items like the true utilities and the metrics are sane."""
    features, utility, _ = problem
    scores = fitted.model.scores(features)
    assert scores.dtype == np.float64 and scores.shape == (200,)
    assert spearman_rho(scores, utility) >= 0.9
    m = fitted.metrics
    assert set(m) == METRIC_KEYS
    assert m["n_train"] == 1920 and m["n_heldout"] == 480
    assert m["heldout_accuracy"] >= 0.72
    assert 0.0 < m["heldout_log_loss"] < 0.6
    assert 0.0 <= m["heldout_ece"] < 0.1
    assert 0.0 < m["train_log_loss"] < 0.6
    assert 1 <= m["epochs"] <= CFG.max_epochs
    assert m["member_disagreement"] == pytest.approx(fitted.model.spread(features).mean(), rel=1e-9)
    assert m["member_disagreement"] > 0.0
    assert m["train_seconds"] > 0.0
    assert fitted.device == "cpu"


def test_member_scores_mean_and_spread(problem, fitted) -> None:
    """member_scores is (M, N) float64; scores is its mean and spread its population std."""
    features, _, _ = problem
    model = fitted.model
    members = model.member_scores(features)
    assert members.shape == (4, 200) and members.dtype == np.float64
    assert model.n_members == 4
    np.testing.assert_allclose(model.scores(features), members.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.spread(features), members.std(axis=0), rtol=0, atol=1e-12)
    # Each member is centred over its training items (here: all items).
    np.testing.assert_allclose(members.mean(axis=1), 0.0, atol=1e-4)
    with pytest.raises(ValueError):
        model.member_scores(features[:, :8])


def test_sample_scores_is_one_members_row(problem, fitted) -> None:
    """sample_scores evaluates exactly the member that sample_member draws with the same rng."""
    features, _, _ = problem
    model = fitted.model
    members = model.member_scores(features)
    for seed in range(6):
        member = model.sample_member(np.random.default_rng(seed))
        sample = model.sample_scores(features, np.random.default_rng(seed))
        assert sample.shape == (200,) and sample.dtype == np.float64
        np.testing.assert_allclose(sample, members[member], rtol=1e-5, atol=1e-5)
        distances = np.abs(members - sample).max(axis=1)
        assert int(np.argmin(distances)) == member
        assert np.delete(distances, member).min() > 1e-2


def test_sample_member_is_seeded_and_covers_all_members(fitted) -> None:
    model = fitted.model
    draws = [model.sample_member(np.random.default_rng(11)) for _ in range(3)]
    assert len(set(draws)) == 1
    rng = np.random.default_rng(0)
    counts = np.bincount([model.sample_member(rng) for _ in range(2000)], minlength=model.n_members)
    assert counts.shape == (4,)
    assert counts.min() > 400 and counts.max() < 600


def test_members_differ(problem, fitted) -> None:
    """Members are not collapsed: every pair of members disagrees noticeably somewhere."""
    features, _, _ = problem
    members = fitted.model.member_scores(features)
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(members[i] - members[j]).mean() > 0.05


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_unjudged_items_have_larger_spread(head: str) -> None:
    """Epistemic uncertainty: items in a feature subspace no judgment touches keep the
    prior's disagreement, well-judged items lose most of it."""
    features, data = block_problem()
    model = fit_ensemble(features, data, dataclasses.replace(CFG, head=head)).model
    spread = model.spread(features)
    # Early stopping leaves MLP members less converged on judged items than linear ones.
    factor = {"linear": 3.0, "mlp": 1.5}[head]
    assert np.median(spread[150:]) > factor * np.median(spread[:150])
    assert np.median(spread[150:]) > 0.5


def test_spread_shrinks_with_more_judgments() -> None:
    rng = np.random.default_rng(5)
    features, utility = linear_utilities(200, 16, rng)
    few = simulate_pairs(utility, 200, np.random.default_rng(1))
    many = simulate_pairs(utility, 2400, np.random.default_rng(2))
    spread_few = fit_ensemble(features, few, CFG).model.spread(features).mean()
    spread_many = fit_ensemble(features, many, CFG).model.spread(features).mean()
    assert spread_many < 0.75 * spread_few


def test_anchor_pulls_members_towards_their_initialisation() -> None:
    """With a strong anchor each member's weights stay near its own random draw, and
    members keep disagreeing where the data are silent; without one they drift further."""
    features, data = block_problem()
    cfg = dataclasses.replace(CFG, holdout_fraction=0.0, max_epochs=60, patience=1000, bootstrap=False)

    def drift(result: EnsembleFitResult) -> float:
        state = result.model.state_dict()
        return sum(float((state[n] - state[f"anchor_{n}"]).pow(2).sum()) for n in ("w1", "b1", "w2"))

    free = fit_ensemble(features, data, dataclasses.replace(cfg, anchor_strength=0.0))
    anchored = fit_ensemble(features, data, dataclasses.replace(cfg, anchor_strength=1.0))
    assert free.metrics["epochs"] == anchored.metrics["epochs"] == 60
    assert drift(anchored) < 0.5 * drift(free)
    # Even without bootstrap, members fitted to identical data stay apart on the
    # unjudged block because each is anchored to a different draw.
    spread = anchored.model.spread(features)
    assert np.median(spread[150:]) > 0.5
    assert np.median(spread[150:]) > 3.0 * np.median(spread[:150])


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_rankings_with_plackett_luce(head: str) -> None:
    rng = np.random.default_rng(7)
    features, utility = linear_utilities(200, 16, rng)
    data = simulate_rankings(utility, 600, 4, rng)
    result = fit_ensemble(features, data, dataclasses.replace(CFG, head=head))
    assert spearman_rho(result.model.scores(features), utility) >= 0.85
    # No held-out pairs: accuracy and ECE are undefined, the held-out NLL is not.
    assert math.isnan(result.metrics["heldout_accuracy"]) and math.isnan(result.metrics["heldout_ece"])
    assert math.isfinite(result.metrics["heldout_log_loss"]) and result.metrics["n_heldout"] == 120


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_mixed_pairs_and_rankings_with_rao_kupper_ties_and_label_flips(head: str) -> None:
    rng = np.random.default_rng(8)
    features, utility = linear_utilities(200, 16, rng)
    pairs = simulate_pairs(utility, 1600, rng, tie_param=0.5, label_flip_rate=0.05)
    assert 0.0 < pairs.tie_rate() < 0.5
    data = PreferenceData.combine(pairs, simulate_rankings(utility, 300, 4, rng))
    lik = LikelihoodConfig(ties="rao_kupper", label_flip_rate=0.05)
    result = fit_ensemble(features, data, dataclasses.replace(CFG, head=head, likelihood=lik))
    assert spearman_rho(result.model.scores(features), utility) >= 0.85
    m = result.metrics
    assert m["n_train"] + m["n_heldout"] == len(data) == 1900
    for key in ("heldout_accuracy", "heldout_log_loss", "heldout_ece", "train_log_loss"):
        assert math.isfinite(m[key]), key
    assert m["heldout_accuracy"] >= 0.65


def test_confident_fit_under_rao_kupper_does_not_diverge(problem) -> None:
    features, _, data = problem
    lik = LikelihoodConfig(ties="rao_kupper", tie_param=1.5, label_flip_rate=0.1)
    result = fit_ensemble(features, data, dataclasses.replace(CFG, prior_scale=0.3, likelihood=lik, max_epochs=40))
    assert math.isfinite(result.metrics["heldout_log_loss"])


def test_prior_network_without_bootstrap_fits(problem) -> None:
    features, utility, data = problem
    cfg = dataclasses.replace(CFG, prior_scale=0.5, bootstrap=False, anchor_strength=1.0)
    result = fit_ensemble(features, data, cfg)
    assert "prior_w1" in result.model.state_dict()
    assert spearman_rho(result.model.scores(features), utility) >= 0.9
    assert result.metrics["member_disagreement"] > 0.05


def test_warm_start_is_at_least_as_good(problem, fitted) -> None:
    features, _, data = problem
    state = fitted.model.state_dict()
    warm = fit_ensemble(features, data, CFG, init_state=state)
    # Early stopping watches the member-averaged NLL while this metric scores the
    # ensemble-mean probability, so a warm start may trade a little of the latter.
    assert warm.metrics["heldout_log_loss"] <= fitted.metrics["heldout_log_loss"] + 5e-3
    # A warm start begins at the previous optimum, so it stops after about `patience`
    # epochs instead of training from scratch.
    assert warm.metrics["epochs"] <= fitted.metrics["epochs"]
    # The anchors (each member's prior) are carried over, not redrawn.
    warm_state = warm.model.state_dict()
    for name in ("anchor_w1", "anchor_b1", "anchor_w2", "input_mean", "input_scale"):
        assert np.array_equal(warm_state[name].numpy(), state[name].numpy()), name


def test_mismatched_init_state_is_ignored(problem) -> None:
    features, _, data = problem
    cfg = dataclasses.replace(CFG, max_epochs=30)
    fresh = fit_ensemble(features, data, cfg).model.member_scores(features)
    linear_state = fit_ensemble(features, data, dataclasses.replace(cfg, head="linear")).model.state_dict()
    more_members = fit_ensemble(features, data, dataclasses.replace(cfg, n_members=5)).model.state_dict()
    poisoned = fit_ensemble(features, data, cfg).model.state_dict()
    poisoned["w2"][0, 0] = float("nan")
    for state in (linear_state, more_members, poisoned):
        ignored = fit_ensemble(features, data, cfg, init_state=state).model.member_scores(features)
        assert np.array_equal(fresh, ignored)


def test_save_load_round_trip(problem, tmp_path: Path) -> None:
    features, _, data = problem
    lik = LikelihoodConfig(tie_param=0.7, label_flip_rate=0.1, listwise="pairwise_split", both_bad_weight=0.5)
    cfg = dataclasses.replace(CFG, prior_scale=0.3, likelihood=lik, max_epochs=20)
    model = fit_ensemble(features, data, cfg).model
    out = model.save(tmp_path / "ens-v1")
    assert out == tmp_path / "ens-v1"
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    loaded = EnsembleRewardModel.load(out)
    assert loaded.config == model.config
    assert isinstance(loaded.config.likelihood, LikelihoodConfig) and loaded.config.likelihood == lik
    assert loaded.input_dim == 16 and loaded.n_members == 4
    assert np.array_equal(loaded.member_scores(features), model.member_scores(features))
    assert set(loaded.state_dict()) == set(model.state_dict())


def test_load_rejects_wrong_directories(problem, fitted, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        EnsembleRewardModel.load(tmp_path / "missing")
    out = fitted.model.save(tmp_path / "ens")
    meta = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert meta["format"] == ENSEMBLE_FORMAT_NAME
    (out / "config.json").write_text(json.dumps({**meta, "format": "prefloop-reward-model"}), encoding="utf-8")
    with pytest.raises(ValueError):
        EnsembleRewardModel.load(out)
    (out / "config.json").write_text(json.dumps({**meta, "format_version": 99}), encoding="utf-8")
    with pytest.raises(ValueError):
        EnsembleRewardModel.load(out)
    (out / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError):
        EnsembleRewardModel.load(out)


def test_fit_is_deterministic_per_seed(problem, fitted) -> None:
    features, _, data = problem
    again = fit_ensemble(features, data, CFG)
    assert np.array_equal(again.model.member_scores(features), fitted.model.member_scores(features))
    assert again.metrics["epochs"] == fitted.metrics["epochs"]
    other = fit_ensemble(features, data, dataclasses.replace(CFG, seed=1))
    assert not np.array_equal(other.model.member_scores(features), fitted.model.member_scores(features))


def test_nan_features_of_judged_items_raise(problem) -> None:
    features, _, data = problem
    bad = features.copy()
    bad[int(data.pair_left[0]), 3] = np.nan
    with pytest.raises(TrainingDivergedError, match="NaN"):
        fit_ensemble(bad, data, CFG)


def test_nan_features_of_unjudged_items_are_tolerated(problem) -> None:
    features, _, data = problem
    subset = data.select(np.flatnonzero((data.pair_left != 0) & (data.pair_right != 0)))
    bad = features.copy()
    bad[0] = np.nan
    result = fit_ensemble(bad, subset, dataclasses.replace(CFG, max_epochs=20))
    scores = result.model.scores(bad)
    assert np.isnan(scores[0]) and np.isfinite(scores[1:]).all()
    assert math.isfinite(result.metrics["member_disagreement"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_members": 0},
        {"head": "transformer"},
        {"hidden": 0},
        {"anchor_strength": -1.0},
        {"prior_scale": float("nan")},
        {"lr": 0.0},
        {"max_epochs": 0},
        {"patience": 0},
        {"holdout_fraction": 1.0},
        {"min_holdout": 0},
    ],
)
def test_invalid_config_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        EnsembleConfig(**kwargs)


def test_invalid_inputs_raise(problem) -> None:
    features, _, data = problem
    with pytest.raises(ValueError):
        fit_ensemble(features, PreferenceData.empty(), CFG)
    with pytest.raises(ValueError):
        fit_ensemble(features[:10], data, CFG)  # judgments index rows that do not exist
    with pytest.raises(ValueError):
        fit_ensemble(features[0], data, CFG)  # not a 2-D matrix
    zero_weight = PreferenceData.from_pairs([0, 1], [1, 2], weight=[0.0, 0.0])
    with pytest.raises(ValueError):
        fit_ensemble(features, zero_weight, CFG)


def test_on_384_d_standardised_features_the_default_step_trains_past_the_start() -> None:
    """On 384-d unit-norm features (MiniLM's shape), standardised inputs make every
    coordinate ~1, so the single head's step size (1e-2) overshoots at once: on real
    HH-RLHF embeddings the held-out NLL rose from the first step and early stopping
    kept the untrained weights. The default step keeps improving for several epochs
    and learns the utility."""
    rng = np.random.default_rng(1)
    features, utility = linear_utilities(400, 384, rng, scale=1.0)
    data = simulate_pairs(utility, 800, rng)
    result = fit_ensemble(features, data, EnsembleConfig(n_members=4, device="cpu", seed=1))
    assert result.metrics["best_epoch"] >= 4
    assert spearman_rho(result.model.scores(features), utility) >= 0.5
