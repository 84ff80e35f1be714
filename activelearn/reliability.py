"""Annotator reliability in a study: the glue between the judgment table and
``models_runtime.reliability`` (people measured among people and gold, AI judges
against people; see that module for the model and the weights).

A fit (:func:`activelearn.services.reward_model_fit`) calls :func:`study_reliability`
on the training judgments and trains on :func:`reweighted` data; the estimates are
kept on the published version (``metrics["reliability"]``) for the study page and
for routing (:func:`judge_routing`). Only strict pairwise answers are votes: a tie
or "both bad" says nothing about which response is better, and a listwise answer
is left to its annotator's weight from their pairwise ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from activelearn import features
from activelearn.features import JudgedPreferences
from annotation.models import AIJudge, Judgment
from models_runtime.preferences import PreferenceData
from models_runtime.reliability import Reliability, Vote, estimate_reliability, reference_accuracy

__all__ = [
    "StudyReliability",
    "judge_user_ids",
    "reweighted",
    "study_reliability",
    "training_preferences",
    "version_weights",
]


@dataclass(frozen=True)
class StudyReliability:
    """Every annotator's estimate by user id, the study's reference accuracy (a
    typical person's lower accuracy) and the AI judges' user ids."""

    estimates: Mapping[int, Reliability]
    reference: float
    judges: frozenset[int]

    def weight(self, annotator_id: int) -> float:
        est = self.estimates.get(annotator_id)
        if est is not None:
            return est.weight
        # Never measured: a person counts fully, a judge not at all.
        return 0.0 if annotator_id in self.judges else 1.0

    def as_dict(self) -> dict[str, Any]:
        """For ``RewardModelVersion.metrics["reliability"]``: plain JSON."""
        return {
            "reference": round(self.reference, 4),
            "annotators": {
                str(uid): {
                    "kind": "model" if r.model else "person",
                    "accuracy": round(r.accuracy, 4),
                    "low": round(r.low, 4),
                    "high": round(r.high, 4),
                    "anchored": r.anchored,
                    "agreed": round(r.agreed, 2),
                    "weight": round(r.weight, 4),
                }
                for uid, r in self.estimates.items()
            },
        }


def judge_user_ids(*, study_id: int) -> frozenset[int]:
    """The user ids of the study's AI judges (their judgments are the model annotators')."""
    return frozenset(AIJudge.objects.filter(study_id=study_id).values_list("user_id", flat=True))


def _pair_vote(ranking: list) -> tuple[int, int] | None:
    """(winner, loser) candidate ids of a strict pairwise answer, else None."""
    if len(ranking) != 2 or any(isinstance(g, list) for g in ranking):
        return None
    return int(ranking[0]), int(ranking[1])


def _gold_left(answer: Any) -> bool | None:
    """A gold pair's answer as "the lower candidate id is better", or None."""
    if not isinstance(answer, dict):
        return None
    better, worse = answer.get("better"), answer.get("worse")
    if not isinstance(better, int) or not isinstance(worse, int) or better == worse:
        return None
    return better < worse


def study_reliability(*, study_id: int, evaluation: bool | None = False) -> StudyReliability:
    """Every annotator's reliability from the study's judgments (by default the
    training set, the judgments a fit may learn from) and its gold answers. One
    query for the judgments, one for the judges."""
    judges = judge_user_ids(study_id=study_id)
    rows = Judgment.objects.filter(study_id=study_id)
    if evaluation is not None:
        rows = rows.filter(evaluation=evaluation)
    votes: list[Vote] = []
    gold: dict[int, bool] = {}
    for comparison_id, annotator_id, ranking, is_gold, answer in rows.values_list(
        "comparison_id", "annotator_id", "ranking", "comparison__is_gold", "comparison__gold_answer"
    ):
        pair = _pair_vote(ranking)
        if pair is None:
            continue
        winner, loser = pair
        votes.append(Vote(comparison_id, annotator_id, winner < loser, model=annotator_id in judges))
        if is_gold and comparison_id not in gold:
            left = _gold_left(answer)
            if left is not None:
                gold[comparison_id] = left
    estimates = estimate_reliability(votes, gold=gold)
    return StudyReliability(estimates=estimates, reference=reference_accuracy(estimates), judges=judges)


def reweighted(data: PreferenceData, annotator_ids: np.ndarray, rel: StudyReliability) -> PreferenceData:
    """``data`` with every row's weight multiplied by its annotator's
    (``annotator_ids``: each row's annotator, pairs then rankings)."""
    factor = np.array([rel.weight(int(a)) for a in annotator_ids], dtype=np.float32)
    n_pairs = data.n_pairs
    return replace(
        data,
        pair_weight=data.pair_weight * factor[:n_pairs],
        rank_weight=data.rank_weight * factor[n_pairs:],
    )


def version_weights(metrics: Mapping[str, Any] | None, judges: frozenset[int]) -> StudyReliability:
    """The weights a published version was fitted with (its ``metrics["reliability"]``),
    so that what conditions on the version's training data later (the refill's
    posterior draws) weighs every annotator as the fit did. Annotators who came
    after it count as :meth:`StudyReliability.weight` says for the unmeasured."""
    stored = (metrics or {}).get("reliability") or {}
    estimates = {
        int(uid): Reliability(
            annotator=int(uid),
            model=row["kind"] == "model",
            accuracy=row["accuracy"],
            low=row["low"],
            high=row["high"],
            anchored=row["anchored"],
            agreed=row["agreed"],
            weight=row["weight"],
        )
        for uid, row in (stored.get("annotators") or {}).items()
    }
    return StudyReliability(estimates=estimates, reference=float(stored.get("reference", 0.0)), judges=judges)


def training_preferences(
    *, study_id: int, index: dict[int, int], rel: StudyReliability | None = None
) -> tuple[JudgedPreferences, StudyReliability]:
    """The study's training judgments as preference data weighted by their
    annotators' reliability (``rel``, or estimated now from the training set), and
    the reliability used."""
    judged = features.study_judged_preferences(study_id=study_id, index=index, evaluation=False)
    rel = rel if rel is not None else study_reliability(study_id=study_id)
    data = reweighted(judged.data, judged.annotator_ids, rel)
    return JudgedPreferences(data=data, judgment_ids=judged.judgment_ids, annotator_ids=judged.annotator_ids), rel
