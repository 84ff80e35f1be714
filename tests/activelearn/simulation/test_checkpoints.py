"""Regret checkpoints note the live model as judgments land and are scored afterwards."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.simulation.checkpoints import Checkpoints
from activelearn.simulation.utilities import HiddenUtilities
from annotation.models import RewardModelVersion
from tests.factories import study_with_queue

pytestmark = pytest.mark.django_db


def _utilities(features: np.ndarray | None) -> HiddenUtilities:
    return HiddenUtilities(
        kind="embedding" if features is not None else "hash",
        candidate_ids=np.array([1, 2, 3, 4]),
        groups=np.array([0, 0, 1, 1]),
        utility=np.array([-1.0, 1.0, 1.0, -1.0]),
        features=features,
        embedder_key="embedder-a",
    )


def test_before_any_model_the_regret_is_that_of_a_random_pick():
    study = study_with_queue(n_prompts=1, n_candidates=2, fill=False)
    checkpoints = Checkpoints(study_id=study.id)
    checkpoints.note(10)
    checkpoints.note(0)

    checkpoints.score(_utilities(None))

    assert [c["judgments"] for c in checkpoints.rows] == [0, 10]
    assert all(c["regret"] == 1.0 and c["regret_of"] == "random pick (expected)" for c in checkpoints.rows)
    assert all(c["model_version"] is None and "version_id" not in c for c in checkpoints.rows)


def test_a_model_fitted_on_another_embedder_is_left_unscored_with_the_reason():
    study = study_with_queue(n_prompts=1, n_candidates=2, fill=False)
    RewardModelVersion.objects.create(
        study=study, version=1, model_type="mlp", embedder_key="embedder-b", n_judgments=7, checkpoint_path="/x"
    )
    checkpoints = Checkpoints(study_id=study.id)
    row = checkpoints.note(7)

    checkpoints.score(_utilities(np.zeros((4, 3), dtype=np.float32)))

    assert (row["model_version"], row["model_n_judgments"]) == (1, 7)
    assert row["regret"] is None and row["regret_of"] == "model was fitted on a different embedder"
