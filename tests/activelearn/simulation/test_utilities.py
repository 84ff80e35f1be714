"""The simulated annotators' hidden utilities of a study come from the one simulator."""

from __future__ import annotations

import random

import numpy as np
import pytest

from activelearn.simulation.utilities import hidden_utilities
from annotation.models import Candidate
from models_runtime.simulate import hash_utilities
from tests.factories import study_with_queue

pytestmark = pytest.mark.django_db


def test_hash_utilities_of_a_study_are_standardised_within_each_prompt():
    study = study_with_queue(n_prompts=3, n_candidates=4, fill=False)
    utilities = hidden_utilities(study_id=study.id, seed=5, kind="hash")

    rows = list(Candidate.objects.filter(study=study).order_by("id").values_list("id", "prompt_id"))
    assert utilities.kind == "hash" and utilities.features is None
    assert utilities.candidate_ids.tolist() == [cid for cid, _ in rows]
    np.testing.assert_array_equal(utilities.utility, hash_utilities(utilities.candidate_ids, utilities.groups, 5))
    for prompt_id in {pid for _, pid in rows}:
        block = utilities.utility[utilities.groups == prompt_id]
        assert abs(block.mean()) < 1e-9 and abs(block.std() - 1.0) < 1e-9


def test_the_oracle_answers_by_candidate_and_gives_a_new_candidate_utility_zero():
    """At a huge scale the annotator always prefers the higher utility; a candidate
    created after the utilities were drawn sits at its prompt's mean (0)."""
    study = study_with_queue(n_prompts=1, n_candidates=3, fill=False)
    utilities = hidden_utilities(study_id=study.id, seed=1, kind="hash")
    oracle = utilities.oracle(scale=1e6, flip=0.0, position_bias=0.0)
    best, worst = (int(utilities.candidate_ids[k]) for k in np.argsort(-utilities.utility)[[0, -1]])
    rng = random.Random(0)
    assert oracle.answer_pair(utilities.row(best), utilities.row(worst), rng)
    assert not oracle.answer_pair(utilities.row(worst), utilities.row(best), rng)

    unknown = int(utilities.candidate_ids.max()) + 1000
    assert utilities.of(unknown) == 0.0
    assert oracle.answer_pair(utilities.row(best), utilities.row(unknown), rng)
    assert not oracle.answer_pair(utilities.row(worst), utilities.row(unknown), rng)
