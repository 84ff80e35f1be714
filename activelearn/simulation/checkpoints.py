"""Regret checkpoints of a simulation run.

While the annotators work, every ``checkpoint_every`` landed judgments the newest
``RewardModelVersion`` is noted (cheap: one query). After the run each noted
version is loaded once and scores the study's candidates; per prompt the
normalised simple regret of the model's favourite x̂ is (u* − u(x̂)) / (u* − mean u),
averaged over prompts with at least two candidates
(:func:`models_runtime.simulate.mean_normalised_regret`). With no model yet the
figure is that of a uniformly random pick, whose expectation is exactly 1 under
this normalisation (0 = always the best, 1 = no better than chance).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from activelearn.services import reward_model_latest, reward_model_load
from activelearn.simulation.utilities import HiddenUtilities, features_in_utility_order
from annotation.models import RewardModelVersion
from models_runtime.simulate import mean_normalised_regret


class Checkpoints:
    """The checkpoints of one run, noted from the annotator threads (under a lock)
    and scored once the threads are done."""

    def __init__(self, *, study_id: int) -> None:
        self.study_id = study_id
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def start(self) -> None:
        """Start the clock that ``elapsed_s`` counts from."""
        self.started = time.monotonic()

    def note(self, n: int) -> dict[str, Any]:
        """Note the live model version after ``n`` landed judgments; returns the row."""
        version = reward_model_latest(study_id=self.study_id)
        row = {
            "judgments": n,
            "elapsed_s": round(time.monotonic() - self.started, 2),
            "version_id": version.id if version else None,
            "model_version": version.version if version else None,
            "model_n_judgments": version.n_judgments if version else None,
        }
        with self.lock:
            self.rows.append(row)
        return row

    def last_judgments(self) -> int | None:
        """The judgment count of the newest checkpoint (None before the first)."""
        return self.rows[-1]["judgments"] if self.rows else None

    def score(self, utilities: HiddenUtilities) -> None:
        """Sort the checkpoints and replace each noted version by its ``regret``
        (None when the model cannot be scored) and ``regret_of`` (what was scored,
        or why not)."""
        self.rows.sort(key=lambda c: (c["judgments"], c["elapsed_s"]))
        features, embedder_key = utilities.features, utilities.embedder_key
        if features is None and any(c["version_id"] for c in self.rows):
            features, embedder_key = features_in_utility_order(utilities, study_id=self.study_id)
        scored: dict[int, tuple[np.ndarray | None, str]] = {}
        for checkpoint in self.rows:
            version_id = checkpoint.pop("version_id")
            if version_id is None:
                checkpoint["regret"] = round(mean_normalised_regret(utilities.utility, utilities.groups, None), 4)
                checkpoint["regret_of"] = "random pick (expected)"
                continue
            if version_id not in scored:
                scored[version_id] = _version_scores(version_id, features, embedder_key)
            scores, note = scored[version_id]
            if scores is None:
                checkpoint["regret"] = None
                checkpoint["regret_of"] = note
            else:
                checkpoint["regret"] = round(mean_normalised_regret(utilities.utility, utilities.groups, scores), 4)
                checkpoint["regret_of"] = "model's top candidate"


def _version_scores(version_id: int, features: np.ndarray | None, embedder_key: str) -> tuple[np.ndarray | None, str]:
    """A published version's scores of ``features``, or None and why it has none."""
    version = RewardModelVersion.objects.get(id=version_id)
    if features is None:
        return None, "no embeddings to score the model on"
    if version.embedder_key != embedder_key:
        return None, "model was fitted on a different embedder"
    try:
        return reward_model_load(version).scores(features), ""
    except (OSError, ValueError) as exc:
        return None, f"checkpoint unreadable: {exc}"
