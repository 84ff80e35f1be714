"""The hidden-utility families: the old ones draw what they always drew, the new
"smooth" one is far from linear and the "needle" one puts the best item in one of a
few narrow bumps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models_runtime.simulate import (
    UTILITY_FAMILIES,
    hidden_utility,
    needle_utility,
    smooth_utility,
    standardise,
)


def _features(n: int = 400, d: int = 12, seed: int = 0) -> np.ndarray:
    """Unit-norm rows with a decaying spectrum, like sentence embeddings."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * np.geomspace(1.0, 0.1, d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _linear_r2(x: np.ndarray, u: np.ndarray) -> float:
    """In-sample R² of least squares with an intercept (many more rows than columns)."""
    design = np.column_stack([x, np.ones(len(x))])
    residual = u - design @ np.linalg.lstsq(design, u, rcond=None)[0]
    return 1.0 - float(np.sum(residual**2) / np.sum((u - u.mean()) ** 2))


@pytest.mark.parametrize(
    ("family", "first_four"),
    [
        ("linear", [-0.90593715, -0.55992305, 2.01575096, 0.06996721]),
        ("mlp", [1.02687583, -1.17311693, 0.09936194, 0.83244386]),
    ],
)
def test_the_old_families_draw_the_same_utilities_as_before(family: str, first_four: list[float]) -> None:
    """Recorded runs depend on these draws: values taken before the new families
    were added."""
    x = np.random.default_rng(5).standard_normal((40, 6))
    u = hidden_utility(x, family, np.random.default_rng(7), hidden=8)
    np.testing.assert_allclose(u[:4], first_four, atol=1e-8)


def test_the_families_are_listed_in_order() -> None:
    assert UTILITY_FAMILIES == ("linear", "mlp", "smooth", "needle")


@pytest.mark.parametrize("family", ["smooth", "needle"])
def test_a_new_family_is_standardised_and_fixed_by_its_generator(family: str) -> None:
    x = _features()
    u = hidden_utility(x, family, np.random.default_rng(3))
    assert abs(u.mean()) < 1e-9 and abs(u.std() - 1.0) < 1e-9
    np.testing.assert_array_equal(u, hidden_utility(x, family, np.random.default_rng(3)))
    assert not np.allclose(u, hidden_utility(x, family, np.random.default_rng(4)))


@pytest.mark.parametrize("family", ["smooth", "needle"])
def test_a_new_family_with_groups_is_standardised_within_each_group(family: str) -> None:
    x = _features(n=90)
    groups = np.repeat([3, 1, 2], 30)
    u = hidden_utility(x, family, np.random.default_rng(1), groups=groups)
    for group in np.unique(groups):
        block = u[groups == group]
        assert abs(block.mean()) < 1e-9 and abs(block.std() - 1.0) < 1e-9


def test_a_linear_fit_explains_the_smooth_family_poorly_but_the_linear_one_fully() -> None:
    """On 2,000 rows of 12 columns least squares is all but exact, so what it misses
    is the family's non-linear part."""
    x = _features(n=2_000)
    smooth = [_linear_r2(x, hidden_utility(x, "smooth", np.random.default_rng(s))) for s in range(5)]
    assert np.mean(smooth) < 0.5
    assert _linear_r2(x, hidden_utility(x, "linear", np.random.default_rng(0))) > 0.999


def test_the_smooth_family_is_smooth() -> None:
    """Close rows get close utilities: the utility of a row and of its nearest
    neighbour are strongly correlated."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 3))
    u = standardise(smooth_utility(x, np.random.default_rng(1)))
    distance = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
    np.fill_diagonal(distance, np.inf)
    assert np.corrcoef(u, u[distance.argmin(axis=1)])[0, 1] > 0.7


def test_needles_lift_a_few_percent_of_items_each_and_hold_the_best_one() -> None:
    """The needle utility is its smooth background (drawn first from the same
    generator) plus three bumps: each lifts at most ⌈3% · N⌉ items, and the best
    item, a bump's centre, beats everything the background alone reaches by more
    than the background's range."""
    x = _features(n=500)
    background = standardise(smooth_utility(x, np.random.default_rng(9)))
    u = needle_utility(x, np.random.default_rng(9))
    lifted = u - background > 1e-12
    assert 3 <= lifted.sum() <= 3 * math.ceil(0.03 * 500)
    assert lifted[np.argmax(u)]
    assert u.max() - background.max() > background.max() - background.min()
    # Outside the needles the utility is the background: not flat.
    assert background[~lifted].std() > 0.5
