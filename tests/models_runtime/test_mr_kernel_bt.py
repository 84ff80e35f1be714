"""The Bayesian kernel Bradley–Terry model: the evidence picks the kernel the
judgments call for, the posterior is sharp where judgments are and wide elsewhere,
a saved model scores as it did, and the publishing gate refuses a fit that does not
beat a coin on its validation split."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from models_runtime import kinds
from models_runtime.kernel_bt import KernelBTConfig, KernelBTModel, KernelFeatureMap, choose_hyper, fit_kernel_bt
from models_runtime.preferences import PreferenceData
from models_runtime.simulate import PreferenceOracle


def _judged(utility: np.ndarray, n: int, rng: np.random.Generator, scale: float = 3.0) -> PreferenceData:
    left = rng.integers(0, utility.size, n)
    right = (left + rng.integers(1, utility.size, n)) % utility.size
    oracle = PreferenceOracle(utility, scale=scale)
    return PreferenceData.from_pairs(left, right, oracle.answer_pairs(left, right, rng))


def _features(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_evidence_picks_a_linear_kernel_for_a_linear_utility_and_a_wavy_one_for_a_wavy_utility() -> None:
    rng = np.random.default_rng(0)
    x = _features(300, 32, rng)
    config = KernelBTConfig()
    fmap = KernelFeatureMap.fit(x, config)
    linear = x @ rng.standard_normal(32)
    linear = (linear - linear.mean()) / linear.std()
    choice, table = choose_hyper(fmap, x, _judged(linear, 400, rng), config)
    assert choice.nonlinear_share < 1.0
    assert len(table) == len(config.grid())
    # A utility that is a sharp function of the leading principal direction.
    z = fmap.z_scale * ((x - fmap.center) @ fmap.directions[0])
    wavy = np.sin(6.0 * z)
    wavy = (wavy - wavy.mean()) / wavy.std()
    choice, _ = choose_hyper(fmap, x, _judged(wavy, 400, rng), config)
    assert choice.nonlinear_share > 0.0


def test_the_posterior_is_narrow_where_judgments_are_and_wide_where_none_are() -> None:
    rng = np.random.default_rng(1)
    x = _features(200, 16, rng)
    utility = x @ rng.standard_normal(16)
    utility = (utility - utility.mean()) / utility.std()
    # Judgments only among the first 100 candidates.
    left = rng.integers(0, 100, 300)
    right = (left + rng.integers(1, 100, 300)) % 100
    data = PreferenceData.from_pairs(left, right, PreferenceOracle(utility, scale=3.0).answer_pairs(left, right, rng))
    config = KernelBTConfig(prior_sds=(3.0,), nonlinear_shares=(1.0,), length_scales=(0.25,), item_shares=(0.0,))
    result = fit_kernel_bt(x, data, config)
    mean, samples = result.model.posterior(x, data, np.random.default_rng(2), 256)
    # Only differences of utilities are identified: measure each draw against its
    # own mean over the judged candidates.
    spread = (samples - samples[:, :100].mean(axis=1, keepdims=True)).std(axis=0)
    assert spread[:100].mean() < 0.7 * spread[100:].mean()
    assert np.corrcoef(mean[:100], utility[:100])[0, 1] > 0.8
    assert samples.shape == (256, 200)


def test_a_saved_model_loads_and_scores_the_same(tmp_path) -> None:
    rng = np.random.default_rng(3)
    x = _features(120, 24, rng)
    utility = np.sin(3 * x[:, 0]) + x[:, 1]
    data = _judged(utility, 150, rng)
    model = fit_kernel_bt(x, data, KernelBTConfig(seed=5)).model
    model.save(tmp_path / "v1")
    loaded = KernelBTModel.load(tmp_path / "v1")
    assert loaded.choice == model.choice
    np.testing.assert_allclose(loaded.scores(x), model.scores(x), rtol=1e-6, atol=1e-6)
    # New candidates (imported after the fit) are scored through the saved map.
    extra = _features(10, 24, rng)
    np.testing.assert_allclose(loaded.scores(extra), model.scores(extra), rtol=1e-6, atol=1e-6)
    a = loaded.posterior(x, data, np.random.default_rng(0), 8)[1]
    b = model.posterior(x, data, np.random.default_rng(0), 8)[1]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_fit_that_does_not_beat_a_coin_on_its_validation_split_is_not_published() -> None:
    rng = np.random.default_rng(4)
    x = _features(60, 8, rng)
    left = rng.integers(0, 60, 80)
    right = (left + rng.integers(1, 60, 80)) % 60
    # Random answers: nothing to learn.
    noise = PreferenceData.from_pairs(left, right, (rng.random(80) < 0.5).astype(np.float32))
    held = np.arange(0, 80, 4)
    result = fit_kernel_bt(x, noise, KernelBTConfig(), holdout=held)
    assert result.metrics["monitored_heldout"] == 1.0
    assert result.metrics["n_heldout"] == held.size
    assert result.metrics["heldout_log_loss"] >= math.log(2.0) or result.metrics["best_epoch"] == 1.0
    if result.metrics["heldout_log_loss"] >= math.log(2.0):
        assert result.metrics["best_epoch"] == 0.0
    # Clear answers: published.
    utility = x @ rng.standard_normal(8)
    clear = PreferenceData.from_pairs(left, right, PreferenceOracle(utility, scale=10.0).answer_pairs(left, right, rng))
    result = fit_kernel_bt(x, clear, KernelBTConfig(), holdout=held)
    assert result.metrics["best_epoch"] == 1.0
    assert result.metrics["heldout_accuracy"] > 0.7


def test_ties_and_rankings_are_judgments_too_and_no_judgment_leaves_the_prior() -> None:
    rng = np.random.default_rng(6)
    x = _features(30, 8, rng)
    data = PreferenceData.from_pairs([0, 1, 2], [3, 4, 5], [1.0, 0.5, 0.0])
    ranked = PreferenceData.from_rankings(np.array([[6, 7, 8, 9]]))
    for judged in (data, ranked):
        result = fit_kernel_bt(x, judged, KernelBTConfig())
        assert np.isfinite(result.model.scores(x)).all()
    empty = PreferenceData.from_pairs([], [], [])
    result = fit_kernel_bt(x, empty, KernelBTConfig())
    mean, samples = result.model.posterior(x, empty, np.random.default_rng(0), 64)
    assert np.allclose(mean, 0.0)
    assert samples.std() > 0.3


def test_the_kind_gives_members_and_scores_conditioned_on_the_judgments_it_is_handed() -> None:
    rng = np.random.default_rng(7)
    x = _features(80, 16, rng)
    utility = x @ rng.standard_normal(16)
    data = _judged(utility, 100, rng)
    kind = kinds.get("kernel")
    config = kind.config({"seed": 3}, "cpu")
    model = kind.fit(x, data, config, None).model
    outputs = kind.outputs(model, x, "member_scores", lambda: data)
    assert outputs["member_scores"].shape == (config.n_samples, 80)
    assert outputs["scores"].shape == (80,)
    again = kind.outputs(model, x, "member_scores", lambda: data)
    np.testing.assert_array_equal(outputs["member_scores"], again["member_scores"])


@pytest.mark.parametrize("bad", [{"prior_sds": ()}, {"nonlinear_shares": (1.5,)}, {"length_scales": (0.0,)}])
def test_a_bad_grid_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        KernelBTConfig(**bad)


def test_a_large_study_drops_candidates_own_effects_and_chooses_on_a_sample() -> None:
    """The cost guards: past ``max_item_effects`` judged candidates the weights are
    the features' alone, and the evidence reads at most ``evidence_judgments``."""
    from models_runtime.kernel_bt import HyperChoice, _design

    rng = np.random.default_rng(8)
    x = _features(200, 16, rng)
    utility = x @ rng.standard_normal(16)
    data = _judged(utility, 300, rng)
    config = KernelBTConfig(max_item_effects=20, evidence_judgments=50, item_shares=(0.3,))
    fmap = KernelFeatureMap.fit(x, config)
    choice = HyperChoice(1.0, 0.5, 1.0, 0.3, 0.0)
    left, right = data.pair_left.astype(np.int64), data.pair_right.astype(np.int64)
    design = _design(fmap, x, left, right, choice)
    assert design.d.shape[1] == design.dims_features  # no own effects: 200 judged > 20
    few = _design(fmap, x, left[:5], right[:5], choice)
    assert few.d.shape[1] == few.dims_features + few.items.size
    # The evidence on 50 evenly spaced pairs (repeats merged into one row) equals
    # the evidence of those 50.
    from models_runtime.kernel_bt import _merged_pairs

    a, b, y, w = _merged_pairs(data)
    distinct = PreferenceData.from_pairs(a, b, y.astype(np.float32), weight=w.astype(np.float32))
    keep = np.linspace(0, len(distinct) - 1, 50).round().astype(np.int64)
    sampled, _ = choose_hyper(fmap, x, data, config)
    direct, _ = choose_hyper(fmap, x, distinct.select(keep), dataclasses.replace(config, evidence_judgments=1_000))
    assert sampled.log_evidence == pytest.approx(direct.log_evidence)
    mean, samples = fit_kernel_bt(x, data, config).model.posterior(x, data, rng, 4)
    assert np.isfinite(samples).all() and np.corrcoef(mean, utility)[0, 1] > 0.5


def test_apohf_reads_the_kernel_models_features_and_a_design_that_grows_where_judgments_are() -> None:
    from activelearn.strategies import SelectionInput, get_strategy
    from models_runtime.kernel_bt import KernelGradientSource

    rng = np.random.default_rng(5)
    x = _features(120, 16, rng)
    utility = x @ rng.standard_normal(16)
    data = _judged((utility - utility.mean()) / utility.std(), 150, rng)
    config = KernelBTConfig(prior_sds=(3.0,), nonlinear_shares=(0.5,), length_scales=(1.0,), item_shares=(0.0,))
    model = fit_kernel_bt(x, data, config).model
    outputs = kinds.get("kernel").outputs(model, x, "gradients", lambda: data)
    source = outputs["gradients"]
    assert isinstance(source, KernelGradientSource)
    phi = model.fmap(x, model.choice)
    assert source.dim == phi.shape[1]
    # The design is the prior precision plus each judged pair's squared difference.
    pairs = data.pairwise_split()
    diff = phi[pairs.pair_left] - phi[pairs.pair_right]
    np.testing.assert_allclose(source.design_diag, 1.0 + pairs.pair_weight @ (diff * diff), rtol=1e-5)
    # Chunks are φ rows (in float32), in any order asked; bonuses agree with the rows.
    items = np.array([7, 3, 99, 40])
    rows = np.concatenate([r for _, r in KernelGradientSource(model, x, data, chunk_size=3).chunks(items)])
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows, phi[items], rtol=1e-4, atol=1e-5)
    refs = np.array([0, 0, 5, 5])
    inv = 1.0 / source.design_diag
    expected = np.sqrt(((phi[items] - phi[refs]) ** 2) @ inv)
    np.testing.assert_allclose(source.bonuses(items, refs, inv), expected, rtol=1e-4)
    # APOHF runs on it: each pair holds its group's predicted best.
    groups = np.repeat(np.arange(1, 13), 10)
    inp = SelectionInput(groups=groups, scores=outputs["scores"], gradients=source)
    pairs_chosen = get_strategy("apohf").select(inp, 12, rng)
    assert len(pairs_chosen) == 12
    scores = np.asarray(outputs["scores"])
    for pair in pairs_chosen:
        members = np.flatnonzero(groups == groups[pair.i])
        assert groups[pair.j] == groups[pair.i]
        assert int(members[np.argmax(scores[members])]) in (pair.i, pair.j)


def test_the_projections_shared_across_the_grid_give_the_same_features_to_the_bit() -> None:
    """``projected`` computes the choice-free projections once for the evidence's
    grid; every point's φ must be exactly what ``__call__`` gives, and the
    evidence table exactly what a fresh φ per point gives."""
    from models_runtime import kernel_bt

    rng = np.random.default_rng(5)
    x = _features(120, 24, rng)
    config = KernelBTConfig()
    fmap = KernelFeatureMap.fit(x, config)
    rows = x[::3]
    shared = fmap.projected(rows)
    for point in config.grid():
        choice = kernel_bt.HyperChoice(*point, log_evidence=0.0)
        assert np.array_equal(shared(choice), fmap(rows, choice))
    data = _judged(x @ rng.standard_normal(24), 60, rng)
    _, table = choose_hyper(fmap, x, data, config)
    left, right, y, weight = kernel_bt._pairs(data)
    for row in table:
        fresh = kernel_bt._design(fmap, x, left, right, row).d
        assert row.log_evidence == kernel_bt._log_evidence(fresh, y, weight, config.max_iter)


def test_a_refit_on_the_same_candidates_reuses_their_map_and_a_change_fits_a_new_one() -> None:
    from models_runtime import kernel_bt

    rng = np.random.default_rng(6)
    x = _features(80, 16, rng)
    config = KernelBTConfig()
    first = kernel_bt._fitted_map(x, config)
    assert kernel_bt._fitted_map(x.copy(), config) is first, "same rows and settings: the same map"
    fresh = KernelFeatureMap.fit(x, config)
    for name, value in fresh.arrays().items():
        assert np.array_equal(first.arrays()[name], value), name
    moved = x.copy()
    moved[3, 0] += 1e-3
    assert kernel_bt._fitted_map(moved, config) is not first, "a changed candidate: a new map"
    other_seed = dataclasses.replace(config, seed=1)
    assert kernel_bt._fitted_map(moved, other_seed) is not kernel_bt._fitted_map(moved, config)
    # A fit's outcome does not depend on whether its map came from the cache.
    data = _judged(x @ rng.standard_normal(16), 40, rng)
    kernel_bt._MAP_CACHE.clear()
    cold = fit_kernel_bt(x, data, config)
    warm = fit_kernel_bt(x, data, config)
    assert np.array_equal(cold.model.w, warm.model.w) and cold.model.choice == warm.model.choice


@pytest.mark.parametrize("shape", [(1_200, 1_100), (1_100, 1_300)], ids=["tall", "wide"])
def test_the_gram_route_to_the_principal_axes_agrees_with_the_svd(shape) -> None:
    """Past ``_SVD_MAX_DIMS`` the map's axes come from a Gram matrix: the same
    singular values and axes (up to sign) as the SVD, signs fixed."""
    from models_runtime import kernel_bt

    rng = np.random.default_rng(8)
    rows = rng.standard_normal(shape) * np.linspace(3.0, 0.1, shape[1])
    singular, vt = kernel_bt._principal_axes(rows)
    _, s_ref, vt_ref = np.linalg.svd(rows, full_matrices=False)
    k = 64
    assert np.allclose(singular[:k], s_ref[:k], rtol=1e-9)
    assert np.allclose(np.abs((vt[:k] * vt_ref[:k]).sum(axis=1)), 1.0, atol=1e-8)
    largest = np.abs(vt[:k]).argmax(axis=1)
    assert (vt[np.arange(k), largest] > 0).all()
