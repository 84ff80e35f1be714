"""Annotator reliability (models_runtime.reliability): people measured among people
and gold, AI judges against people, weights, routing; and the kernel model's merge
of repeated pairs, which must not change what it learns."""

from __future__ import annotations

import numpy as np
import pytest

from models_runtime import kernel_bt
from models_runtime.preferences import PreferenceData
from models_runtime.reliability import (
    ReliabilityConfig,
    RoutingConfig,
    Vote,
    estimate_reliability,
    judges_verdict,
    reference_accuracy,
    settles,
)

PEOPLE = {"p_good": 0.9, "p_fair": 0.8, "p_poor": 0.6}


def _crowd(seed: int, judges: dict[str, float], n: int = 600, shared: int = 300, gold: int = 0):
    """Votes of three people (two of them on the first ``shared`` comparisons, one on
    the rest) and of every judge on every comparison, with the truth."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.5
    names = list(PEOPLE)
    votes = []
    for c in range(n):
        who = rng.choice(names, 2, replace=False) if c < shared else [names[c % 3]]
        for p in who:
            votes.append(Vote(c, str(p), bool(truth[c]) == (rng.random() < PEOPLE[str(p)])))
        for j, acc in judges.items():
            votes.append(Vote(c, j, bool(truth[c]) == (rng.random() < acc), model=True))
    gold_answers = {c: bool(truth[c]) for c in range(n - gold, n)}
    return votes, gold_answers


def test_judges_are_measured_against_people_and_intervals_cover_the_truth():
    judges = {"judge_75": 0.75, "judge_60": 0.6, "adversarial": 0.1}
    covered = {name: 0 for name in judges}
    for seed in range(10):
        votes, _ = _crowd(seed, judges)
        est = estimate_reliability(votes)
        for name, acc in judges.items():
            assert abs(est[name].accuracy - acc) < 0.1, (seed, name, est[name])
            covered[name] += est[name].low <= acc <= est[name].high
        assert est["adversarial"].weight == 0.0
        assert est["judge_75"].weight > est["judge_60"].weight > 0.0
        assert est["p_good"].accuracy > est["p_poor"].accuracy
    # 90% intervals: at least 7 of 10 cover (a miss rate this high has p < 0.07).
    assert all(n >= 7 for n in covered.values()), covered


def test_judges_that_all_agree_on_the_wrong_answer_cannot_vouch_for_each_other():
    """Three adversarial judges agree with each other far more than with people; a
    model that let them decide the truth would trust them. They are measured
    against people only, so all three are weighted zero."""
    votes, _ = _crowd(1, {"adv_a": 0.05, "adv_b": 0.1, "adv_c": 0.15})
    est = estimate_reliability(votes)
    for name in ("adv_a", "adv_b", "adv_c"):
        assert est[name].accuracy < 0.3 and est[name].weight == 0.0
    # People keep their weights whatever the judges say.
    people_only = estimate_reliability([v for v in votes if not v.model])
    assert est["p_good"].weight == pytest.approx(people_only["p_good"].weight)


def test_without_evidence_people_keep_the_prior_and_judges_count_for_nothing():
    votes = [Vote(c, f"p{c % 4}", True) for c in range(40)]  # one person per comparison, no gold
    votes += [Vote(1000 + c, "judge", True, model=True) for c in range(40)]  # never beside a person
    est = estimate_reliability(votes)
    prior = ReliabilityConfig().person_prior
    assert all(est[f"p{k}"].accuracy == pytest.approx(prior[0] / sum(prior)) for k in range(4))
    assert all(est[f"p{k}"].weight == 1.0 for k in range(4))
    assert est["judge"].anchored == 0 and est["judge"].weight == 0.0


def test_gold_answers_measure_a_lone_person():
    """With one person per comparison, gold items are what tells a careless person
    apart: 30 gold answers, 15 of them wrong."""
    votes = [Vote(c, "careful", True) for c in range(30)] + [Vote(100 + c, "careless", c % 2 == 0) for c in range(30)]
    gold = {c: True for c in range(30)} | {100 + c: True for c in range(30)}
    est = estimate_reliability(votes, gold=gold)
    assert est["careful"].accuracy > 0.9 and est["careless"].accuracy < 0.65
    assert est["careful"].weight == 1.0 and est["careless"].weight < 0.2


def test_a_person_cannot_also_be_a_model():
    with pytest.raises(ValueError, match="both a person and a model"):
        estimate_reliability([Vote(1, "x", True), Vote(2, "x", True, model=True)])


def test_routing_settles_only_on_what_trusted_judges_agree_on():
    reference = 0.75
    assert settles(judges_verdict([(True, 0.8), (True, 0.7)]), reference)
    # Disagreeing judges, or one that is no better than chance, do not settle.
    assert not settles(judges_verdict([(True, 0.8), (False, 0.8)]), reference)
    assert not settles(judges_verdict([(True, 0.5), (True, 0.4)]), reference)
    assert judges_verdict([(False, 0.3)]) == 0.5  # a judge below chance is ignored, not inverted
    routing = RoutingConfig(judge_share=0.5)
    assert routing.room(settled=0, comparisons=1) and not routing.room(settled=1, comparisons=1)
    assert reference_accuracy({}) == pytest.approx(0.8)  # the person prior's mean


def _log_likelihood(scores, left, right, y, w):
    d = scores[left] - scores[right]
    return float(np.sum(w * (y * -np.logaddexp(0, -d) + (1 - y) * -np.logaddexp(0, d))))


def test_the_kernel_model_sees_the_same_likelihood_with_repeated_pairs_merged():
    """Several weighted judgments of one pair, in either order, are one soft-labelled
    row of their summed weight: the weighted Bradley–Terry log-likelihood is the same
    function of the scores, so the mode, the Laplace posterior and the evidence are
    too. Rows of weight 0 (an untrusted judge) are dropped."""
    rng = np.random.default_rng(0)
    left = rng.integers(0, 15, 40)
    right = left + 15
    raw_left = np.concatenate([left, right, left])  # the second annotator saw each pair flipped
    raw_right = np.concatenate([right, left, right])
    y = (rng.random(120) < 0.7).astype(np.float32)
    y[:5] = 0.5  # ties
    w = np.concatenate([np.ones(40), 0.5 * np.ones(40), np.zeros(40)]).astype(np.float32)
    data = PreferenceData.from_pairs(raw_left, raw_right, y, weight=w)
    a, b, merged_y, merged_w = kernel_bt._merged_pairs(data)
    distinct = len({(min(i, j), max(i, j)) for i, j in zip(left, right, strict=True)})
    assert a.size == distinct and merged_w.sum() == pytest.approx(60.0)
    for k in range(5):
        scores = np.random.default_rng(k).normal(scale=2.0, size=30)
        assert _log_likelihood(scores, a, b, merged_y, merged_w) == pytest.approx(
            _log_likelihood(scores, raw_left, raw_right, y.astype(np.float64), w.astype(np.float64)), rel=1e-9
        )
    # Nothing repeated and every weight positive: the rows are returned as they are.
    plain = PreferenceData.from_pairs(left[:3], right[:3])
    assert [arr.tolist() for arr in kernel_bt._merged_pairs(plain)] == [arr.tolist() for arr in kernel_bt._pairs(plain)]
