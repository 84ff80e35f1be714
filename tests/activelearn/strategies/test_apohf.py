"""APOHF: the predicted best item against its most optimistic challenger, streamed,
calibrated to the model's scale and diversified over a batch."""

import numpy as np
import pytest

from activelearn.strategies.apohf import ApohfStrategy
from activelearn.strategies.base import SelectionInput, group_members
from tests.activelearn.strategies.inputs import DenseGradients

RNG = np.random.default_rng(0)


def _pairs(picks) -> list[tuple[int, int]]:
    return [(p.i, p.j) for p in picks]


def _select(scores, grads, groups, n, *, diag=None, chunk_size=7, excluded=frozenset(), **params):
    source = DenseGradients(grads, diag, chunk_size=chunk_size)
    inp = SelectionInput(
        groups=np.asarray(groups),
        scores=np.asarray(scores, dtype=float),
        gradients=source,
        excluded=frozenset(excluded),
    )
    return ApohfStrategy(**params).select(inp, n, np.random.default_rng(0))


def _random_problem(n_groups: int, size: int, p: int, seed: int):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), size)
    rng.shuffle(groups)  # groups need not be contiguous
    scores = rng.normal(size=groups.size)
    grads = rng.normal(size=(groups.size, p))
    diag = 1.0 + rng.exponential(size=p) * 3
    return scores, grads, groups, diag


def _brute_force(scores, grads, groups, diag, n, nu, relative):
    """The documented algorithm, densely, for at most one round (n ≤ number of groups)
    or a single group: all bonuses from the full matrix, recomputed after every pair."""
    members = group_members(groups)
    firsts = [int(m[np.lexsort((m, -scores[m]))[0]]) for m in members]

    def bonus(m, x1, u_diag):
        return np.sqrt((((grads[m] - grads[x1]) ** 2) / u_diag).sum(axis=1))

    b0 = [bonus(m, x1, diag) for m, x1 in zip(members, firsts, strict=True)]
    if relative:
        residuals = np.concatenate([scores[m] - scores[m].mean() for m in members])
        q75, q25 = np.percentile(residuals, [75, 25])
        spread = (q75 - q25) / 1.349
        candidate_bonus = np.concatenate([b[m != x1] for b, m, x1 in zip(b0, members, firsts, strict=True)])
        weight = nu * spread / np.median(candidate_bonus)
    else:
        weight = nu
    gains = [
        np.max(np.where(m != x1, scores[m] + weight * b, -np.inf)) - scores[x1]
        for b, m, x1 in zip(b0, members, firsts, strict=True)
    ]
    order = np.argsort(-np.array(gains), kind="stable")
    u_diag = diag.astype(float).copy()
    taken: set[tuple[int, int]] = set()
    out = []
    while len(out) < n:
        for g in order:
            m, x1 = members[g], firsts[g]
            values = scores[m] + weight * bonus(m, x1, u_diag)
            values[m == x1] = -np.inf
            values[[tuple(sorted((x1, int(x)))) in taken for x in m]] = -np.inf
            x2 = int(m[np.argmax(values)])
            pair = tuple(sorted((x1, x2)))
            taken.add(pair)
            out.append((pair, float(np.max(values) - scores[x1])))
            u_diag += (grads[x1] - grads[x2]) ** 2
            if len(out) == n:
                break
    return out


def test_the_first_item_is_the_predicted_best_and_nu_zero_pairs_it_with_the_runner_up():
    scores = np.array([0.3, 2.0, -1.0, 1.5, 0.9])
    grads = RNG.normal(size=(5, 4))
    (pick,) = _select(scores, grads, np.zeros(5, dtype=int), 1, nu=0.0)
    assert (pick.i, pick.j) == (1, 3), "x1 = argmax utility, x2 = the runner-up when nu = 0"
    assert pick.score == pytest.approx(1.5 - 2.0)
    assert pick.propensity == 1.0


def test_large_nu_picks_the_item_least_measured_against_x1_under_the_design():
    # Euclidean distance to x1 would favour item 1; the design has measured coordinate 0
    # a lot (U_00 = 100), so under U item 2 is the one the data say least about.
    scores = np.array([1.0, 0.0, -0.5, 0.2])
    grads = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 2.0], [0.1, 0.1]])
    diag = np.array([100.0, 1.0])
    for relative in (True, False):
        (pick,) = _select(scores, grads, np.zeros(4, dtype=int), 1, diag=diag, nu=1e6, relative=relative)
        assert (pick.i, pick.j) == (0, 2)


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("nu", [0.3, 1.0, 4.0])
def test_a_round_of_pairs_equals_the_dense_brute_force(relative, nu):
    scores, grads, groups, diag = _random_problem(n_groups=12, size=9, p=6, seed=int(nu * 10) + relative)
    picks = _select(scores, grads, groups, 12, diag=diag, nu=nu, relative=relative)
    expected = _brute_force(scores, grads, groups, diag, 12, nu, relative)
    assert _pairs(picks) == [pair for pair, _ in expected]
    assert [p.score for p in picks] == pytest.approx([gain for _, gain in expected])
    assert len({groups[p.i] for p in picks}) == 12, "one pair per group in the first round"


def test_many_pairs_in_one_group_equal_the_dense_brute_force_with_fantasy_updates():
    scores, grads, groups, diag = _random_problem(n_groups=1, size=40, p=5, seed=7)
    picks = _select(scores, grads, groups, 10, diag=diag, nu=1.0, eval_batch=2)
    expected = _brute_force(scores, grads, groups, diag, 10, 1.0, True)
    assert _pairs(picks) == [pair for pair, _ in expected]
    assert [p.score for p in picks] == pytest.approx([gain for _, gain in expected])


def test_the_choice_does_not_depend_on_the_chunk_size():
    scores, grads, groups, diag = _random_problem(n_groups=6, size=15, p=8, seed=3)
    runs = [_select(scores, grads, groups, 20, diag=diag, chunk_size=size) for size in (1, 4, groups.size)]
    assert _pairs(runs[0]) == _pairs(runs[1]) == _pairs(runs[2])
    assert [p.score for p in runs[0]] == pytest.approx([p.score for p in runs[2]])


def test_excluded_pairs_are_skipped_for_the_next_best_challenger():
    scores = np.array([3.0, 2.0, 1.0, 0.0])
    grads = RNG.normal(size=(4, 3))
    groups = np.zeros(4, dtype=int)
    (pick,) = _select(scores, grads, groups, 1, nu=0.0, excluded={(0, 1)})
    assert (pick.i, pick.j) == (0, 2)


def test_when_x1_has_no_open_partner_the_next_best_item_becomes_x1():
    scores = np.array([3.0, 2.0, 1.0, 0.0])
    grads = RNG.normal(size=(4, 3))
    groups = np.zeros(4, dtype=int)
    excluded = {(0, 1), (0, 2), (0, 3)}
    picks = _select(scores, grads, groups, 5, nu=0.0, excluded=excluded)
    assert _pairs(picks) == [(1, 2), (1, 3), (2, 3)], "x1 moves to item 1, then 2; the pool then runs dry"
    assert not set(_pairs(picks)) & excluded


def test_a_batch_spreads_over_groups_before_repeating_one_and_never_repeats_a_pair():
    scores, grads, groups, diag = _random_problem(n_groups=5, size=6, p=4, seed=11)
    picks = _select(scores, grads, groups, 13, diag=diag, excluded={(0, 1), (2, 3)})
    pairs = _pairs(picks)
    assert len(pairs) == 13 and len(set(pairs)) == 13
    assert not set(pairs) & {(0, 1), (2, 3)}
    assert all(i < j and groups[i] == groups[j] for i, j in pairs)
    rounds = [[groups[i] for i, _ in pairs[k : k + 5]] for k in (0, 5, 10)]
    assert sorted(rounds[0]) == sorted(rounds[1]) == list(range(5)), "every group once per round"
    assert len(set(rounds[2])) == 3


def test_a_pending_pair_steers_the_next_pair_of_its_group_elsewhere():
    # Items 1 and 2 are near-duplicates, far from x1 = item 0 along axis 0; item 3 is a
    # little closer but along axis 1. Without the fantasy update the second pair would
    # be (0, 2), which asks nearly the same question as the pending (0, 1).
    scores = np.array([1.0, 0.0, 0.0, 0.0])
    grads = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [3.0, 0.01, 0.0], [0.0, 2.7, 0.0]])
    picks = _select(scores, grads, np.zeros(4, dtype=int), 2, nu=10.0, relative=False)
    assert _pairs(picks) == [(0, 2), (0, 3)]
    assert picks[1].score < picks[0].score


def test_max_per_item_moves_x1_to_the_next_best_item():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    grads = RNG.normal(size=(6, 3))
    picks = _select(scores, grads, np.zeros(6, dtype=int), 3, nu=0.0, max_per_item=1)
    assert _pairs(picks) == [(0, 1), (2, 3), (4, 5)]


@pytest.mark.parametrize(
    ("score_factor", "score_shift", "grad_factor"),
    [(100.0, 0.0, 1.0), (0.01, 7.0, 1.0), (1.0, 0.0, 100.0), (1.0, 0.0, 0.01), (30.0, -2.0, 5.0)],
)
def test_relative_nu_makes_a_whole_batch_independent_of_the_models_scale(score_factor, score_shift, grad_factor):
    # Gradients scaled by a come with a design scaled by a² (the ridge scales with them),
    # as they would if the features' normalisation changed.
    scores, grads, groups, diag = _random_problem(n_groups=8, size=10, p=6, seed=5)
    base = _select(scores, grads, groups, 20, diag=diag, nu=1.0)
    scaled = _select(
        scores * score_factor + score_shift, grads * grad_factor, groups, 20, diag=diag * grad_factor**2, nu=1.0
    )
    assert _pairs(scaled) == _pairs(base)
    assert [p.score for p in scaled] == pytest.approx([p.score * score_factor for p in base])


@pytest.mark.parametrize(("grad_factor", "design_factor"), [(100.0, 1.0), (0.01, 1.0), (1.0, 50.0), (3.0, 0.1)])
def test_relative_nu_makes_each_groups_first_pair_independent_of_gradient_or_design_scale(grad_factor, design_factor):
    scores, grads, groups, diag = _random_problem(n_groups=8, size=10, p=6, seed=5)
    for g in range(8):
        alone = np.where(groups == g, -1, np.arange(groups.size))  # every other item a singleton
        base = _select(scores, grads, alone, 1, diag=diag, nu=1.0)
        scaled = _select(scores, grads * grad_factor, alone, 1, diag=diag * design_factor, nu=1.0)
        assert _pairs(scaled) == _pairs(base)
        assert scaled[0].score == pytest.approx(base[0].score)


def test_raw_nu_on_large_gradients_is_pure_exploration_which_relative_nu_avoids():
    # The failure the calibration fixes: utilities span ~1, gradient differences ~100.
    rng = np.random.default_rng(2)
    scores = np.linspace(1.0, 0.0, 30)
    grads = rng.normal(size=(30, 8)) * 100
    groups = np.zeros(30, dtype=int)
    diag = np.ones(8)
    exploring = _select(scores, grads, groups, 1, diag=diag, nu=1e9, relative=False)[0]
    raw = _select(scores, grads, groups, 1, diag=diag, nu=1.0, relative=False)[0]
    calibrated = _select(scores, grads, groups, 1, diag=diag, nu=1.0)[0]
    assert (raw.i, raw.j) == (exploring.i, exploring.j), "raw nu = 1 only explores here"
    assert (calibrated.i, calibrated.j) != (exploring.i, exploring.j)
    assert scores[calibrated.j] > scores[exploring.j], "relative nu keeps the challenger competitive"


def test_a_large_pool_is_streamed_in_one_pass_plus_a_few_rows_per_pair():
    n_items, n_groups, p = 50_000, 2_000, 16
    rng = np.random.default_rng(4)
    groups = rng.integers(0, n_groups, size=n_items)
    source = DenseGradients(rng.normal(size=(n_items, p)), chunk_size=1024)
    inp = SelectionInput(groups=groups, scores=rng.normal(size=n_items), gradients=source)
    picks = ApohfStrategy().select(inp, 32, np.random.default_rng(0))
    assert len(picks) == 32 and len({groups[p.i] for p in picks}) == 32
    assert source.largest_chunk <= 1024
    assert source.rows_served <= n_items + n_groups + 32 * (16 + 1 + 2) * 2


def test_no_model_or_no_gradients_is_an_error():
    groups = np.zeros(3, dtype=int)
    with pytest.raises(ValueError, match="needs a model with gradient features"):
        ApohfStrategy().select(SelectionInput(groups=groups, scores=np.zeros(3)), 1, RNG)
    source = DenseGradients(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="needs a model with gradient features"):
        ApohfStrategy().select(SelectionInput(groups=groups, gradients=source), 1, RNG)


@pytest.mark.parametrize(
    "params",
    [
        {"nu": -1.0},
        {"nu": float("nan")},
        {"nu": float("inf")},
        {"nu": "1"},
        {"max_per_item": 0},
        {"max_per_item": True},
        {"eval_batch": 0},
        {"relative": "yes"},
    ],
)
def test_bad_parameters_are_rejected(params):
    with pytest.raises(ValueError):
        ApohfStrategy(**params)


@pytest.mark.parametrize(
    ("scores", "diag", "match"),
    [
        (np.array([0.0, 1.0]), np.ones(2), "shape"),
        (np.array([0.0, np.nan, 1.0]), np.ones(2), "NaN"),
        (np.zeros(3), np.array([1.0, 0.0]), "positive"),
        (np.zeros(3), np.ones(3), "shape"),
    ],
)
def test_bad_inputs_are_rejected(scores, diag, match):
    source = DenseGradients(np.ones((3, 2)), diag)
    inp = SelectionInput(groups=np.zeros(3, dtype=int), scores=scores, gradients=source)
    with pytest.raises(ValueError, match=match):
        ApohfStrategy().select(inp, 1, RNG)


@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_direct_bonuses_of_a_real_model_choose_what_gradient_rows_choose(head: str) -> None:
    from models_runtime.gradients import GradientFeatureSource
    from models_runtime.reward import RewardModelConfig, fit_reward_model
    from models_runtime.simulate import linear_utilities, simulate_pairs

    rng = np.random.default_rng(5)
    features, utility = linear_utilities(120, 16, rng)
    data = simulate_pairs(utility, 200, rng)
    model = fit_reward_model(features, data, RewardModelConfig(head=head, device="cpu")).model
    source = GradientFeatureSource(model, features, data.pair_left, data.pair_right, chunk_size=32)

    class RowsOnly:
        dim, design_diag, chunks = source.dim, source.design_diag, source.chunks

    groups = np.repeat(np.arange(4), 30)
    scores = model.scores(features)
    fast = ApohfStrategy().select(SelectionInput(groups=groups, scores=scores, gradients=source), 8, rng)
    rows = ApohfStrategy().select(SelectionInput(groups=groups, scores=scores, gradients=RowsOnly()), 8, rng)
    assert [(p.i, p.j) for p in fast] == [(p.i, p.j) for p in rows]
    np.testing.assert_allclose([p.score for p in fast], [p.score for p in rows], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_closed_form_source_chooses_what_generic_per_sample_gradients_choose(monkeypatch, head: str) -> None:
    """For the standard heads the source builds its design and bonuses from the head's
    activations; on a small random model that gives the batch (and scores) of the
    generic per-sample gradient rows, over several rounds of fantasy updates."""
    import models_runtime.gradients as gradients_module
    from models_runtime.gradients import GradientFeatureSource
    from models_runtime.reward import RewardModel, RewardModelConfig, _seeded_head

    rng = np.random.default_rng(12)
    features = rng.standard_normal((90, 12)).astype(np.float32) * 2.0
    config = RewardModelConfig(head=head, hidden=8, seed=3, device="cpu")
    model = RewardModel(_seeded_head(12, config), config, 12)
    left, right = rng.integers(0, 90, 150), rng.integers(0, 90, 150)
    groups = np.repeat(np.arange(3), 30)
    scores = model.scores(features)
    fast_source = GradientFeatureSource(model, features, left, right, reg=0.01)
    monkeypatch.setattr(gradients_module, "_closed_form_gradients", lambda model: None)
    generic_source = GradientFeatureSource(model, features, left, right, reg=0.01)
    assert generic_source.bonuses(np.arange(3), np.zeros(3, dtype=int), np.ones(generic_source.dim)) is None

    def choose(source, nu: float):
        inp = SelectionInput(groups=groups, scores=scores, gradients=source)
        return ApohfStrategy(nu=nu).select(inp, 12, np.random.default_rng(0))

    for nu in (1.0, 4.0):
        fast, generic = choose(fast_source, nu), choose(generic_source, nu)
        assert _pairs(fast) == _pairs(generic)
        np.testing.assert_allclose([p.score for p in fast], [p.score for p in generic], rtol=1e-5)
        assert _pairs(fast) != _pairs(choose(fast_source, 0.0)), "the bonus decides some of the pairs"
