"""Double Thompson sampling and infomax over an ensemble's members."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.strategies import SelectionInput
from activelearn.strategies.ensemble_based import DoubleThompsonStrategy, InfomaxStrategy, _preference_disagreement
from activelearn.strategies.least_compared import LeastComparedStrategy


def two_groups(size: int = 6) -> np.ndarray:
    return np.repeat([0, 1], size)


def members_with_clear_leader(m: int = 10, size: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0.0, -3.0, size)
    return base + rng.normal(scale=0.05, size=(m, size))


def test_double_ts_falls_back_to_the_best_challenger_when_members_agree() -> None:
    members = members_with_clear_leader()
    inp = SelectionInput(groups=np.zeros(6, dtype=np.int64), member_scores=members)
    pick = DoubleThompsonStrategy().select(inp, 1, np.random.default_rng(0))[0]
    # Every member ranks item 0 first and item 1 second: the leader meets its challenger.
    assert (pick.i, pick.j) == (0, 1)
    assert pick.propensity == pytest.approx(1.0)


def test_double_ts_follows_posterior_samples() -> None:
    # Two camps of members: half think item 2 is best, half item 4.
    members = np.zeros((10, 6))
    members[:5, 2] = 3.0
    members[5:, 4] = 3.0
    inp = SelectionInput(groups=np.zeros(6, dtype=np.int64), member_scores=members)
    seen = set()
    for seed in range(20):
        pick = DoubleThompsonStrategy().select(inp, 1, np.random.default_rng(seed))[0]
        seen.add((pick.i, pick.j))
    assert (2, 4) in seen
    assert all(2 in pair or 4 in pair for pair in seen)


def test_double_ts_batch_covers_groups_then_more_rounds_without_repeats() -> None:
    groups = np.repeat(np.arange(3), 5)
    members = np.random.default_rng(3).normal(size=(8, 15))
    inp = SelectionInput(groups=groups, member_scores=members, excluded=frozenset({(0, 1)}))
    picks = DoubleThompsonStrategy().select(inp, 7, np.random.default_rng(0))
    pairs = [(p.i, p.j) for p in picks]
    assert len(pairs) == 7 == len(set(pairs))
    assert (0, 1) not in pairs
    assert {groups[i] for i, _ in pairs} == {0, 1, 2}
    assert all(groups[i] == groups[j] and i < j for i, j in pairs)


def test_infomax_prefers_pairs_the_members_disagree_on() -> None:
    members = np.zeros((6, 4))
    members[:3, 0], members[3:, 1] = 2.0, 2.0  # members split on 0 vs 1
    members[:, 2], members[:, 3] = 1.0, -1.0  # all agree 2 beats 3
    inp = SelectionInput(groups=np.zeros(4, dtype=np.int64), member_scores=members)
    picks = InfomaxStrategy(max_per_item=1).select(inp, 2, np.random.default_rng(0))
    assert (picks[0].i, picks[0].j) == (0, 1)
    assert picks[0].score > picks[1].score >= 0.0
    info = _preference_disagreement(members, np.array([2]), np.array([3]))
    assert info[0] == pytest.approx(0.0, abs=1e-12)


def test_infomax_limits_large_groups_to_the_top_items() -> None:
    rng = np.random.default_rng(0)
    members = rng.normal(size=(5, 500))
    members[:, 7] += 10.0  # clearly the best item
    inp = SelectionInput(groups=np.zeros(500, dtype=np.int64), member_scores=members)
    picks = InfomaxStrategy(top_k=8, max_per_item=2).select(inp, 5, rng)
    top = np.argsort(-(members.mean(0) + members.std(0)))[:8]
    assert picks and all(p.i in top and p.j in top for p in picks)


@pytest.mark.parametrize("strategy", [DoubleThompsonStrategy(), InfomaxStrategy()])
def test_ensemble_strategies_need_member_scores(strategy) -> None:
    with pytest.raises(ValueError, match="ensemble"):
        strategy.select(SelectionInput(groups=np.zeros(3, dtype=np.int64)), 1, np.random.default_rng(0))


def test_large_groups_still_fill_the_batch_with_the_right_pairs() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    counts = rng.integers(1, 6, n)
    counts[[17, 2500, 999]] = 0
    groups = np.zeros(n, dtype=np.int64)
    inp = SelectionInput(groups=groups, counts=counts, member_scores=rng.normal(size=(6, n)))
    least = LeastComparedStrategy().select(inp, 3, rng)
    # The shortlist search agrees with the exhaustive rule: the zero-count items first.
    assert {least[0].i, least[0].j} <= {17, 999, 2500}
    assert sum(counts[p.i] + counts[p.j] for p in least) <= 0 + 1 + 2
    # One group, many rounds: double TS fills the whole batch.
    picks = DoubleThompsonStrategy().select(inp, 20, rng)
    assert len(picks) == 20 == len({(p.i, p.j) for p in picks})


def test_the_information_in_float32_matches_float64_and_stays_finite_when_members_are_sure() -> None:
    rng = np.random.default_rng(3)
    members = rng.normal(scale=3.0, size=(32, 200))
    members[:, 0] += 40.0  # every member sure item 0 wins: probabilities round to 1 in float32
    left, right = rng.integers(0, 200, 5_000), rng.integers(0, 200, 5_000)
    left[:10] = 0
    wide = _preference_disagreement(members, left, right)
    narrow = _preference_disagreement(members.astype(np.float32), left, right)
    assert narrow.dtype == np.float32 and np.isfinite(narrow).all()
    np.testing.assert_allclose(narrow, wide, atol=1e-5)
