"""Neural tangent features of reward heads and the design matrix built from them.

APOHF (Lin et al. 2024, "Prompt Optimization with Human Feedback") and neural-UCB
style strategies treat a fitted reward head ``f(x; θ)`` as locally linear in its
parameters: around the fitted ``θ``, ``f(x; θ') ≈ f(x; θ) + g(x)·(θ' - θ)`` with
``g(x) = ∂f(x; θ)/∂θ``. A judged pair ``(a, b)`` then measures the parameters along
``g(a) - g(b)``, and the design matrix

    V = λ I + Σ_{judged (a, b)} (g(a) - g(b)) (g(a) - g(b))ᵀ

is (up to the noise scale) the posterior precision of ``θ``. The exploration bonus of a
candidate pair ``(x, x')`` is ``||g(x) - g(x')||_{V⁻¹} = sqrt(dᵀ V⁻¹ d)`` with
``d = g(x) - g(x')``: large where the judgments so far say little about how ``x`` and
``x'`` compare.

:func:`iter_gradient_features` computes ``g`` for a feature matrix chunk by chunk
(closed form for the standard linear and GELU-MLP reward heads, otherwise
``torch.func.vmap`` over a per-sample ``grad``), so a pool of 50,000 candidates never
holds more than ``chunk_size`` rows of a ``(rows, p)`` gradient matrix at once.
:class:`GradientDesign` keeps ``V`` exactly when ``p`` is small (a linear head has
``p = d + 1``) and only its diagonal when ``p`` is large (an MLP head has tens of
thousands of parameters, and APOHF's own code also uses the diagonal there).
:class:`GradientFeatureSource` serves APOHF; for the standard heads it builds the
diagonal design and the bonuses from each item's activations (``O(d + h)`` numbers a
row instead of ``p``), see :class:`_HeadForm`.

Parameter order. For a :class:`models_runtime.reward.RewardModel` the feature is the
concatenation of the head's ``named_parameters()`` in module order, each flattened
row-major: for the linear head ``[weight (d), bias (1)]``, so ``g(x) = [x, 1]``; for the
MLP head ``[0.weight (h·d), 0.bias (h), 2.weight (h), 2.bias (1)]``. For a
:class:`models_runtime.ensemble.EnsembleRewardModel` it is one member's trainable tensors
in ``_PARAM_NAMES`` order (``w1 (d·h), b1 (h), w2 (h)`` or ``w (d)``); the fixed prior
network, the per-member offset and the input standardisation hold no trainable
parameters and contribute nothing.

Normalisation. By default every gradient is divided by ``sqrt(p)``, the neural tangent
kernel convention (NeuralUCB and APOHF divide by the square root of the network width),
which keeps ``||g||`` of order one whatever the head's size so that one ``reg`` (λ) and
one exploration weight suit linear and MLP heads alike. Features and the design they are
compared against must use the same setting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "FULL_MODE_MAX_DIM",
    "DesignMode",
    "GradientDesign",
    "GradientFeatureSource",
    "bonus_arguments",
    "gradient_dim",
    "gradient_features",
    "iter_gradient_features",
    "pair_bonus",
]

DesignMode = Literal["auto", "full", "diagonal"]

# Largest gradient dimension for which mode="auto" keeps the exact (p, p) matrix: at
# 2048 it is 32 MiB of float64 and one Cholesky factorisation takes well under a second
# on two cores, while an MLP head's p ≈ 25k would need 5 GB and minutes per refresh.
FULL_MODE_MAX_DIM = 2048


def _model_kind(model: Any) -> Literal["reward", "ensemble"]:
    # Duck-typed rather than isinstance so that this module does not import ensemble.py
    # (and through it the preference likelihoods) just to score a plain reward head.
    from torch import nn

    net = getattr(model, "net", None)
    if isinstance(net, nn.Module) and callable(getattr(net, "tensors", None)) and callable(getattr(net, "core", None)):
        return "ensemble"
    if isinstance(getattr(model, "head", None), nn.Module):
        return "reward"
    raise TypeError(f"expected a RewardModel or EnsembleRewardModel, got {type(model).__name__}")


def _check_member(model: Any, kind: str, member: int | None) -> int | None:
    if kind == "reward":
        if member is not None:
            raise ValueError("member applies only to ensemble models; a RewardModel has a single head")
        return None
    if member is None:
        raise ValueError(
            f"an ensemble needs member=0..{model.n_members - 1}: tangent features are those of one member's head"
        )
    if isinstance(member, bool) or not isinstance(member, int | np.integer):
        raise ValueError(f"member must be an integer, got {member!r}")
    if not 0 <= int(member) < model.n_members:
        raise ValueError(f"member must be in [0, {model.n_members}), got {member}")
    return int(member)


def _param_tensors(model: Any, kind: str, member: int | None) -> dict[str, torch.Tensor]:
    # Detached copies of the differentiated parameters, in the documented order (dicts
    # keep insertion order, and the feature concatenates them in that order).
    if kind == "reward":
        return {name: p.detach() for name, p in model.head.named_parameters()}
    # Every member has the same shapes, so member=None (for sizes only) reads member 0.
    member_tensors = model.net.tensors("", 0 if member is None else member)
    return {name: t.detach() for name, t in member_tensors.items()}


def gradient_dim(model: Any) -> int:
    """Length ``p`` of the tangent feature ``g(x) = ∂f(x; θ)/∂θ``: every parameter of a
    ``RewardModel``'s head, or one member's trainable parameters of an
    ``EnsembleRewardModel`` (``d·h + 2h`` for an MLP member, ``d`` for a linear one)."""
    kind = _model_kind(model)
    return int(sum(t.numel() for t in _param_tensors(model, kind, None).values()))


def _check_chunk_size(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def _scalar_output(model: Any, kind: str) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """``f(params, x) -> scalar utility of one row x (d,)`` as a pure function of the
    parameters, for ``torch.func.grad``."""
    from torch.func import functional_call

    if kind == "reward":
        head = model.head
        buffers = {name: b.detach() for name, b in head.named_buffers()}

        def reward_output(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(head, {**params, **buffers}, (x[None],)).reshape(())

        return reward_output

    net = model.net

    def member_output(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        # The prior network and the offset are constants in θ, so only the trained core
        # enters the gradient; standardisation uses the model's own buffers.
        return net.core(net.standardize(x[None]), params).reshape(())

    return member_output


def iter_gradient_features(
    model: Any,
    features: np.ndarray,
    *,
    member: int | None = None,
    chunk_size: int = 1024,
    dtype: Any = np.float32,
    normalise: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start_row, G)`` for consecutive chunks of ``features`` (``(N, d)``), where
    ``G[i]`` is the tangent feature ``g(x) = ∂f(x; θ)/∂θ`` of row ``start_row + i`` (shape
    ``(rows, gradient_dim(model))``, in the parameter order of this module's docstring),
    divided by ``sqrt(p)`` when ``normalise`` is true. Gradients are per-sample (closed
    form for the standard reward heads, else ``torch.func.vmap`` over ``grad``) on the
    model's device, ``chunk_size`` rows at a time, so memory stays bounded by
    ``chunk_size · p`` whatever ``N`` is; each chunk is returned as a fresh numpy
    array of ``dtype``. An ensemble needs ``member`` (which member's head); a plain
    reward model must not get one. Raises ``ValueError`` for a missing or invalid
    member, features that are not ``(N, input_dim)`` or not finite, and a
    ``chunk_size`` below 1."""
    kind = _model_kind(model)
    member = _check_member(model, kind, member)
    chunk = _check_chunk_size(chunk_size)
    out_dtype = np.dtype(dtype)
    if not np.issubdtype(out_dtype, np.floating):
        raise ValueError(f"dtype must be a floating-point type, got {out_dtype}")
    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D (items, dim) array, got shape {x.shape}")
    _check_input_dim(model, x)
    # Validation above runs at call time; only the gradient work is deferred to iteration.
    return _gradient_chunks(model, kind, member, x, chunk, out_dtype, normalise)


def _check_input_dim(model: Any, x: np.ndarray) -> None:
    if x.shape[1] != model.input_dim:
        raise ValueError(f"features have dimension {x.shape[1]}, model expects {model.input_dim}")


def _check_finite(rows: np.ndarray, row_ids: np.ndarray) -> None:
    """Raise on a non-finite row, naming it by its id in ``row_ids``."""
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        raise ValueError(f"features contain NaN or infinite values (e.g. row {int(row_ids[np.argmin(finite)])})")


def _gradient_chunks(
    model: Any,
    kind: str,
    member: int | None,
    x: np.ndarray,
    chunk: int,
    out_dtype: np.dtype,
    normalise: bool,
) -> Iterator[tuple[int, np.ndarray]]:
    import torch
    from torch.func import grad, vmap

    params = _param_tensors(model, kind, member)
    scale = 1.0 / math.sqrt(sum(t.numel() for t in params.values()))
    closed_form = _closed_form_gradients(model) if kind == "reward" else None
    per_row = None if closed_form is not None else vmap(grad(_scalar_output(model, kind)), in_dims=(None, 0))
    device = model.device
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk]
        _check_finite(block, np.arange(start, start + block.shape[0]))
        # torch.func.grad differentiates even under an outer no_grad, which only keeps
        # autograd from recording the vmapped computation itself.
        with torch.no_grad():
            rows = torch.from_numpy(block).to(device)
            if closed_form is not None:
                flat = closed_form(rows, scale if normalise else 1.0)
            else:
                assert per_row is not None
                grads = per_row(params, rows)
                flat = torch.cat([grads[name].reshape(block.shape[0], -1) for name in params], dim=1)
                if normalise:
                    flat = flat * scale
        yield start, flat.cpu().numpy().astype(out_dtype, copy=False)


def _closed_form_gradients(model: Any) -> Callable[[torch.Tensor, float], torch.Tensor] | None:
    """Per-row tangent features of the standard reward heads in one batched op, or None
    when the head is anything else (the generic ``vmap`` path then applies).

    For the linear head ``g(x) = [x, 1]``. For ``Linear(d, h) → GELU → Linear(h, 1)``,
    with pre-activation ``a = W1 x + b1`` and ``v = w2 ∘ gelu'(a)``, the gradient is
    ``[v ⊗ x (row-major, as W1 is (h, d)), v, gelu(a), 1]``: one outer product per row
    instead of a vmapped backward pass, about ten times faster for ``p ≈ 25k`` on CPU.
    Only the exact (erf) GELU has this derivative, so a tanh-approximate GELU falls back.
    """
    import torch
    from torch import nn

    head = model.head
    if not isinstance(head, nn.Sequential):
        return None
    layers = list(head)
    if len(layers) == 1 and type(layers[0]) is nn.Linear and layers[0].out_features == 1:
        lin = layers[0]
        has_bias = lin.bias is not None

        def linear_rows(x: torch.Tensor, scale: float) -> torch.Tensor:
            parts = [x.to(lin.weight.dtype)]
            if has_bias:
                parts.append(x.new_ones((x.shape[0], 1), dtype=lin.weight.dtype))
            return torch.cat(parts, dim=1) * scale

        return linear_rows
    if not (
        len(layers) == 3
        and type(layers[0]) is nn.Linear
        and type(layers[1]) is nn.GELU
        and layers[1].approximate == "none"
        and type(layers[2]) is nn.Linear
        and layers[2].out_features == 1
        and layers[0].bias is not None
        and layers[2].bias is not None
    ):
        return None
    first, last = layers[0], layers[2]
    w1, b1, w2 = first.weight.detach(), first.bias.detach(), last.weight.detach()[0]

    def mlp_rows(x: torch.Tensor, scale: float) -> torch.Tensor:
        x = x.to(w1.dtype)
        n, h = x.shape[0], w1.shape[0]
        pre = torch.addmm(b1, x, w1.T)
        cdf = 0.5 * (1.0 + torch.erf(pre * (1.0 / math.sqrt(2.0))))
        pdf = torch.exp(-0.5 * pre * pre) * (1.0 / math.sqrt(2.0 * math.pi))
        v = w2 * (cdf + pre * pdf)  # ∂f/∂a: w2 times GELU's derivative Φ(a) + a·φ(a)
        out = x.new_empty((n, h * x.shape[1] + 2 * h + 1))
        # Scale the small factor before the outer product instead of the big result.
        vs = v * scale
        torch.mul(vs[:, :, None], x[:, None, :], out=out[:, : h * x.shape[1]].view(n, h, x.shape[1]))
        tail = out[:, h * x.shape[1] :]
        tail[:, :h] = vs
        tail[:, h : 2 * h] = pre * cdf * scale  # gelu(a) = a·Φ(a)
        tail[:, 2 * h] = scale
        return out

    return mlp_rows


def gradient_features(model: Any, features: np.ndarray, **kwargs: Any) -> np.ndarray:
    """All tangent features of ``features`` as one ``(N, gradient_dim(model))`` array;
    keyword arguments as for :func:`iter_gradient_features`. Holds ``N · p`` numbers at
    once, so use the iterator for large pools with an MLP head."""
    kind = _model_kind(model)
    p = int(sum(t.numel() for t in _param_tensors(model, kind, None).values()))
    chunks = [g for _, g in iter_gradient_features(model, features, **kwargs)]
    if not chunks:
        return np.zeros((0, p), dtype=np.dtype(kwargs.get("dtype", np.float32)))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=0)


def _index_vector(values: Any, name: str, n_items: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer item indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_items):
        raise ValueError(f"{name} holds item indices outside [0, {n_items})")
    return arr


class GradientDesign:
    """The design matrix ``V = reg · I + Σ d dᵀ`` over difference vectors
    ``d = g(a) - g(b)`` of judged pairs, and the bonus ``sqrt(dᵀ V⁻¹ d)`` it gives
    candidate pairs. ``mode="full"`` keeps ``V`` exactly (float64 ``(p, p)``) and solves
    through a Cholesky factor refreshed lazily after updates; ``mode="diagonal"`` keeps
    only ``diag(V)`` and approximates the bonus by ``sqrt(Σ_k d_k² / V_kk)``, as APOHF
    does for large networks; ``mode="auto"`` picks full when ``dim <=
    FULL_MODE_MAX_DIM``. The two agree exactly while ``V`` is diagonal (updates along
    coordinate axes only); otherwise the diagonal ignores correlations between
    parameters, which is the price of ``O(p)`` memory."""

    def __init__(self, dim: int, reg: float = 1.0, mode: DesignMode = "auto") -> None:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not (isinstance(reg, int | float | np.floating) and math.isfinite(reg) and reg > 0.0):
            raise ValueError(f"reg must be a finite positive number, got {reg!r}")
        if mode not in ("auto", "full", "diagonal"):
            raise ValueError(f"mode must be 'auto', 'full' or 'diagonal', got {mode!r}")
        self.dim = int(dim)
        self.reg = float(reg)
        self.mode: Literal["full", "diagonal"] = (
            ("full" if self.dim <= FULL_MODE_MAX_DIM else "diagonal") if mode == "auto" else mode
        )
        self.n_updates = 0
        self._matrix: np.ndarray | None = None
        self._diag: np.ndarray | None = None
        if self.mode == "full":
            self._matrix = np.eye(self.dim, dtype=np.float64) * self.reg
        else:
            self._diag = np.full(self.dim, self.reg, dtype=np.float64)
        # Inverse Cholesky factor L⁻¹ of V (V = L Lᵀ), so dᵀ V⁻¹ d = ||L⁻¹ d||²: a matrix
        # product per batch of candidates, and a sum of squares can never go negative
        # the way an explicit quadratic form with V⁻¹ can through rounding.
        self._whitener: np.ndarray | None = None

    def _check_diffs(self, diffs: np.ndarray) -> np.ndarray:
        arr = np.asarray(diffs, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"diffs must have shape (n, {self.dim}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("diffs contain NaN or infinite values")
        return arr

    @property
    def matrix(self) -> np.ndarray:
        """``V`` as a read-only float64 array: ``(p, p)`` in full mode, the diagonal
        ``(p,)`` in diagonal mode."""
        current = self._matrix if self._matrix is not None else self._diag
        assert current is not None
        view = current.view()
        view.setflags(write=False)
        return view

    def update(self, diffs: np.ndarray) -> None:
        """Add ``Σ_i d_i d_iᵀ`` over the rows of ``diffs`` (``(n, p)``) to ``V`` (only the
        squares ``d_ik²`` in diagonal mode). Raises ``ValueError`` on a wrong shape or
        non-finite values."""
        d = self._check_diffs(diffs)
        if d.shape[0] == 0:
            return
        if self._matrix is not None:
            self._matrix += d.T @ d
            self._whitener = None
        else:
            assert self._diag is not None
            self._diag += np.einsum("ij,ij->j", d, d)
        self.n_updates += int(d.shape[0])

    def bonus(self, diffs: np.ndarray) -> np.ndarray:
        """``sqrt(dᵀ V⁻¹ d)`` for each row ``d`` of ``diffs`` (``(n, p)``), float64
        ``(n,)``; in diagonal mode ``sqrt(Σ_k d_k² / V_kk)``. Raises ``ValueError`` on a
        wrong shape or non-finite values."""
        d = self._check_diffs(diffs)
        if self._matrix is None:
            assert self._diag is not None
            return np.sqrt(np.einsum("ij,ij->i", d, d / self._diag))
        if self._whitener is None:
            # V is reg·I plus a Gram matrix, so it is positive definite and the
            # factorisation cannot fail for reg > 0.
            chol = np.linalg.cholesky(self._matrix)
            self._whitener = np.linalg.inv(chol)
        y = d @ self._whitener.T
        return np.sqrt(np.einsum("ij,ij->i", y, y))

    @classmethod
    def from_pairs(
        cls,
        model: Any,
        features: np.ndarray,
        left_idx: np.ndarray,
        right_idx: np.ndarray,
        *,
        member: int | None = None,
        reg: float = 1.0,
        mode: DesignMode = "auto",
        chunk_size: int = 1024,
        normalise: bool = True,
    ) -> GradientDesign:
        """The design of the judged pairs ``(left_idx[i], right_idx[i])`` (rows of
        ``features``) under ``model`` (and ``member`` for an ensemble): ``V = reg · I +
        Σ_i (g(left_i) - g(right_i))(…)ᵀ``. Pairs are processed ``chunk_size`` at a time,
        computing gradients only for the items each chunk references, so memory stays
        bounded by ``2 · chunk_size · p``; a diagonal design of a standard reward head
        gets its squares from the head's activations instead (see :class:`_HeadForm`),
        without gradient rows. ``normalise`` must match the setting used for the
        candidates' features later. Raises ``ValueError`` on index arrays that are not
        1-D integers of equal length within ``features``' rows, and as
        :func:`iter_gradient_features` does."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"features must be a 2-D (items, dim) array, got shape {x.shape}")
        left = _index_vector(left_idx, "left_idx", x.shape[0])
        right = _index_vector(right_idx, "right_idx", x.shape[0])
        if left.shape != right.shape:
            raise ValueError(f"left_idx and right_idx must have equal lengths, got {left.size} and {right.size}")
        chunk_size = _check_chunk_size(chunk_size)
        design = cls(gradient_dim(model), reg=reg, mode=mode)
        form = _HeadForm.of(model, normalise=normalise) if design.mode == "diagonal" and member is None else None
        for start in range(0, left.size, chunk_size):
            li, ri = left[start : start + chunk_size], right[start : start + chunk_size]
            if form is not None:
                _check_input_dim(model, x)
                both = np.concatenate([li, ri])
                _check_finite(x[both], both)
                assert design._diag is not None
                design._diag += form.pair_squares(x[li], x[ri], design.dim)
                design.n_updates += int(li.size)
                continue
            used, inverse = np.unique(np.concatenate([li, ri]), return_inverse=True)
            g = gradient_features(
                model, x[used], member=member, chunk_size=chunk_size, dtype=np.float64, normalise=normalise
            )
            design.update(g[inverse[: li.size]] - g[inverse[li.size :]])
        return design


def pair_bonus(design: GradientDesign, grads_a: np.ndarray, grads_b: np.ndarray) -> np.ndarray:
    """Exploration bonus ``||g(a_i) - g(b_i)||_{V⁻¹}`` of candidate pairs whose tangent
    features are the rows of ``grads_a`` and ``grads_b`` (both ``(n, p)``), float64
    ``(n,)``. Raises ``ValueError`` when the shapes differ or do not match the design."""
    a = np.asarray(grads_a, dtype=np.float64)
    b = np.asarray(grads_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"grads_a and grads_b must have the same shape, got {a.shape} and {b.shape}")
    return design.bonus(a - b)


def bonus_arguments(
    items: np.ndarray, refs: np.ndarray, inv_diag: np.ndarray, dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A gradient source's ``bonuses`` arguments as flat int64 item and reference
    indices of equal length and a float64 ``(dim,)`` inverse design diagonal;
    ValueError naming the mismatch otherwise."""
    items = np.asarray(items, dtype=np.int64).reshape(-1)
    refs = np.asarray(refs, dtype=np.int64).reshape(-1)
    if items.shape != refs.shape:
        raise ValueError(f"items and refs must have equal lengths, got {items.size} and {refs.size}")
    inv = np.asarray(inv_diag, dtype=np.float64)
    if inv.shape != (dim,):
        raise ValueError(f"inv_diag must have shape ({dim},), got {inv.shape}")
    return items, refs, inv


class GradientFeatureSource:
    """Gradient features of ``model`` over the rows of ``features``, served in chunks,
    with the diagonal design of the judged pairs ``(left[i], right[i])``: what
    APOHF's selection step reads (``activelearn.strategies.GradientSource``). Nothing
    of size ``N × p`` is ever held; ``chunks`` computes features on demand. For the
    standard reward heads :meth:`bonuses` skips the features altogether; it reads the
    head's weights as they were when the source was built, as the design does."""

    def __init__(
        self,
        model: Any,
        features: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        *,
        member: int | None = None,
        reg: float = 1.0,
        chunk_size: int = 1024,
    ) -> None:
        self._model = model
        self._features = np.ascontiguousarray(features, dtype=np.float32)
        self._member = member
        self._chunk_size = _check_chunk_size(chunk_size)
        design = GradientDesign.from_pairs(
            model, self._features, left, right, member=member, reg=reg, mode="diagonal", chunk_size=chunk_size
        )
        self._diag = np.asarray(design.matrix)
        self._form = _HeadForm.of(model, normalise=True) if member is None else None

    @property
    def dim(self) -> int:
        return int(self._diag.shape[0])

    @property
    def design_diag(self) -> np.ndarray:
        return self._diag

    def chunks(self, items: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(item indices, (rows, dim) float32 features)`` covering ``items``."""
        idx = np.asarray(items, dtype=np.int64).reshape(-1)
        for start in range(0, idx.size, self._chunk_size):
            part = idx[start : start + self._chunk_size]
            yield (
                part,
                gradient_features(self._model, self._features[part], member=self._member, chunk_size=self._chunk_size),
            )

    def bonuses(self, items: np.ndarray, refs: np.ndarray, inv_diag: np.ndarray) -> np.ndarray | None:
        """``sqrt(Σ_k (g_k(x) − g_k(r))² · inv_diag_k)`` (float64) for each item ``x`` of
        ``items`` and its reference ``r`` (same position in ``refs``), from the head's
        activations with a few matrix products instead of building gradient rows (see
        :class:`_HeadForm`). Returns None for heads without a closed form (use
        :meth:`chunks`)."""
        if self._form is None:
            return None
        items, refs, inv = bonus_arguments(items, refs, inv_diag, self.dim)
        squares = self._form.distances(self._features, items, refs, inv)
        return np.sqrt(np.maximum(squares, 0.0))


# Rows per block in _HeadForm.distances: each float32 (rows, d) temporary of a block
# takes ~6 MB for d = 384, so a pass over 50,000 items never holds more than a few.
_DISTANCE_BLOCK = 4096


class _HeadForm:
    """Weighted sums of squared tangent-feature differences of the standard reward heads
    (those :func:`_closed_form_gradients` covers), from each item's activations instead
    of its ``p`` gradient entries.

    For the MLP head ``g(x) = s · [v(x) ⊗ x, v(x), gelu(a(x)), 1]`` (see
    :func:`_closed_form_gradients`), so the weight block of ``g(x) − g(r)`` is ``s ·
    (v(x) ⊗ (x − r) + (v(x) − v(r)) ⊗ r)``. With the (inverse design) weights of that
    block as an ``(h, d)`` matrix ``M``, ``Σ_hj M_hj (v_h D_j + e_h r_j)²`` (``D = x −
    r``, ``e = v(x) − v(r)``) is ``Σ_h v_h² (M D²)_h + 2 v_h e_h (M (D ∘ r))_h + e_h² (M
    r²)_h``:
    two ``(n, d) @ (d, h)`` products per block of items, and one per reference item.
    Written in the difference ``D`` rather than as ``(v(x) x)² − 2 … + (v(r) r)²``, no
    term is large where the difference is small, so float32 products lose nothing to
    cancellation for near-duplicates: the result has the accuracy of float32 gradient
    rows. The linear head's ``g(x) = s · [x, 1]`` is the plain ``Σ_j M_j (x_j − r_j)²``.
    Weights are copied when the form is built."""

    def __init__(self, layers: list[Any], scale: float) -> None:
        import torch

        self.scale2 = scale * scale
        first = layers[0]
        self.in_dim = int(first.in_features)
        w1 = first.weight.detach().to("cpu")
        self.hidden = 0 if len(layers) == 1 else int(w1.shape[0])
        self.weights: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        if self.hidden:
            # float32 for the pass over all candidates; float64 for the design's few pairs.
            self.weights = {
                dtype: (
                    w1.to(dtype).clone(),
                    first.bias.detach().to("cpu", dtype).clone(),
                    layers[2].weight.detach().to("cpu", dtype)[0].clone(),
                )
                for dtype in (torch.float32, torch.float64)
            }

    @classmethod
    def of(cls, model: Any, *, normalise: bool) -> _HeadForm | None:
        """The form of a ``RewardModel``'s head, or None for any other model or head."""
        if _model_kind(model) != "reward" or _closed_form_gradients(model) is None:
            return None
        params = _param_tensors(model, "reward", None)
        scale = 1.0 / math.sqrt(sum(t.numel() for t in params.values())) if normalise else 1.0
        return cls(list(model.head), scale)

    def _activations(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``v = ∂f/∂a = w2 · gelu'(a)`` and ``gelu(a)`` of the rows of ``x``, ``a = W1 x + b1``."""
        import torch

        w1, b1, w2 = self.weights[x.dtype]
        pre = torch.addmm(b1, x, w1.T)
        # In place where possible: these run over every candidate.
        cdf = torch.erf(pre * (1.0 / math.sqrt(2.0))).mul_(0.5).add_(0.5)
        pdf = pre.square().mul_(-0.5).exp_().mul_(1.0 / math.sqrt(2.0 * math.pi))
        v = pdf.mul_(pre).add_(cdf).mul_(w2)
        return v, cdf.mul_(pre)

    def distances(self, features: np.ndarray, items: np.ndarray, refs: np.ndarray, inv: np.ndarray) -> np.ndarray:
        """``Σ_k (g_k(x) − g_k(r))² · inv_k`` (float64) for rows ``x = features[items[i]]``
        and ``r = features[refs[i]]``, in float32 blocks of ``_DISTANCE_BLOCK`` rows."""
        import torch

        d, h = self.in_dim, self.hidden
        uniq, ref_of = np.unique(refs, return_inverse=True)
        ref_of = torch.from_numpy(ref_of.reshape(-1))
        r = torch.from_numpy(features[uniq])
        out = np.empty(items.size, dtype=np.float64)
        with torch.no_grad():
            if h:
                inv_w1 = torch.from_numpy(inv[: h * d].reshape(h, d).astype(np.float32))
                inv_b1 = torch.from_numpy(inv[h * d : h * d + h].astype(np.float32))
                inv_w2 = torch.from_numpy(inv[h * d + h : h * d + 2 * h].astype(np.float32))
                v_r, gelu_r = self._activations(r)
                r_term = (r * r) @ inv_w1.T  # M r², once per reference
            else:
                inv_x = torch.from_numpy(inv[:d].astype(np.float32))
            for start in range(0, items.size, _DISTANCE_BLOCK):
                x = torch.from_numpy(features[items[start : start + _DISTANCE_BLOCK]])  # a copy
                which = ref_of[start : start + _DISTANCE_BLOCK]
                r_rows = r if uniq.size == 1 else r[which]
                if not h:
                    total = x.sub_(r_rows).square_() @ inv_x
                else:
                    v, gelu = self._activations(x)
                    e = v.sub(v_r[which])
                    diff = x.sub_(r_rows)
                    dd = diff.square() @ inv_w1.T
                    dr = diff.mul_(r_rows) @ inv_w1.T
                    total = dd.mul_(v).add_(dr.mul_(e), alpha=2.0).mul_(v)
                    total.addcmul_(e.square(), r_term[which])
                    total = total.sum(dim=1) + e.square_() @ inv_b1 + gelu.sub_(gelu_r[which]).square_() @ inv_w2
                out[start : start + x.shape[0]] = total.numpy()
        return out * self.scale2

    def pair_squares(self, a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
        """``Σ_i (g(a_i) − g(b_i))²`` (float64, length ``dim``) over the rows of ``a`` and
        ``b`` (``(n, d)``): the diagonal a design gains from judging those pairs."""
        import torch

        d, h = self.in_dim, self.hidden
        out = np.zeros(dim, dtype=np.float64)
        with torch.no_grad():
            x = torch.from_numpy(np.asarray(a, dtype=np.float64))
            r = torch.from_numpy(np.asarray(b, dtype=np.float64))
            diff = x - r
            if not h:
                out[:d] = (diff * diff).sum(dim=0).numpy()
            else:
                v, gelu = self._activations(x)
                v_r, gelu_r = self._activations(r)
                e = v - v_r
                block = (v * v).T @ (diff * diff) + 2.0 * (v * e).T @ (diff * r) + (e * e).T @ (r * r)
                out[: h * d] = block.reshape(-1).numpy()
                out[h * d : h * d + h] = (e * e).sum(dim=0).numpy()
                out[h * d + h : h * d + 2 * h] = (gelu - gelu_r).square_().sum(dim=0).numpy()
        return out * self.scale2
