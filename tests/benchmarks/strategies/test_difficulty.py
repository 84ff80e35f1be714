"""The difficulty figures on synthetic pools whose answers are known, and problems
drawn as the benchmark draws them."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import pools
from benchmarks.strategies import difficulty
from models_runtime.simulate import hidden_utility


def _unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_near_duplicate_share_counts_rows_with_a_close_twin() -> None:
    x = _unit_rows(40, 32, 0)  # random directions in 32-d: no two are close
    twins = x[:10] + 0.01 * _unit_rows(10, 32, 1)
    features = np.vstack([x, twins])
    assert difficulty.near_duplicate_share(x) == 0.0
    assert difficulty.near_duplicate_share(features) == pytest.approx(20 / 50)
    assert difficulty.near_duplicate_share(features, threshold=0.99999) == 0.0


def test_pca_variance_share_is_the_share_of_the_top_components() -> None:
    rng = np.random.default_rng(0)
    scales = np.array([3.0, 2.0, 1.0, 1.0])
    x = rng.standard_normal((5_000, 4)) * scales
    expected = (9.0 + 4.0) / (9.0 + 4.0 + 1.0 + 1.0)
    assert difficulty.pca_variance_share(x, k=2) == pytest.approx(expected, abs=0.01)
    assert difficulty.pca_variance_share(x, k=4) == pytest.approx(1.0)


def test_ridge_explains_a_linear_utility_and_not_noise() -> None:
    x = _unit_rows(500, 64, 0)
    linear = x @ np.random.default_rng(1).standard_normal(64)
    noise = np.random.default_rng(2).standard_normal(500)
    assert difficulty.ridge_r2(x, linear, seed=0) > 0.98
    assert difficulty.ridge_r2(x, noise, seed=0) < 0.1
    # Half signal, half noise: about half explained.
    half = linear / linear.std() + noise
    assert 0.3 < difficulty.ridge_r2(x, half, seed=0) < 0.65


def test_ridge_is_fixed_by_its_seed() -> None:
    x = _unit_rows(200, 16, 0)
    u = np.sin(3 * x[:, 0]) + x[:, 1]
    assert difficulty.ridge_r2(x, u, seed=4) == difficulty.ridge_r2(x, u, seed=4)
    assert difficulty.ridge_r2(x, u, seed=4) != difficulty.ridge_r2(x, u, seed=5)


def test_the_smooth_and_needle_families_are_hard_for_ridge_where_linear_is_not() -> None:
    """On a synthetic pool with a decaying spectrum (N = 500, 64-d): ridge explains the
    linear family, but less than half of the smooth and needle families."""
    x = _unit_rows(500, 64, 3) * np.geomspace(1.0, 0.05, 64)
    r2 = {
        family: np.mean(
            [difficulty.ridge_r2(x, hidden_utility(x, family, np.random.default_rng(s)), s) for s in range(3)]
        )
        for family in ("linear", "smooth", "needle")
    }
    assert r2["linear"] > 0.95
    assert r2["smooth"] < 0.5 and r2["needle"] < 0.5


def test_problems_are_drawn_as_the_benchmark_draws_them() -> None:
    """The seed's rows and utility come from ``default_rng([1, seed, stream])``, in that
    order, as ``protocol.make_problem`` drew them for the first two families."""
    pool = _unit_rows(300, 24, 0).astype(np.float32)
    features, utility = difficulty.problem(pool, "mlp", 7, stream=1, n_items=100)
    rng = np.random.default_rng([1, 7, 1])
    idx = np.sort(rng.choice(300, size=100, replace=False))
    np.testing.assert_array_equal(features, pool[idx])
    np.testing.assert_array_equal(utility, hidden_utility(pool[idx], "mlp", rng, hidden=32))


def test_the_reward_family_takes_the_pool_utility_at_the_drawn_rows() -> None:
    pool = _unit_rows(300, 24, 0).astype(np.float32)
    pool_utility = np.arange(300, dtype=np.float64)
    features, utility = difficulty.problem(pool, "hh_reward", 0, stream=4, n_items=50, pool_utility=pool_utility)
    rows = [int(np.flatnonzero((pool == row).all(axis=1))[0]) for row in features]
    expected = pool_utility[rows]
    np.testing.assert_allclose(utility, (expected - expected.mean()) / expected.std())
    with pytest.raises(ValueError, match="utility"):
        difficulty.problem(pool, "hh_reward", 0, stream=4, n_items=50)


def test_describe_gives_mean_and_sd_over_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = np.vstack([_unit_rows(500, 24, 0)] * 2).astype(np.float32)  # every row twice
    monkeypatch.setattr(pools, "pool_features", lambda name: pool)
    row = difficulty.describe("composed", "linear", seeds=[0, 1, 2])
    assert row["pool_rows"] == 1_000 and row["stream"] == 0 and row["seeds"] == [0, 1, 2]
    # 500 of 1,000 rows with each row twice: most drawn rows meet their twin.
    assert 0.3 < row["near_duplicate_share"]["mean"] < 0.7
    assert row["ridge_r2"]["mean"] > 0.95 and row["ridge_r2"]["sd"] >= 0.0
    with pytest.raises(ValueError, match="hh pool"):
        difficulty.describe("composed", "hh_reward")
