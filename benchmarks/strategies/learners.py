"""The models a run refits on the app's cadence, and what strategies read from them.

The prefloop strategies are driven with the real ``models_runtime`` models in the
app's default configuration: the default single head (``RewardModelConfig()``) for
the strategies that need scores or gradients and for the recommendation of those
that need nothing, the default anchored ensemble (``EnsembleConfig()``) for those
that need member scores. Their likelihood is the default one, which learns the
label-flip rate from the judgments: no model is told ε. Only the seed and the
device (CPU) are set, and early stopping validates on a split that stays the same
from fit to fit, chosen the way the app chooses it. The ``choix_random`` peer fits a non-contextual Bradley–Terry
model; the BoTorch peer is in ``eubo``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import choix
import numpy as np

from benchmarks.strategies.protocol import BenchConfig
from models_runtime.ensemble import EnsembleConfig, fit_ensemble
from models_runtime.evaluation import evaluation_draw
from models_runtime.gradients import GradientFeatureSource
from models_runtime.preferences import PreferenceData
from models_runtime.reward import RewardModelConfig, fit_reward_model


class Learner:
    """Fits a model on the judgments so far and exposes what strategies read."""

    scores: np.ndarray | None = None

    def fit(self, left: list[int], right: list[int], outcome: list[float]) -> None:
        raise NotImplementedError

    def recommend(self) -> tuple[int, np.ndarray]:
        """The recommended item (the argmax of the fitted utility) and every item's score."""
        assert self.scores is not None
        return int(np.argmax(self.scores)), self.scores


def _overrides(cfg: BenchConfig, config_class: type) -> dict[str, Any]:
    """The test-only model overrides that ``config_class`` has fields for."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    return {k: v for k, v in cfg.model_overrides if k in fields}


def _holdout(left: list[int], right: list[int], seed: int, fraction: float) -> np.ndarray:
    """The judgments early stopping validates on, as the app chooses them
    (``activelearn.services._validation_rows``): a stable hash of the pair under
    ``fraction``, so the split stays the same from fit to fit and a warm start is
    never validated on judgments it trained on."""
    keys = (f"validation\x1f{seed}\x1f{min(a, b)}-{max(a, b)}" for a, b in zip(left, right, strict=True))
    return np.flatnonzero(np.array([evaluation_draw(k) < fraction for k in keys], dtype=bool))


def preference_data(left: list[int], right: list[int], outcome: list[float]) -> PreferenceData:
    """The judgments so far as the models' input (``outcome`` 1.0: ``left`` preferred)."""
    return PreferenceData.from_pairs(np.array(left), np.array(right), np.array(outcome, dtype=np.float32))


class HeadLearner(Learner):
    """The default reward head (``models_runtime.reward``), warm-started at every refit."""

    def __init__(self, features: np.ndarray, seed: int, cfg: BenchConfig) -> None:
        self.features = features
        self.config = RewardModelConfig(seed=seed, device="cpu", **_overrides(cfg, RewardModelConfig))
        self.model: Any = None

    def fit(self, left: list[int], right: list[int], outcome: list[float]) -> None:
        init = self.model.state_dict() if self.model is not None else None
        holdout = _holdout(left, right, self.config.seed, self.config.holdout_fraction)
        data = preference_data(left, right, outcome)
        self.model = fit_reward_model(self.features, data, self.config, init_state=init, holdout=holdout).model
        self.scores = self.model.scores(self.features)
        self.left, self.right = np.array(left), np.array(right)

    def gradients(self) -> GradientFeatureSource:
        """The head's gradient features on the judged pairs (what APOHF reads)."""
        return GradientFeatureSource(self.model, self.features, self.left, self.right)


class EnsembleLearner(Learner):
    """The default anchored, bootstrapped ensemble (``models_runtime.ensemble``),
    warm-started; its scores are the members' mean."""

    def __init__(self, features: np.ndarray, seed: int, cfg: BenchConfig) -> None:
        self.features = features
        self.config = EnsembleConfig(seed=seed, device="cpu", **_overrides(cfg, EnsembleConfig))
        self.model: Any = None
        self.members: np.ndarray | None = None

    def fit(self, left: list[int], right: list[int], outcome: list[float]) -> None:
        init = self.model.state_dict() if self.model is not None else None
        holdout = _holdout(left, right, self.config.seed, self.config.holdout_fraction)
        data = preference_data(left, right, outcome)
        self.model = fit_ensemble(self.features, data, self.config, init_state=init, holdout=holdout).model
        self.members = self.model.member_scores(self.features)
        self.scores = self.members.mean(axis=0)


class ChoixLearner(Learner):
    """Non-contextual Bradley–Terry (choix ILSR with a small ridge ``alpha``) over the
    compared items; never-compared items score the mean (0) and are not recommended."""

    def __init__(self, n_items: int, cfg: BenchConfig) -> None:
        self.n_items = n_items
        self.alpha = cfg.choix_alpha

    def fit(self, left: list[int], right: list[int], outcome: list[float]) -> None:
        items = np.unique(np.array(left + right))
        where = {int(v): k for k, v in enumerate(items)}
        data = [
            (where[a], where[b]) if o > 0.5 else (where[b], where[a])
            for a, b, o in zip(left, right, outcome, strict=True)
        ]
        strength = choix.ilsr_pairwise(items.size, data, alpha=self.alpha)
        self.scores = np.zeros(self.n_items)
        self.scores[items] = strength - strength.mean()
        self.best = int(items[np.argmax(strength)])

    def recommend(self) -> tuple[int, np.ndarray]:
        assert self.scores is not None
        return self.best, self.scores
