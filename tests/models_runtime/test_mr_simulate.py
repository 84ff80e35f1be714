"""The simulated annotator answers as its Bradley–Terry / Plackett–Luce model says."""

from __future__ import annotations

import numpy as np
import pytest

from models_runtime.simulate import PreferenceOracle, hidden_utility


@pytest.mark.parametrize("family", ["linear", "mlp"])
def test_hidden_utilities_are_standardised(family: str) -> None:
    x = np.random.default_rng(0).standard_normal((200, 16))
    u = hidden_utility(x, family, np.random.default_rng(1))
    assert abs(u.mean()) < 1e-9 and abs(u.std() - 1.0) < 1e-9


def test_pair_answers_follow_scale_flips_and_position_bias() -> None:
    """P(a ≻ b) = σ(s·(u_a − u_b) + bias) mixed with flips at rate ε, estimated from
    20,000 answers to the same pair."""
    oracle = PreferenceOracle(np.array([0.5, 0.0]), scale=3.0, label_flip_rate=0.1, position_bias=0.2)
    a, b = np.zeros(20_000, dtype=np.int64), np.ones(20_000, dtype=np.int64)
    p = 1.0 / (1.0 + np.exp(-(3.0 * 0.5 + 0.2)))
    expected = 0.9 * p + 0.1 * (1 - p)
    assert oracle.prob_first(a[:1], b[:1])[0] == pytest.approx(expected)
    assert oracle.answer_pairs(a, b, np.random.default_rng(2)).mean() == pytest.approx(expected, abs=0.01)


def test_list_answers_put_the_best_item_first_most_often() -> None:
    oracle = PreferenceOracle(np.array([2.0, 0.0, -2.0]), scale=1.0)
    rng = np.random.default_rng(3)
    firsts = [oracle.answer_list(np.array([2, 0, 1]), rng)[0] for _ in range(2_000)]
    # Plackett–Luce: P(first = 0) = e² / (e² + 1 + e⁻²).
    assert np.mean(np.array(firsts) == 0) == pytest.approx(np.exp(2) / (np.exp(2) + 1 + np.exp(-2)), abs=0.03)
