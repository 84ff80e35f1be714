"""Annotator reliability in a study: the glue between the judgment table and
``models_runtime.reliability`` (people measured among people and gold, AI judges
against people; see that module for the model and the weights).

A fit (:func:`activelearn.services.reward_model_fit`) calls :func:`study_reliability`
on the training judgments and trains on :func:`reweighted` data; the estimates are
kept on the published version (``metrics["reliability"]``) for the study page and
for routing. Every pair an answer orders is a vote: a pairwise answer's one
pair, and each pair of a ranking at weight 2/K (a ranking of K counts as K − 1
answers); a tie or "both bad" says nothing about which response is better.
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


def _pair_votes(ranking: list) -> tuple[list[tuple[int, int]], float]:
    """(winner, loser) candidate ids of every pair an answer orders, and the weight
    of each as a vote: a strict pairwise answer is one vote of weight 1; a ranking
    of K items orders each pair in different places, at weight 2/K (the ranking
    counts as K − 1 answers: see ``models_runtime.reliability.Vote``). A tie says nothing."""
    places = [[int(x) for x in g] if isinstance(g, list) else [int(g)] for g in ranking or []]
    items = sum(len(p) for p in places)
    if items < 2:
        return [], 0.0
    pairs = [(w, lo) for i, better in enumerate(places) for worse in places[i + 1 :] for w in better for lo in worse]
    return pairs, 2.0 / items


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
        pairs, weight = _pair_votes(ranking)
        model = annotator_id in judges
        for winner, loser in pairs:
            # Each pair of a comparison is its own unit (a pairwise comparison is its only pair).
            key = (comparison_id, min(winner, loser), max(winner, loser))
            votes.append(Vote(key, annotator_id, winner < loser, model=model, weight=weight))
        if is_gold and len(pairs) == 1:
            left = _gold_left(answer)
            better, worse = (answer or {}).get("better"), (answer or {}).get("worse")
            if left is not None:
                gold.setdefault((comparison_id, min(better, worse), max(better, worse)), left)
    estimates = estimate_reliability(votes, gold=gold)
    return StudyReliability(estimates=estimates, reference=reference_accuracy(estimates), judges=judges)


def reweighted(
    data: PreferenceData, annotator_ids: np.ndarray, rel: StudyReliability, reviewed: np.ndarray | None = None
) -> PreferenceData:
    """``data`` with every row's weight multiplied by its annotator's
    (``annotator_ids``: each row's annotator, pairs then rankings); a row a
    reviewer settled (``reviewed``) counts at least in full, whoever gave it."""
    factor = np.array([rel.weight(int(a)) for a in annotator_ids], dtype=np.float32)
    if reviewed is not None and reviewed.size == factor.size:
        factor = np.where(reviewed, np.maximum(factor, 1.0), factor).astype(np.float32)
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
    data = reweighted(judged.data, judged.annotator_ids, rel, judged.reviewed)
    return (
        JudgedPreferences(
            data=data, judgment_ids=judged.judgment_ids, annotator_ids=judged.annotator_ids, reviewed=judged.reviewed
        ),
        rel,
    )
