"""The models a run refits after each judgment, and what strategies read from them.

The prefloop strategies are driven with the real ``models_runtime`` models: a single
MLP head for the strategies that need scores or gradients (and for the
recommendation of those that need nothing), an anchored ensemble for those that need
member scores. The ``choix_random`` peer fits a non-contextual Bradley–Terry model;
the BoTorch peer is in ``eubo``.
"""

from __future__ import annotations

from typing import Any

import choix
import numpy as np

from benchmarks.strategies.protocol import BenchConfig, Setting
from models_runtime.ensemble import EnsembleConfig, fit_ensemble
from models_runtime.gradients import GradientFeatureSource
from models_runtime.preferences import LikelihoodConfig, PreferenceData
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


def _pairs(left: list[int], right: list[int], outcome: list[float]) -> PreferenceData:
    return PreferenceData.from_pairs(np.array(left), np.array(right), np.array(outcome, dtype=np.float32))


class HeadLearner(Learner):
    """One MLP reward head (``models_runtime.reward``), warm-started at every refit."""

    def __init__(self, features: np.ndarray, setting: Setting, seed: int, cfg: BenchConfig) -> None:
        self.features = features
        self.config = RewardModelConfig(
            head="mlp",
            hidden=cfg.hidden,
            max_epochs=cfg.max_epochs,
            patience=cfg.patience,
            seed=seed,
            device="cpu",
            likelihood=LikelihoodConfig(label_flip_rate=setting.eps),
        )
        self.model: Any = None

    def fit(self, left: list[int], right: list[int], outcome: list[float]) -> None:
        init = self.model.state_dict() if self.model is not None else None
        self.model = fit_reward_model(self.features, _pairs(left, right, outcome), self.config, init_state=init).model
        self.scores = self.model.scores(self.features)
        self.left, self.right = np.array(left), np.array(right)

    def gradients(self) -> GradientFeatureSource:
        """The head's gradient features on the judged pairs (what APOHF reads)."""
        return GradientFeatureSource(self.model, self.features, self.left, self.right)


class EnsembleLearner(Learner):
    """An anchored, bootstrapped ensemble (``models_runtime.ensemble``), warm-started;
    its scores are the members' mean."""

    def __init__(self, features: np.ndarray, setting: Setting, seed: int, cfg: BenchConfig) -> None:
        self.features = features
        self.config = EnsembleConfig(
            n_members=cfg.n_members,
            head="mlp",
            hidden=cfg.hidden,
            anchor_strength=cfg.anchor_strength,
            prior_scale=cfg.prior_scale,
            bootstrap=True,
            max_epochs=cfg.max_epochs,
            patience=cfg.patience,
            seed=seed,
            device="cpu",
            likelihood=LikelihoodConfig(label_flip_rate=setting.eps),
        )
        self.model: Any = None
        self.members: np.ndarray | None = None

    def fit(self, left: list[int], right: list[int], outcome: list[float]) -> None:
        init = self.model.state_dict() if self.model is not None else None
        self.model = fit_ensemble(self.features, _pairs(left, right, outcome), self.config, init_state=init).model
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
