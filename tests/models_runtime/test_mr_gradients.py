"""Tests for models_runtime.gradients: tangent features of reward heads and the design
matrix / exploration bonus built from them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models_runtime.ensemble import EnsembleConfig, EnsembleRewardModel, _build_net
from models_runtime.gradients import (
    FULL_MODE_MAX_DIM,
    GradientDesign,
    gradient_dim,
    gradient_features,
    iter_gradient_features,
    pair_bonus,
)
from models_runtime.reward import RewardModel, RewardModelConfig, _seeded_head

DIM = 6
HIDDEN = 5


def reward_model(head: str, seed: int = 0) -> RewardModel:
    config = RewardModelConfig(head=head, hidden=HIDDEN, seed=seed, device="cpu")
    return RewardModel(_seeded_head(DIM, config), config, DIM)


def ensemble_model(head: str = "mlp", prior_scale: float = 0.5) -> EnsembleRewardModel:
    config = EnsembleConfig(n_members=3, head=head, hidden=HIDDEN, prior_scale=prior_scale, seed=4, device="cpu")
    net = _build_net(config, DIM)
    # Non-trivial standardisation and offsets, as a fitted model would have, so the test
    # sees whether gradients go through the standardised input.
    with torch.no_grad():
        net.input_mean.copy_(torch.linspace(-1.0, 1.0, DIM))
        net.input_scale.fill_(2.5)
        net.offset.copy_(torch.tensor([0.3, -1.0, 2.0]))
    return EnsembleRewardModel(net, config, DIM)


def pool(n: int = 23, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def autograd_loop(output, params: list[torch.Tensor], x: np.ndarray) -> np.ndarray:
    """Reference: one torch.autograd.grad call per row, parameters flattened in order."""
    rows = []
    for row in torch.from_numpy(x):
        grads = torch.autograd.grad(output(row[None]), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]).numpy())
    return np.stack(rows)


def test_linear_reward_gradient_is_input_then_bias() -> None:
    """For f(x) = w·x + b the tangent feature is [x, 1] (weights first), divided by
    sqrt(d + 1) when normalised."""
    model = reward_model("linear")
    x = pool()
    expected = np.hstack([x, np.ones((x.shape[0], 1), dtype=np.float32)])

    assert gradient_dim(model) == DIM + 1
    np.testing.assert_allclose(gradient_features(model, x, normalise=False), expected, rtol=0, atol=1e-6)
    normalised = gradient_features(model, x)
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(normalised, expected / math.sqrt(DIM + 1), rtol=0, atol=1e-6)


def test_mlp_reward_gradient_matches_per_row_autograd() -> None:
    """vmap'd per-sample gradients of the MLP head equal a loop of autograd.grad calls,
    in named_parameters order."""
    model = reward_model("mlp", seed=3)
    x = pool(17)
    params = list(model.head.parameters())
    expected = autograd_loop(lambda row: model.head(row).sum(), params, x)

    assert gradient_dim(model) == DIM * HIDDEN + HIDDEN + HIDDEN + 1
    got = gradient_features(model, x, normalise=False, dtype=np.float64)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        gradient_features(model, x), expected / math.sqrt(gradient_dim(model)), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_ensemble_member_gradient_matches_per_row_autograd(head: str) -> None:
    """An ensemble member's tangent feature is the gradient of that member's full output
    (standardisation, prior network and offset included) w.r.t. its own slice of the
    stacked trainable tensors."""
    model = ensemble_model(head)
    net, member = model.net, 1
    names = ("w1", "b1", "w2") if head == "mlp" else ("w",)
    stacked = [getattr(net, name) for name in names]
    x = pool(11)

    def member_output(row: torch.Tensor) -> torch.Tensor:
        return net(row, member).sum()

    full = autograd_loop(member_output, stacked, x)
    # Gradients w.r.t. the stacked tensors are zero outside the member's slice; keep
    # only that slice, tensor by tensor.
    sizes = [t[0].numel() for t in stacked]
    parts, offset = [], 0
    for t, size in zip(stacked, sizes, strict=True):
        block = full[:, offset : offset + t.numel()].reshape(x.shape[0], t.shape[0], size)
        others = np.delete(block, member, axis=1)
        assert np.abs(others).max() == 0.0
        parts.append(block[:, member])
        offset += t.numel()
    expected = np.hstack(parts)

    assert gradient_dim(model) == sum(sizes)
    got = gradient_features(model, x, member=member, normalise=False)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    other_member = gradient_features(model, x, member=0, normalise=False)
    if head == "mlp":
        # Members have different weights, so their tangent features differ.
        assert not np.allclose(other_member, got)


def test_linear_ensemble_gradient_is_standardised_input() -> None:
    """A linear member f(x) = w·z(x) + prior + offset has g(x) = z(x), the standardised
    input, for every member."""
    model = ensemble_model("linear")
    x = pool()
    z = (x - model.net.input_mean.numpy()) / float(model.net.input_scale)
    for member in range(model.n_members):
        np.testing.assert_allclose(gradient_features(model, x, member=member), z / math.sqrt(DIM), rtol=0, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: reward_model("mlp"), lambda: ensemble_model("mlp")])
def test_chunking_does_not_change_results(make) -> None:
    """Chunk sizes 1, 7 and 1024 give the same features, and the iterator reports each
    chunk's first row."""
    model = make()
    member = 2 if isinstance(model, EnsembleRewardModel) else None
    x = pool(23)
    reference = gradient_features(model, x, member=member, chunk_size=1024)
    for chunk_size in (1, 7, 1024):
        chunks = list(iter_gradient_features(model, x, member=member, chunk_size=chunk_size))
        starts = [start for start, _ in chunks]
        assert starts == list(range(0, 23, chunk_size))
        assert all(g.shape == (min(chunk_size, 23 - s), gradient_dim(model)) for s, g in chunks)
        np.testing.assert_allclose(np.concatenate([g for _, g in chunks]), reference, rtol=0, atol=1e-7)


def test_empty_pool_gives_empty_features() -> None:
    model = reward_model("mlp")
    out = gradient_features(model, np.zeros((0, DIM), dtype=np.float32))
    assert out.shape == (0, gradient_dim(model))


def test_full_mode_bonus_equals_explicit_inverse() -> None:
    """Full mode: bonus = sqrt(dᵀ V⁻¹ d) with V = reg·I + Σ uuᵀ, also after a second
    update and through pair_bonus."""
    rng = np.random.default_rng(1)
    p, reg = 12, 0.7
    design = GradientDesign(p, reg=reg, mode="full")
    first, second = rng.standard_normal((20, p)), rng.standard_normal((3, p))
    design.update(first)
    a, b = rng.standard_normal((9, p)), rng.standard_normal((9, p))
    d = a - b

    v = reg * np.eye(p) + first.T @ first
    expected = np.sqrt(np.einsum("ij,jk,ik->i", d, np.linalg.inv(v), d))
    np.testing.assert_allclose(design.bonus(d), expected, rtol=1e-10)
    np.testing.assert_allclose(pair_bonus(design, a, b), expected, rtol=1e-10)

    design.update(second)
    v += second.T @ second
    expected = np.sqrt(np.einsum("ij,jk,ik->i", d, np.linalg.inv(v), d))
    np.testing.assert_allclose(design.bonus(d), expected, rtol=1e-10)
    np.testing.assert_allclose(design.matrix, v, rtol=1e-12)
    assert design.n_updates == 23


def test_diagonal_mode_bonus_uses_only_the_diagonal() -> None:
    """Diagonal mode: bonus = sqrt(Σ_k d_k² / V_kk) with V_kk = reg + Σ u_k²."""
    rng = np.random.default_rng(2)
    p, reg = 12, 2.0
    design = GradientDesign(p, reg=reg, mode="diagonal")
    updates = rng.standard_normal((15, p))
    design.update(updates)
    d = rng.standard_normal((8, p))

    diag = reg + (updates**2).sum(axis=0)
    np.testing.assert_allclose(design.matrix, diag, rtol=1e-12)
    np.testing.assert_allclose(design.bonus(d), np.sqrt((d**2 / diag).sum(axis=1)), rtol=1e-12)


@pytest.mark.parametrize("mode", ["full", "diagonal"])
def test_bonus_shrinks_only_along_updated_directions(mode: str) -> None:
    """Judging along a direction lowers the bonus there and leaves orthogonal directions
    at their prior value 1/sqrt(reg)."""
    p = 8
    design = GradientDesign(p, reg=1.0, mode=mode)
    e0, e3 = np.eye(p)[[0]], np.eye(p)[[3]]
    np.testing.assert_allclose(design.bonus(np.vstack([e0, e3])), [1.0, 1.0])

    design.update(np.repeat(2.0 * e0, 4, axis=0))  # V_00 = 1 + 4·4 = 17
    after = design.bonus(np.vstack([e0, e3]))
    np.testing.assert_allclose(after, [1.0 / math.sqrt(17.0), 1.0])


def test_full_mode_shrinks_correlated_directions() -> None:
    """Only full mode sees that judging along e0 + e1 says nothing about e0 - e1."""
    p = 4
    design = GradientDesign(p, reg=1.0, mode="full")
    along = np.array([[1.0, 1.0, 0.0, 0.0]]) / math.sqrt(2.0)
    across = np.array([[1.0, -1.0, 0.0, 0.0]]) / math.sqrt(2.0)
    design.update(np.repeat(along, 9, axis=0))
    np.testing.assert_allclose(design.bonus(np.vstack([along, across])), [1.0 / math.sqrt(10.0), 1.0])


def test_auto_mode_picks_full_for_small_and_diagonal_for_large_dims() -> None:
    assert GradientDesign(DIM + 1).mode == "full"
    assert GradientDesign(FULL_MODE_MAX_DIM).mode == "full"
    assert GradientDesign(FULL_MODE_MAX_DIM + 1).mode == "diagonal"


@pytest.mark.parametrize("mode", ["full", "diagonal"])
def test_from_pairs_equals_updates_with_gradient_differences(mode: str) -> None:
    """from_pairs builds the same V as updating with g(left) - g(right), whatever the
    chunk size, for an ensemble member."""
    model = ensemble_model("mlp")
    x = pool(30)
    rng = np.random.default_rng(5)
    left = rng.integers(0, 30, 25)
    right = (left + rng.integers(1, 30, 25)) % 30
    g = gradient_features(model, x, member=2, dtype=np.float64)
    manual = GradientDesign(gradient_dim(model), reg=0.5, mode=mode)
    manual.update(g[left] - g[right])

    for chunk_size in (4, 1024):
        built = GradientDesign.from_pairs(model, x, left, right, member=2, reg=0.5, mode=mode, chunk_size=chunk_size)
        assert built.mode == mode
        assert built.n_updates == 25
        np.testing.assert_allclose(built.matrix, manual.matrix, rtol=1e-6, atol=1e-9)
        probe = g[:6] - g[6:12]
        np.testing.assert_allclose(built.bonus(probe), manual.bonus(probe), rtol=1e-6)
    # Judged pairs end up with a smaller bonus than at the prior.
    judged = g[left[:5]] - g[right[:5]]
    assert (manual.bonus(judged) < GradientDesign(gradient_dim(model), reg=0.5, mode=mode).bonus(judged)).all()


def test_ensemble_requires_a_valid_member() -> None:
    model = ensemble_model()
    x = pool(3)
    with pytest.raises(ValueError, match="member"):
        iter_gradient_features(model, x)
    with pytest.raises(ValueError, match="member"):
        gradient_features(model, x, member=3)
    with pytest.raises(ValueError, match="member"):
        gradient_features(model, x, member=-1)
    with pytest.raises(ValueError, match="member"):
        GradientDesign.from_pairs(model, x, [0], [1])


def test_reward_model_rejects_a_member() -> None:
    with pytest.raises(ValueError, match="member"):
        gradient_features(reward_model("linear"), pool(3), member=0)


def test_invalid_features_raise_value_error() -> None:
    model = reward_model("mlp")
    with pytest.raises(ValueError, match="dimension"):
        iter_gradient_features(model, np.zeros((4, DIM + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        gradient_features(model, np.zeros(DIM, dtype=np.float32))
    with pytest.raises(ValueError, match="chunk_size"):
        gradient_features(model, pool(3), chunk_size=0)
    bad = pool(5)
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        gradient_features(model, bad, chunk_size=2)
    with pytest.raises(ValueError, match="dimension"):
        gradient_features(ensemble_model(), np.zeros((2, DIM - 1), dtype=np.float32), member=0)


def test_design_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="dim"):
        GradientDesign(0)
    with pytest.raises(ValueError, match="reg"):
        GradientDesign(4, reg=0.0)
    with pytest.raises(ValueError, match="mode"):
        GradientDesign(4, mode="dense")  # type: ignore[arg-type]
    design = GradientDesign(4)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        design.update(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        design.bonus(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        design.update(np.full((1, 4), np.inf))
    with pytest.raises(ValueError, match="same shape"):
        pair_bonus(design, np.zeros((2, 4)), np.zeros((3, 4)))
    model = reward_model("linear")
    with pytest.raises(ValueError, match="equal lengths"):
        GradientDesign.from_pairs(model, pool(4), [0, 1], [2])
    with pytest.raises(ValueError, match="outside"):
        GradientDesign.from_pairs(model, pool(4), [0, 1], [2, 4])


@pytest.mark.parametrize("head", ["mlp", "linear"])
@pytest.mark.parametrize("normalise", [True, False])
def test_closed_form_reward_gradients_equal_the_vmap_path(monkeypatch, head: str, normalise: bool) -> None:
    """The batched closed-form gradient of the standard reward heads gives the same
    features as the generic vmap'd per-sample grad, chunk by chunk."""
    import models_runtime.gradients as gradients_module

    model = reward_model(head, seed=7)
    assert gradients_module._closed_form_gradients(model) is not None
    x = pool(29, seed=5) * 3.0  # wide pre-activations exercise both GELU tails
    fast = gradient_features(model, x, normalise=normalise, dtype=np.float64, chunk_size=8)
    monkeypatch.setattr(gradients_module, "_closed_form_gradients", lambda model: None)
    generic = gradient_features(model, x, normalise=normalise, dtype=np.float64, chunk_size=8)
    np.testing.assert_allclose(fast, generic, rtol=1e-5, atol=1e-6)


def test_other_heads_fall_back_to_vmap() -> None:
    """A head that is not Linear → exact GELU → Linear (here tanh-approximate GELU) has no
    closed form and still gets exact per-row gradients."""
    import models_runtime.gradients as gradients_module

    model = reward_model("mlp", seed=2)
    model.head[1] = torch.nn.GELU(approximate="tanh")
    assert gradients_module._closed_form_gradients(model) is None
    x = pool(9)
    expected = autograd_loop(lambda row: model.head(row).sum(), list(model.head.parameters()), x)
    np.testing.assert_allclose(gradient_features(model, x, normalise=False), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_source_closed_forms_equal_the_generic_per_sample_gradients(monkeypatch, head: str) -> None:
    """The source's design and bonuses for a standard head, computed from activations,
    equal those of the generic per-sample (vmap) gradient rows, weight by weight: for
    distant items, near-duplicates (where a naive expansion in float32 cancels) and an
    item against itself."""
    import models_runtime.gradients as gradients_module
    from models_runtime.gradients import GradientFeatureSource

    model = reward_model(head, seed=3)
    rng = np.random.default_rng(8)
    x = pool(40, seed=9) * 3.0
    x[30:40] = x[20:30] + 1e-3 * rng.standard_normal((10, DIM)).astype(np.float32)
    left, right = rng.integers(0, 40, 60), rng.integers(0, 40, 60)
    fast = GradientFeatureSource(model, x, left, right, reg=0.01)
    monkeypatch.setattr(gradients_module, "_closed_form_gradients", lambda model: None)
    generic = GradientFeatureSource(model, x, left, right, reg=0.01)

    np.testing.assert_allclose(fast.design_diag, generic.design_diag, rtol=1e-5)
    assert np.ptp(generic.design_diag) > 0.01, "the judged pairs shape the design"
    items = np.arange(40)
    refs = np.concatenate([rng.integers(0, 40, 20), items[30:40], [5] * 5, items[35:40]])
    inv = rng.uniform(0.1, 10.0, fast.dim)  # unequal weights: each one must meet its own coordinate
    g = np.concatenate([rows for _, rows in generic.chunks(items)]).astype(np.float64)
    expected = np.sqrt((((g[items] - g[refs]) ** 2) * inv).sum(axis=1))
    assert generic.bonuses(items, refs, inv) is None, "no closed form: the strategy reads rows"
    got = fast.bonuses(items, refs, inv)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * float(np.median(expected)))
