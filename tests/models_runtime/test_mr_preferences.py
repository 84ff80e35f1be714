"""Tests for models_runtime.preferences and models_runtime.likelihood: the data
containers and every likelihood against brute-force formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from models_runtime.likelihood import PreferenceLikelihood
from models_runtime.preferences import LikelihoodConfig, PreferenceData
from models_runtime.simulate import simulate_pairs, simulate_rankings

SCORES = torch.tensor([0.3, -1.0, 2.0, 0.5, 0.0, 1.2], dtype=torch.float64)


def nll(data: PreferenceData, scores: torch.Tensor = SCORES, **config) -> np.ndarray:
    """Per-judgment NLLs under ``config``, without label flips unless it sets them."""
    lik = PreferenceLikelihood(LikelihoodConfig(**{"label_flip_rate": 0.0, **config}))
    return lik(scores, data.to_tensors()).numpy()


def pl_brute(order: list[int], s: np.ndarray, stages: int | None = None) -> float:
    """-log P(order) under Plackett–Luce, written out stage by stage."""
    stages = len(order) - 1 if stages is None else stages
    total = 0.0
    for j in range(stages):
        rest = order[j:]
        total -= s[order[j]] - math.log(sum(math.exp(s[i]) for i in rest))
    return total


# -- data ------------------------------------------------------------------------------


def test_from_pairs_defaults_and_dtypes() -> None:
    data = PreferenceData.from_pairs([0, 1], [1, 2])
    assert len(data) == data.n_pairs == 2 and data.n_rankings == 0
    assert data.pair_left.dtype == np.int64 and data.pair_outcome.dtype == np.float32
    np.testing.assert_array_equal(data.pair_outcome, [1.0, 1.0])
    np.testing.assert_array_equal(data.pair_weight, [1.0, 1.0])
    assert not data.pair_left.flags.writeable


def test_both_bad_is_stored_as_a_tie() -> None:
    data = PreferenceData.from_pairs([0, 1], [1, 2], [1.0, 0.0], both_bad=[False, True])
    np.testing.assert_array_equal(data.pair_outcome, [1.0, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"left": [0, 1], "right": [1]}, "entries"),
        ({"left": [0], "right": [1], "outcome": [1.5]}, r"\[0, 1\]"),
        ({"left": [0], "right": [1], "outcome": [np.nan]}, r"\[0, 1\]"),
        ({"left": [0.5], "right": [1]}, "integer"),
        ({"left": [-1], "right": [1]}, "negative"),
        ({"left": [2], "right": [2]}, "with itself"),
        ({"left": [0], "right": [1], "weight": [1.0, 2.0]}, "pair_weight"),
        ({"left": [0], "right": [1], "weight": [-1.0]}, "non-negative"),
    ],
)
def test_pair_validation(kwargs: dict, message: str) -> None:
    left, right = kwargs.pop("left"), kwargs.pop("right")
    with pytest.raises(ValueError, match=message):
        PreferenceData.from_pairs(left, right, **kwargs)


def test_from_rankings_pads_and_validates() -> None:
    data = PreferenceData.from_rankings([[3, 1, 2], [0, 4]])
    np.testing.assert_array_equal(data.rank_items, [[3, 1, 2], [0, 4, -1]])
    np.testing.assert_array_equal(data.rank_n_ranked, [3, 2])
    with pytest.raises(ValueError, match="fewer than two"):
        PreferenceData.from_rankings([[1]])
    with pytest.raises(ValueError, match="twice"):
        PreferenceData.from_rankings([[1, 2, 1]])
    with pytest.raises(ValueError, match="n_ranked"):
        PreferenceData.from_rankings([[1, 2, 3]], n_ranked=[4])
    with pytest.raises(ValueError, match="padding"):
        PreferenceData(
            pair_left=[],
            pair_right=[],
            pair_outcome=[],
            pair_both_bad=[],
            pair_weight=None,
            rank_items=np.array([[1, -1, 2]]),
            rank_n_ranked=[2],
            rank_weight=None,
        )


def test_combine_subset_select_and_items() -> None:
    pairs = PreferenceData.from_pairs([0, 1], [1, 2], [1.0, 0.5], weight=[1.0, 2.0])
    ranks = PreferenceData.from_rankings([[5, 3, 4, 0], [2, 6]], weight=[3.0, 4.0])
    both = PreferenceData.combine(pairs, ranks)
    assert (both.n_pairs, both.n_rankings, len(both)) == (2, 2, 4)
    np.testing.assert_array_equal(both.weight, [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(both.items(), [0, 1, 2, 3, 4, 5, 6])
    picked = both.select([1, 3])
    assert (picked.n_pairs, picked.n_rankings) == (1, 1)
    np.testing.assert_array_equal(picked.rank_items[0, :2], [2, 6])
    assert picked.pair_outcome[0] == 0.5
    assert len(PreferenceData.combine()) == 0 and len(PreferenceData.empty()) == 0


def test_pairwise_split_of_partial_ranking() -> None:
    # Top-2 of four shown items: 7 > 5 > {2, 9}.
    data = PreferenceData.from_rankings([[7, 5, 2, 9]], n_ranked=[2], weight=[2.0])
    split = data.pairwise_split()
    pairs = set(zip(split.pair_left.tolist(), split.pair_right.tolist(), strict=True))
    assert pairs == {(7, 5), (7, 2), (7, 9), (5, 2), (5, 9)}
    np.testing.assert_array_equal(split.pair_weight, np.full(5, 2.0))
    np.testing.assert_array_equal(split.pair_outcome, np.ones(5))


# -- likelihoods -------------------------------------------------------------------------


def test_plackett_luce_matches_brute_force_full_and_partial() -> None:
    s = SCORES.numpy()
    data = PreferenceData.from_rankings([[2, 0, 3, 1], [1, 4], [4, 3, 2, 5]], n_ranked=[4, 2, 2])
    expected = [pl_brute([2, 0, 3, 1], s), pl_brute([1, 4], s), pl_brute([4, 3, 2, 5], s, stages=2)]
    np.testing.assert_allclose(nll(data), expected, rtol=1e-12)


def test_plackett_luce_probabilities_sum_to_one_over_orderings() -> None:
    items = [0, 2, 3, 5]
    orders = [list(p) for p in itertools.permutations(items)]
    data = PreferenceData.from_rankings(orders)
    assert np.exp(-nll(data)).sum() == pytest.approx(1.0, abs=1e-12)


def test_plackett_luce_of_two_items_is_bradley_terry() -> None:
    ranking = PreferenceData.from_rankings([[1, 3]])
    pair = PreferenceData.from_pairs([1], [3])
    np.testing.assert_allclose(nll(ranking), nll(pair), rtol=1e-12)


def test_pairwise_split_likelihood_scores_the_implied_pairs() -> None:
    data = PreferenceData.from_rankings([[4, 3, 2, 5]], n_ranked=[2])
    by_split = nll(data.pairwise_split()).sum()
    assert nll(data, listwise="pairwise_split")[0] == pytest.approx(by_split, rel=1e-12)


def test_davidson_ties_match_formula() -> None:
    s = SCORES.numpy()
    nu = 0.8
    data = PreferenceData.from_pairs([0, 2, 3], [1, 0, 5], [1.0, 0.5, 0.0])
    pi = np.exp(s)

    def denom(i: int, j: int) -> float:
        return pi[i] + pi[j] + nu * math.sqrt(pi[i] * pi[j])

    expected = [
        -math.log(pi[0] / denom(0, 1)),
        -math.log(nu * math.sqrt(pi[2] * pi[0]) / denom(2, 0)),
        -math.log(pi[5] / denom(3, 5)),
    ]
    np.testing.assert_allclose(nll(data, ties="davidson", tie_param=nu), expected, rtol=1e-10)


def test_rao_kupper_ties_match_formula() -> None:
    s = SCORES.numpy()
    theta = 1.7
    data = PreferenceData.from_pairs([0, 2, 3], [1, 0, 5], [1.0, 0.5, 0.0])
    pi = np.exp(s)

    def p_win(i: int, j: int) -> float:
        return pi[i] / (pi[i] + theta * pi[j])

    expected = [
        -math.log(p_win(0, 1)),
        -math.log(1 - p_win(2, 0) - p_win(0, 2)),
        -math.log(p_win(5, 3)),
    ]
    np.testing.assert_allclose(nll(data, ties="rao_kupper", tie_param=theta), expected, rtol=1e-10)


@pytest.mark.parametrize("ties", ["davidson", "rao_kupper", "soft"])
def test_outcome_probabilities_sum_to_one(ties: str) -> None:
    data = PreferenceData.from_pairs([0, 1, 2, 3], [1, 2, 3, 4], [1.0, 0.5, 0.0, 0.5])
    lik = PreferenceLikelihood(LikelihoodConfig(ties=ties, label_flip_rate=0.1))
    p_left, p_tie, p_right = lik.pair_probabilities(SCORES, data.to_tensors())
    np.testing.assert_allclose((p_left + p_tie + p_right).numpy(), 1.0, atol=1e-12)
    if ties == "soft":
        assert float(p_tie.abs().max()) == 0.0


def test_soft_ties_are_half_labels() -> None:
    s = SCORES.numpy()
    data = PreferenceData.from_pairs([0], [1], [0.5])
    d = s[0] - s[1]
    expected = -0.5 * math.log(1 / (1 + math.exp(-d))) - 0.5 * math.log(1 / (1 + math.exp(d)))
    assert nll(data, ties="soft")[0] == pytest.approx(expected, rel=1e-12)


def test_tie_parameter_from_tie_rate() -> None:
    # Equal items tie with the data's tie share.
    for ties in ("davidson", "rao_kupper"):
        config = LikelihoodConfig(ties=ties)
        data = PreferenceData.from_pairs([0, 1, 2, 3], [1, 2, 3, 4], [1.0, 0.5, 0.0, 1.0])
        assert data.tie_rate() == pytest.approx(0.25)
        lik = PreferenceLikelihood(config)
        _, p_tie, _ = lik.pair_probabilities(torch.zeros(5, dtype=torch.float64), data.to_tensors())
        np.testing.assert_allclose(p_tie.detach().numpy(), 0.25, atol=1e-9)
    # No ties at all: Davidson and Rao–Kupper reduce to Bradley–Terry.
    decided = PreferenceData.from_pairs([0, 2], [1, 3], [1.0, 0.0])
    for ties in ("davidson", "rao_kupper"):
        np.testing.assert_allclose(nll(decided, ties=ties), nll(decided, ties="soft"), rtol=1e-9)


def test_label_flip_mixes_winner_and_loser() -> None:
    s = SCORES.numpy()
    eps = 0.2
    data = PreferenceData.from_pairs([1], [2])  # the much worse item won
    p = 1 / (1 + math.exp(-(s[1] - s[2])))
    expected = -math.log((1 - eps) * p + eps * (1 - p))
    assert nll(data, ties="soft", label_flip_rate=eps)[0] == pytest.approx(expected, rel=1e-12)
    # A flip-robust likelihood bounds the loss of a confident mistake.
    big = torch.tensor([0.0, 40.0], dtype=torch.float64)
    upset = PreferenceData.from_pairs([0], [1])
    assert nll(upset, big, label_flip_rate=eps)[0] <= -math.log(eps) + 1e-9
    assert nll(upset, big)[0] > 30


def test_both_bad_adds_a_low_quality_signal() -> None:
    data_tie = PreferenceData.from_pairs([0, 4], [3, 5], [0.5, 1.0])
    data_bad = PreferenceData.from_pairs([0, 4], [3, 5], [0.5, 1.0], both_bad=[True, False])
    plain, bad = nll(data_tie), nll(data_bad)
    assert bad[1] == pytest.approx(plain[1])
    assert bad[0] > plain[0]
    # The term pushes both items down relative to the others and is shift invariant.
    scores = SCORES.clone().requires_grad_(True)
    lik = PreferenceLikelihood(LikelihoodConfig())
    lik(scores, data_bad.to_tensors())[0].backward()
    assert scores.grad[0] > 0 and scores.grad[3] > 0
    shifted = nll(data_bad, SCORES + 7.0)
    np.testing.assert_allclose(shifted, bad, rtol=1e-10)
    assert nll(data_bad, both_bad_weight=0.0)[0] == pytest.approx(plain[0])


def test_batched_member_scores() -> None:
    data = PreferenceData.combine(
        PreferenceData.from_pairs([0, 1], [2, 3], [1.0, 0.5], both_bad=[False, True]),
        PreferenceData.from_rankings([[5, 4, 3]]),
    )
    members = torch.stack([SCORES, SCORES * 0.5, -SCORES])
    lik = PreferenceLikelihood(LikelihoodConfig(label_flip_rate=0.05))
    batched = lik(members, data.to_tensors())
    assert batched.shape == (3, 3)
    for m in range(3):
        np.testing.assert_allclose(batched[m].numpy(), lik(members[m], data.to_tensors()).numpy(), rtol=1e-12)


@pytest.mark.parametrize("ties", ["davidson", "rao_kupper", "soft"])
def test_learned_flip_rate_gives_proper_outcome_probabilities(ties: str) -> None:
    """With ε learned (one per member), every pair's left / tie / right
    probabilities sum to one and equal those of the same ε fixed."""
    data = PreferenceData.from_pairs([0, 1, 2, 3, 5], [1, 2, 3, 4, 0], [1.0, 0.5, 0.0, 0.5, 1.0])
    members = torch.stack([SCORES, 3.0 * SCORES, -SCORES])
    eps = np.array([0.01, 0.2, 0.45])
    lik = PreferenceLikelihood(LikelihoodConfig(ties=ties, label_flip_rate=None), flip_rate=eps)
    assert lik.learns_flip_rate
    np.testing.assert_allclose(lik.flip_rate(), eps, rtol=1e-6)
    p_left, p_tie, p_right = (p.detach() for p in lik.pair_probabilities(members, data.to_tensors()))
    np.testing.assert_allclose((p_left + p_tie + p_right).numpy(), 1.0, atol=1e-12)
    for m, e in enumerate(lik.flip_rate()):
        fixed = PreferenceLikelihood(LikelihoodConfig(ties=ties, label_flip_rate=float(e)))
        f_left, f_tie, f_right = fixed.pair_probabilities(members[m], data.to_tensors())
        np.testing.assert_allclose(p_left[m].numpy(), f_left.numpy(), rtol=1e-10)
        np.testing.assert_allclose(p_tie[m].numpy(), f_tie.numpy(), rtol=1e-10)
        np.testing.assert_allclose(p_right[m].numpy(), f_right.numpy(), rtol=1e-10)


def test_learned_flip_rate_scores_rankings_like_the_same_fixed_one_and_is_trainable() -> None:
    data = PreferenceData.combine(
        PreferenceData.from_pairs([0, 1], [2, 3], [1.0, 0.0]), PreferenceData.from_rankings([[5, 4, 3, 2]])
    )
    for listwise in ("pairwise_split", "plackett_luce"):
        lik = PreferenceLikelihood(LikelihoodConfig(listwise=listwise, label_flip_rate=None), flip_rate=0.15)
        fixed = nll(data, listwise=listwise, label_flip_rate=float(lik.flip_rate()))
        learned = lik(SCORES, data.to_tensors())
        np.testing.assert_allclose(learned.detach().numpy(), fixed, rtol=1e-10)
        learned.sum().backward()
        assert lik.flip_logit.grad is not None and torch.isfinite(lik.flip_logit.grad).all()
    # The upset pair (item 1 beat the much better item 2) asks for more flips.
    upset = PreferenceData.from_pairs([1], [2])
    lik = PreferenceLikelihood(LikelihoodConfig(label_flip_rate=None))
    lik(SCORES, upset.to_tensors()).sum().backward()
    assert float(lik.flip_logit.grad) < 0.0


def test_flip_rate_prior_is_the_beta_density() -> None:
    """prior_nll is −log of the Beta prior's density, up to a constant: differences
    between two ε match scipy's, and it starts at the prior mean."""
    stats = pytest.importorskip("scipy.stats")
    from models_runtime.likelihood import FLIP_PRIOR, FLIP_PRIOR_MEAN

    eps = np.array([0.005, 0.05, 0.3])
    lik = PreferenceLikelihood(LikelihoodConfig(label_flip_rate=None), flip_rate=eps)
    ours = lik.prior_nll().detach().double().numpy()
    theirs = -stats.beta(*FLIP_PRIOR).logpdf(lik.flip_rate())
    np.testing.assert_allclose(ours - ours[1], theirs - theirs[1], rtol=1e-5)
    assert float(PreferenceLikelihood().flip_rate()) == pytest.approx(FLIP_PRIOR_MEAN, rel=1e-6)


def test_likelihood_config_validation() -> None:
    assert LikelihoodConfig().label_flip_rate is None  # learned unless a study fixes it
    assert not PreferenceLikelihood(LikelihoodConfig(label_flip_rate=0.1)).learns_flip_rate
    assert list(PreferenceLikelihood(LikelihoodConfig(label_flip_rate=0.0)).parameters()) == []
    with pytest.raises(ValueError, match="ties"):
        LikelihoodConfig(ties="glicko")
    with pytest.raises(ValueError, match="label_flip_rate"):
        LikelihoodConfig(label_flip_rate=0.5)
    with pytest.raises(ValueError, match="listwise"):
        LikelihoodConfig(listwise="bradley")
    with pytest.raises(ValueError, match="tie_param"):
        LikelihoodConfig(ties="rao_kupper", tie_param=0.9)


def test_simulators_follow_their_models() -> None:
    rng = np.random.default_rng(0)
    u = np.array([0.0, 1.0, 2.0])
    pairs = simulate_pairs(u, 20_000, rng, tie_param=0.5)
    d = u[pairs.pair_left] - u[pairs.pair_right]
    mask = np.isclose(d, -2.0)  # item 0 vs item 2
    p_tie = 0.5 / (math.exp(-1.0) + math.exp(1.0) + 0.5)
    assert np.mean(pairs.pair_outcome[mask] == 0.5) == pytest.approx(p_tie, abs=0.02)
    ranks = simulate_rankings(u, 20_000, 3, rng)
    top = ranks.rank_items[:, 0]
    np.testing.assert_allclose(np.bincount(top, minlength=3) / 20_000, np.exp(u) / np.exp(u).sum(), atol=0.015)


@pytest.mark.parametrize("gap", [5.0, 20.0, 40.0, -25.0])
def test_rao_kupper_gradients_stay_finite_for_confident_pairs(gap: float) -> None:
    scores = torch.tensor([gap, 0.0], dtype=torch.float32, requires_grad=True)
    data = PreferenceData.from_pairs([0, 0], [1, 1], [1.0, 0.5])
    lik = PreferenceLikelihood(LikelihoodConfig(ties="rao_kupper", tie_param=1.5))
    nll = lik(scores, data.to_tensors())
    nll.sum().backward()
    assert torch.isfinite(nll).all() and torch.isfinite(scores.grad).all()
    # The tie term matches the float64 value.
    exact = lik(scores.detach().double(), data.to_tensors())
    assert float(nll[1].detach()) == pytest.approx(float(exact[1]), rel=1e-4)
