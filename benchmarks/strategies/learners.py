"""The models a run refits on the app's cadence, and what strategies read from them.

The prefloop strategies are driven with the real ``models_runtime`` models in the
app's default configuration: the study's default model kind
(``models_runtime.kinds.DEFAULT_KIND``), which serves every built-in strategy, or
the default single head (``"mlp"``) for a strategy that needs what the default kind
does not provide, as such a study must (see :func:`protocol.model_kind`). No model is told ε or anything else about the
annotator: the neural kinds learn the flip rate with their weights, the kernel kind
chooses its prior scale by the evidence. Only the seed and the device (CPU) are set,
and validation uses a split that stays the same from fit to fit, chosen the way the
app chooses it. The ``choix_random`` peer fits a non-contextual Bradley–Terry
model; the BoTorch peer is in ``eubo``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import choix
import numpy as np

from benchmarks.strategies.protocol import BenchConfig
from models_runtime import kinds
from models_runtime.evaluation import evaluation_draw
from models_runtime.preferences import PreferenceData


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


def preference_data(
    left: list[int], right: list[int], outcome: list[float], weight: list[float] | None = None
) -> PreferenceData:
    """The judgments so far as the models' input (``outcome`` 1.0: ``left`` preferred;
    ``weight`` per judgment, 1 when not given)."""
    return PreferenceData.from_pairs(
        np.array(left), np.array(right), np.array(outcome, dtype=np.float32), weight=weight
    )


class KindLearner(Learner):
    """A study's reward model: the model kind the app gives the strategy
    (:func:`protocol.model_kind`), configured from its defaults (seed and CPU aside),
    fitted through the kind's own ``fit`` on the app's validation split and
    warm-started from the previous fit, read through the kind's ``outputs`` and
    recommending through the kind's ``posterior``, as the loop does. A fit the app
    would not publish (its gate: ``best_epoch`` 0) leaves the previous model live."""

    def __init__(self, kind: str, features: np.ndarray, seed: int, cfg: BenchConfig, needs: str | None = None) -> None:
        self.kind = kinds.get(kind)
        self.needs = needs  # what the strategy reads: the kind's outputs include it
        self.features = features
        config = self.kind.config({"seed": seed}, "cpu")
        self.config = dataclasses.replace(config, **_overrides(cfg, type(config)))
        self.seed = seed
        self.model: Any = None
        self.data: PreferenceData | None = None
        self.outputs: dict[str, Any] = {}
        self.members: np.ndarray | None = None

    def fit(self, left: list[int], right: list[int], outcome: list[float], weight: list[float] | None = None) -> None:
        init = self.model.state_dict() if self.model is not None else None
        holdout = _holdout(left, right, self.seed, float(getattr(self.config, "holdout_fraction", 0.2)))
        self.data = preference_data(left, right, outcome, weight)
        result = self.kind.fit(self.features, self.data, self.config, init, holdout=holdout)
        if self.model is None or result.metrics.get("best_epoch", 1.0) > 0:
            self.model = result.model
        data = self.data
        self.outputs = self.kind.outputs(self.model, self.features, self.needs, lambda: data)
        self.scores = np.asarray(self.outputs["scores"], dtype=np.float64)
        self.members = self.outputs.get("member_scores")

    def posterior(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
        """``(samples (n, N), method)`` of the kind's posterior on the judgments so far:
        what the study page's leaderboard is drawn from."""
        assert self.data is not None
        return self.kind.posterior(self.model, self.features, self.data, rng, n)


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
