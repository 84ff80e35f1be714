"""Tests for models_runtime.training, the core every reward-model fit shares: input
checks, the held-out split, early stopping, the divergence guard and the metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from models_runtime import finetune, reward
from models_runtime.likelihood import PreferenceLikelihood
from models_runtime.preferences import LikelihoodConfig, PreferenceData
from models_runtime.reward import RewardModelConfig, fit_reward_model
from models_runtime.training import (
    EarlyStopping,
    TrainingDivergedError,
    capped_epochs,
    check_training_fields,
    ensure_finite,
    fit_summary,
    judged_features,
    run_epochs,
    split_judgments,
)


@dataclass(frozen=True)
class SplitConfig:
    holdout_fraction: float = 0.2
    min_holdout: int = 5
    seed: int = 0


def chain(n: int, weight: Any = None) -> PreferenceData:
    """``n`` pairs over ``n + 1`` items: item i beats item i + 1."""
    return PreferenceData.from_pairs(np.arange(n), np.arange(1, n + 1), weight=weight)


# --- inputs ----------------------------------------------------------------------------


def test_judged_features_are_the_rows_some_judgment_mentions() -> None:
    features = np.arange(12, dtype=np.float64).reshape(6, 2)
    data = PreferenceData.from_pairs([4, 1], [1, 2])
    judged = judged_features(features, data, what="a reward model")
    assert judged.matrix.dtype == np.float32 and judged.dim == 2
    assert judged.items.tolist() == [1, 2, 4]
    np.testing.assert_array_equal(judged.rows, features[[1, 2, 4]].astype(np.float32))


def test_no_judgments_are_refused_naming_the_model() -> None:
    with pytest.raises(ValueError, match=r"^Cannot fit an ensemble without any judgments$"):
        judged_features(np.ones((3, 2), np.float32), PreferenceData.empty(), what="an ensemble")


def test_features_without_columns_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^features must have at least one column$"):
        judged_features(np.ones((3, 0), np.float32), chain(2), what="a reward model")


def test_judgments_beyond_the_feature_rows_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^Judgments reference item index >= 3, the number of feature rows$"):
        judged_features(np.ones((3, 2), np.float32), chain(3), what="a reward model")


def test_non_finite_judged_rows_raise_but_unjudged_rows_may_be_anything() -> None:
    features = np.ones((5, 2), np.float32)
    features[4] = np.nan  # never judged: fine
    assert judged_features(features, chain(2), what="a reward model").items.tolist() == [0, 1, 2]
    features[1, 0] = np.inf
    with pytest.raises(TrainingDivergedError, match=r"in 1 judged item row\(s\) \(e\.g\. row 1\); refusing to train"):
        judged_features(features, chain(2), what="a reward model")


def test_training_judgments_without_weight_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^Training judgments have zero total weight$"):
        split_judgments(chain(3, weight=[0.0, 0.0, 0.0]), SplitConfig())


# --- the split -------------------------------------------------------------------------


def test_split_holds_out_the_configured_share_sorted_and_seeded() -> None:
    data = chain(100)
    split = split_judgments(data, SplitConfig())
    assert (split.train.size, split.heldout.size) == (80, 20)
    assert np.array_equal(np.sort(np.concatenate([split.train, split.heldout])), np.arange(100))
    assert np.all(np.diff(split.train) > 0) and np.all(np.diff(split.heldout) > 0)
    # The held-out judgments are the first draws of the seed's permutation.
    expected = np.sort(np.random.default_rng(0).permutation(100)[:20])
    assert np.array_equal(split.heldout, expected)
    assert np.array_equal(split_judgments(data, SplitConfig()).heldout, split.heldout)
    assert not np.array_equal(split_judgments(data, SplitConfig(seed=1)).heldout, split.heldout)
    assert split.has_heldout


def test_a_given_generator_draws_the_split_and_then_continues() -> None:
    """The ensemble passes its own generator, which draws the bootstrap counts next:
    the split must consume exactly one permutation from it."""
    rng = np.random.default_rng(7)
    split = split_judgments(chain(50), SplitConfig(seed=123), rng)
    reference = np.random.default_rng(7)
    assert np.array_equal(split.heldout, np.sort(reference.permutation(50)[:10]))
    assert rng.integers(1_000_000) == reference.integers(1_000_000)


@pytest.mark.parametrize(
    ("n", "config"),
    [
        (20, SplitConfig()),  # 4 held out would be fewer than min_holdout = 5
        (10, SplitConfig(holdout_fraction=0.6, min_holdout=1)),  # 6 held out, only 4 left to train
        (100, SplitConfig(holdout_fraction=0.0)),
    ],
)
def test_small_or_unsplittable_data_all_train(n: int, config: SplitConfig) -> None:
    split = split_judgments(chain(n), config)
    assert np.array_equal(split.train, np.arange(n))
    assert split.heldout.size == 0 and not split.has_heldout


def test_split_weights_mask_the_other_part_and_unweighted_heldout_does_not_count() -> None:
    weight = np.arange(1, 26, dtype=np.float32)
    split = split_judgments(chain(25, weight=weight), SplitConfig())
    train_w, hold_w = split.train_weights(), split.heldout_weights()
    assert train_w.dtype == hold_w.dtype == np.float32
    np.testing.assert_array_equal(train_w + hold_w, weight)
    assert np.all(hold_w[split.train] == 0) and np.all(train_w[split.heldout] == 0)
    weight[split.heldout] = 0.0
    unweighted = split_judgments(chain(25, weight=weight), SplitConfig())
    assert unweighted.heldout.size == 5 and not unweighted.has_heldout


def test_train_items_are_the_items_of_training_judgments() -> None:
    data = chain(25)
    split = split_judgments(data, SplitConfig())
    items = set(data.pair_left[split.train]) | set(data.pair_right[split.train])
    assert split.train_items(data).tolist() == sorted(items)


# --- early stopping --------------------------------------------------------------------


@dataclass
class Scripted:
    """A fake training run whose epochs have the given monitored losses."""

    losses: list[float]
    steps: list[int] = field(default_factory=list)
    epoch: int = 0

    def evaluate(self, epoch: int) -> tuple[float, str]:
        assert epoch == self.epoch
        return self.losses[epoch], f"value {epoch}"

    def step(self, epoch: int, value: str) -> None:
        assert value == f"value {epoch - 1}"
        self.steps.append(epoch)
        self.epoch = epoch

    def snapshot(self) -> int:
        return self.epoch


def run(losses: list[float], *, patience: int = 3, has_heldout: bool = True, relative: bool = True) -> Any:
    fake = Scripted(losses)
    stopping = EarlyStopping(patience, has_heldout=has_heldout, relative=relative)
    best, epochs = run_epochs(
        max_epochs=len(losses) - 1, stopping=stopping, evaluate=fake.evaluate, step=fake.step, snapshot=fake.snapshot
    )
    assert best == stopping.best_epoch
    return best, epochs, fake.steps


def test_epoch_zero_competes_so_a_warm_start_that_is_best_is_kept() -> None:
    best, epochs, steps = run([1.0, 1.5, 1.2, 1.1, 0.5], patience=3)
    assert (best, epochs) == (0, 3)
    assert steps == [1, 2, 3]


def test_patience_counts_epochs_in_a_row_without_improvement() -> None:
    best, epochs, _ = run([1.0, 0.9, 0.95, 0.8, 0.85, 0.85, 0.1], patience=2)
    assert (best, epochs) == (3, 5)


def test_the_last_epoch_is_evaluated_and_can_win() -> None:
    best, epochs, steps = run([1.0, 0.9, 0.8], patience=5)
    assert (best, epochs, steps) == (2, 2, [1, 2])


def test_improvements_must_beat_the_absolute_threshold() -> None:
    assert run([1.0, 1.0 - 5e-7, 0.5], patience=1, relative=False)[:2] == (0, 1)
    assert run([1.0, 1.0 - 2e-6], patience=1, relative=False)[0] == 1


def test_improvements_must_beat_a_relative_threshold_with_a_heldout_set() -> None:
    # 1e-4 of the best loss (10.0) is 1e-3.
    assert run([10.0, 10.0 - 5e-4, 0.0], patience=1)[:2] == (0, 1)
    assert run([10.0, 10.0 - 2e-3], patience=1)[0] == 1
    # Without the relative rule (L-BFGS, fine-tuning) the same small step counts.
    assert run([10.0, 10.0 - 5e-4], patience=1, relative=False)[0] == 1


def test_the_relative_threshold_is_ten_times_larger_without_a_heldout_set() -> None:
    # 1e-3 of the best loss (10.0) is 1e-2.
    assert run([10.0, 10.0 - 5e-3, 0.0], patience=1, has_heldout=False)[:2] == (0, 1)
    assert run([10.0, 10.0 - 2e-2], patience=1, has_heldout=False)[0] == 1
    assert run([10.0, 10.0 - 5e-3], patience=1, has_heldout=True)[0] == 1


def test_the_epoch_budget_is_capped_without_a_heldout_set() -> None:
    assert capped_epochs(300, has_heldout=True) == 300
    assert capped_epochs(300, has_heldout=False) == 100
    assert capped_epochs(50, has_heldout=False) == 50


def test_adam_fits_without_heldout_stop_at_the_cap_but_lbfgs_keeps_its_budget() -> None:
    """Through the real fit: with patience out of reach, Adam stops at 100 epochs when
    nothing is held out, while L-BFGS (meant to be exact) runs its whole budget."""
    features = np.eye(4, dtype=np.float32)
    data = PreferenceData.from_pairs([0, 1, 2, 0], [1, 2, 3, 3], [1.0, 1.0, 0.5, 1.0])
    base = RewardModelConfig(head="linear", max_epochs=120, patience=1000, holdout_fraction=0.0, device="cpu")
    adam = fit_reward_model(features, data, base)
    lbfgs = fit_reward_model(features, data, RewardModelConfig(**{**base.__dict__, "optimizer": "lbfgs"}))
    assert adam.metrics["epochs"] == 100.0
    assert lbfgs.metrics["epochs"] == 120.0


# --- divergence ------------------------------------------------------------------------


def test_a_non_finite_monitored_loss_stops_training() -> None:
    with pytest.raises(TrainingDivergedError, match=r"monitored loss became nan after 2 epochs"):
        run([1.0, 0.9, math.nan, 0.5])


def test_ensure_finite_checks_one_tensor_or_many() -> None:
    ensure_finite(torch.ones(3), "fine")
    ensure_finite([torch.ones(2, 2), torch.zeros(3)], "fine")
    with pytest.raises(TrainingDivergedError, match=r"^scores broke$"):
        ensure_finite(torch.tensor([0.0, math.inf]), "scores broke")
    with pytest.raises(TrainingDivergedError, match=r"^parameters broke$"):
        ensure_finite([torch.ones(2), torch.tensor([math.nan])], "parameters broke")


def test_divergence_error_is_one_class_wherever_it_is_imported() -> None:
    assert reward.TrainingDivergedError is finetune.TrainingDivergedError is TrainingDivergedError
    assert issubclass(TrainingDivergedError, RuntimeError)


def test_an_absurd_learning_rate_raises_instead_of_returning_a_model() -> None:
    features = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32) * 1e30
    data = PreferenceData.from_pairs([0, 1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(TrainingDivergedError, match=r"non-finite|nan|inf"):
        fit_reward_model(features, data, RewardModelConfig(head="linear", lr=1e30, device="cpu"))


# --- metrics ---------------------------------------------------------------------------


def test_fit_summary_scores_one_model_and_averages_members() -> None:
    data = PreferenceData.from_pairs([0, 1, 0, 2, 1, 3], [1, 2, 2, 3, 3, 0], [1.0, 1.0, 0.5, 0.0, 1.0, 0.0])
    split = split_judgments(data, SplitConfig(min_holdout=1, holdout_fraction=0.34))
    likelihood = PreferenceLikelihood(LikelihoodConfig(label_flip_rate=0.0))
    tensors = data.to_tensors("cpu")
    scores = torch.tensor([1.0, 0.5, -0.2, -1.0], dtype=torch.float64)
    single = fit_summary(likelihood, scores, tensors, data, split)
    assert (single["n_train"], single["n_heldout"]) == (4.0, 2.0)
    nll = likelihood(scores, tensors).numpy()
    assert single["train_log_loss"] == pytest.approx(nll[split.train].mean())
    # Identical members average to the single model.
    members = fit_summary(likelihood, scores.repeat(3, 1), tensors, data, split)
    for key, value in single.items():
        assert members[key] == pytest.approx(value, nan_ok=True), key
    with pytest.raises(TrainingDivergedError, match=r"^fitted ensemble produces non-finite scores$"):
        fit_summary(likelihood, torch.full((2, 4), math.nan), tensors, data, split, what="ensemble")


# --- config fields ---------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingConfig:
    lr: float = 1e-2
    epochs: int = 3
    patience: int = 1
    holdout_fraction: float = 0.2
    min_holdout: int = 5
    likelihood: Any = field(default_factory=LikelihoodConfig)

    def __post_init__(self) -> None:
        check_training_fields(self, epochs_field="epochs")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr must be a finite positive number, got 0.0"),
        ({"lr": math.inf}, "lr must be a finite positive number, got inf"),
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"patience": 0}, "patience must be >= 1, got 0"),
        ({"holdout_fraction": 1.0}, r"holdout_fraction must be in \[0, 1\), got 1.0"),
        ({"holdout_fraction": -0.1}, r"holdout_fraction must be in \[0, 1\), got -0.1"),
        ({"min_holdout": 0}, "min_holdout must be >= 1, got 0"),
        ({"likelihood": {"ties": "nonsense"}}, "ties must be one of"),
    ],
)
def test_training_fields_are_validated_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**kwargs)


def test_a_likelihood_dict_from_config_json_becomes_a_config() -> None:
    config = TrainingConfig(likelihood={"ties": "rao_kupper", "label_flip_rate": 0.1, "from_the_future": 1})
    assert config.likelihood == LikelihoodConfig(ties="rao_kupper", label_flip_rate=0.1)


def test_a_given_holdout_is_the_split_and_draws_nothing() -> None:
    """The loop fixes the validation judgments itself (stable from fit to fit); the
    minimum and the at-most-half rules still apply."""
    rng = np.random.default_rng(3)
    split = split_judgments(chain(30), SplitConfig(), rng, holdout=np.array([4, 1, 9, 20, 27, 13]))
    assert split.heldout.tolist() == [1, 4, 9, 13, 20, 27]
    assert split.train.size == 24 and split.has_heldout
    assert rng.integers(1_000_000) == np.random.default_rng(3).integers(1_000_000)
    assert split_judgments(chain(30), SplitConfig(), holdout=np.array([1, 2])).heldout.size == 0
    assert split_judgments(chain(10), SplitConfig(), holdout=np.arange(6)).heldout.size == 0
