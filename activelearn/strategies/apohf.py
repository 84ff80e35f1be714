"""APOHF: the predicted best item against its most optimistic challenger.

Lin et al. 2024, "Prompt Optimization with Human Feedback". Per group the first item
is ``x1 = argmax u(x)``; the second is

    x2 = argmax_{x ≠ x1}  u(x) + w · b(x),    b(x) = sqrt(Σ_k (g_k(x) − g_k(x1))² / U_kk)

with ``g`` the model's tangent features (a reward head's parameter gradients; for
the kernel model, linear in its weights, its feature map ``φ``) and ``U`` the diagonal of the design
``λI + Σ_judged (g(a) − g(b))²``. ``b`` is the width of the confidence interval on
``u(x) − u(x1)``: large where the judgments so far say little about how ``x`` and
``x1`` compare.

Calibration. The paper uses ``w = nu``, so the meaning of ``nu`` depends on the size
of the gradients and of the utilities: with ``nu = 1`` on our ``sqrt(p)``-normalised
features the bonus was as large as the whole utility range, every ``x2`` was pure
exploration and the recommendation stopped moving. With ``relative=True`` (the
default) the weight is

    w = nu · spread(u) / median(b)

where ``spread(u)`` is a robust spread of the utilities within groups (IQR / 1.349 of
each item's deviation from its group's mean, i.e. the standard deviation for normal
data) and ``median(b)`` is the median bonus of all candidate items against their
group's ``x1`` under the design as it stands when ``select`` is called. So ``nu = 1``
means a typical candidate's confidence width equals one typical within-group utility
spread; ``nu = 0`` is pure exploitation (the best against the second best) and large
``nu`` pure exploration (the item least measured against ``x1``). The choice is
invariant to an affine rescaling of the utilities and to scaling the gradients by
``a`` together with the design by ``a²``; scaling only one of the two leaves each
group's first pair unchanged, but the later pairs of a batch then see the fantasy
updates weigh differently against the ridge ``λ``, which is real information (the
prior's strength against one judgment), so they may differ. The price: a
uniform growth of ``U`` (more data everywhere) no longer shrinks exploration by
itself; what still shrinks it is the contrast between well- and poorly-measured
directions, and the model's own utility gaps, which widen as it learns.

Batch. Pairs are chosen one at a time in rounds: every group gets at most one pair
per round, so a batch spreads over groups before any group gets a second pair.
Groups in a round go in order of an upper bound on the gain of their next pair
(exact in the first round). After each pair, a local copy of ``U`` gets the fantasy
update ``U += (g(x1) − g(x2))²`` as if the pending pair had been judged, so the next
pair in that group (and, slightly, everywhere) explores elsewhere.

Cost and memory. One streaming pass over all items' gradients (chunks from the
``GradientSource``), keeping ``O(N)`` scalars and the ``x1`` rows of a block of
groups (at most ``_FIRST_ROWS_BUDGET`` numbers). Fantasy updates only shrink bonuses,
so the stored values are upper bounds: each further pair recomputes the exact bonus
of only its group's top candidates (lazy evaluation, ``eval_batch`` rows at a time)
instead of re-streaming the group. Moving ``x1`` (its open pairs exhausted, or its
``max_per_item`` reached) costs one pass over that group. A source with the optional
``bonuses`` shortcut (``models_runtime.gradients.GradientFeatureSource`` for the
standard reward heads: a few matrix products over the head's activations) serves the
pass and the recomputations without building gradient rows; only each fantasy update
then reads rows, the two of its pair.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from activelearn.strategies.base import (
    GradientSource,
    ScoredList,
    ScoredPair,
    SelectionInput,
    group_members,
    ordered,
)

# Most numbers the x1 gradient rows of one block of groups may take in the first pass
# (32 MiB of float64): ~160 groups per block for an MLP head (p ≈ 25k), ~2,000 for p = 2k.
_FIRST_ROWS_BUDGET = 1 << 22


@dataclass
class _GroupState:
    """Book-keeping for one group during a ``select`` call."""

    members: np.ndarray  # item indices
    by_utility: np.ndarray  # member positions, best utility first (ties: lower index)
    first: int = -1  # position of x1 in ``members``; -1 once the group is exhausted
    tried: set[int] = field(default_factory=set)  # positions that served as x1 and ran out
    value: np.ndarray | None = None  # u + w·b per member: an upper bound, exact when fresh
    version: np.ndarray | None = None  # design version at which each value was computed


@dataclass
class ApohfStrategy:
    """Pair each group's predicted best item with the challenger of highest UCB.

    ``nu`` (≥ 0) weighs exploration, in units of the utilities' within-group spread
    when ``relative`` (see the module docstring), or as the raw APOHF weight on the
    bonus when not. ``max_per_item`` caps how many pairs of one batch an item may be
    in (None: no cap, APOHF's own behaviour of testing the favourite against several
    challengers); when ``x1`` reaches it the next-best item becomes ``x1``.
    ``eval_batch`` is how many candidates' exact bonuses are recomputed at a time after
    a fantasy update. A pair's ``score`` is its optimistic gain ``u(x2) + w·b(x2) −
    u(x1)``, in utility units, under the design including the batch's earlier pairs;
    pairs come in choice order (round by round); the choice is deterministic, so the
    propensity is 1. Needs ``scores`` and ``gradients`` of the kernel model or a single head.
    """

    nu: float = 1.0
    relative: bool = True
    max_per_item: int | None = None
    eval_batch: int = 16
    name: ClassVar[str] = "apohf"

    def __post_init__(self) -> None:
        if isinstance(self.nu, bool) or not isinstance(self.nu, int | float | np.integer | np.floating):
            raise ValueError(f"nu must be a number, got {self.nu!r}")
        if not (math.isfinite(self.nu) and self.nu >= 0):
            raise ValueError(f"nu must be finite and non-negative, got {self.nu!r}")
        if not isinstance(self.relative, bool | np.bool_):
            raise ValueError(f"relative must be a bool, got {self.relative!r}")
        if self.max_per_item is not None and (
            isinstance(self.max_per_item, bool)
            or not isinstance(self.max_per_item, int | np.integer)
            or self.max_per_item < 1
        ):
            raise ValueError(f"max_per_item must be None or a positive integer, got {self.max_per_item!r}")
        if (
            isinstance(self.eval_batch, bool)
            or not isinstance(self.eval_batch, int | np.integer)
            or self.eval_batch < 1
        ):
            raise ValueError(f"eval_batch must be a positive integer, got {self.eval_batch!r}")

    def select(self, inp: SelectionInput, n: int, rng: np.random.Generator) -> list[ScoredPair]:
        # rng is unused: the choice is deterministic (ties go to the lower index).
        if inp.scores is None or inp.gradients is None:
            raise ValueError(
                "the apohf strategy needs a model with gradient features: model scores and the "
                "tangent features of the kernel model or a single head (an ensemble or no model yet "
                "gives none; use random or another strategy)"
            )
        scores = np.asarray(inp.scores, dtype=np.float64)
        if scores.shape != (inp.n_items,):
            raise ValueError(f"scores must have shape ({inp.n_items},), got {scores.shape}")
        if not np.isfinite(scores).all():
            raise ValueError("scores contain NaN or infinite values")
        source = inp.gradients
        dim = int(source.dim)
        design = np.array(source.design_diag, dtype=np.float64)  # a local copy: fantasy updates go here
        if design.shape != (dim,):
            raise ValueError(f"design_diag must have shape ({dim},), got {design.shape}")
        if not (np.isfinite(design).all() and (design > 0).all()):
            raise ValueError("design_diag must be finite and positive (it includes the ridge λ)")
        groups = group_members(inp.groups)
        if n <= 0 or not groups:
            return []
        return _Selection(self, inp, scores, source, design, groups).run(int(n))

    def select_list(
        self, inp: SelectionInput, members: np.ndarray, k: int, rng: np.random.Generator
    ) -> ScoredList | None:
        """The group's greedy leader followed by its K − 1 successive challengers,
        each pair fantasised into the design before the next is chosen (APOHF's
        batch rule), leader first."""
        # One group, k − 1 pairs: every other item goes to a group of its own,
        # which offers no pair.
        only = np.arange(1, inp.n_items + 1, dtype=np.int64)
        only[members] = 0
        single = replace(inp, groups=only)
        pairs = replace(self, max_per_item=None).select(single, k - 1, rng)
        items: list[int] = []
        for pair in pairs:
            for item in (pair.i, pair.j):
                if item not in items:
                    items.append(item)
        if len(items) < k:
            return None
        leader = max(items[:2], key=lambda i: float(inp.scores[i]))
        ordered_items = [leader, *[i for i in items if i != leader]][:k]
        return ScoredList(tuple(ordered_items), float(sum(p.score for p in pairs)), 1.0)


class _Selection:
    """One ``select`` call's state: the local design, item bookkeeping, the groups."""

    def __init__(
        self,
        strategy: ApohfStrategy,
        inp: SelectionInput,
        scores: np.ndarray,
        source: GradientSource,
        design: np.ndarray,
        groups: list[np.ndarray],
    ) -> None:
        self.strategy = strategy
        self.scores = scores
        self.source = source
        self.dim = design.shape[0]
        self.design = design
        self.inv_design = 1.0 / design
        self.version = 0  # bumped by each fantasy update
        # The source's optional shortcut for bonuses without gradient rows.
        self.direct = getattr(source, "bonuses", None)
        self.weight = 0.0  # w, set by calibration after the first pass
        n_items = inp.n_items
        self.uses = np.zeros(n_items, dtype=np.int64)
        self.local_pos = np.zeros(n_items, dtype=np.int64)
        self.group_of = np.full(n_items, -1, dtype=np.int64)
        self.slot = np.zeros(n_items, dtype=np.int64)  # scratch: row of an item's x1 in a block
        # Excluded and already chosen pairs, as partner sets, so x1's open partners are a mask.
        self.blocked: dict[int, set[int]] = {}
        for excluded in inp.excluded:
            if len(excluded) == 2:  # longer tuples are lists, not pairs
                self._block(int(excluded[0]), int(excluded[1]))
        self.states: list[_GroupState] = []
        for g, members in enumerate(groups):
            self.group_of[members] = g
            self.local_pos[members] = np.arange(members.size)
            by_utility = np.lexsort((members, -scores[members]))
            self.states.append(_GroupState(members=members, by_utility=by_utility))

    # -- gradients -------------------------------------------------------------------

    def _chunks(self, items: np.ndarray) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        for idx, rows in self.source.chunks(items):
            idx = np.asarray(idx, dtype=np.int64)
            if rows.ndim != 2 or rows.shape != (idx.size, self.dim):
                raise ValueError(f"gradient chunk has shape {rows.shape}, expected ({idx.size}, {self.dim})")
            yield idx, rows

    def _rows(self, items: np.ndarray) -> np.ndarray:
        """Gradient rows of a few ``items`` (distinct), in their order, as float64."""
        out = np.empty((items.size, self.dim), dtype=np.float64)
        where = {int(item): k for k, item in enumerate(items)}
        for idx, rows in self._chunks(items):
            out[[where[int(i)] for i in idx]] = rows
        return out

    def _bonus(self, rows: np.ndarray, first_rows: np.ndarray) -> np.ndarray:
        """``b = sqrt(Σ_k (g_k − g1_k)² / U_kk)`` row by row, under the current design."""
        diff = np.subtract(rows, first_rows, dtype=np.float64)
        diff *= np.sqrt(self.inv_design)
        bonus = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        if not np.isfinite(bonus).all():
            raise ValueError("gradient features contain NaN or infinite values")
        return bonus

    def _direct_bonuses(self, items: np.ndarray, firsts: np.ndarray) -> np.ndarray | None:
        """Bonus of each of ``items`` against ``firsts`` (same positions) from the source's
        ``bonuses``, which needs no gradient rows; None when the source has no such
        shortcut (it then never will, so later calls return None at once)."""
        if self.direct is None:
            return None
        bonus = self.direct(items, firsts, self.inv_design)
        if bonus is None:
            self.direct = None
            return None
        if not np.isfinite(bonus).all():
            raise ValueError("gradient features contain NaN or infinite values")
        return bonus

    def _stream_bonuses(self, group_ids: list[int]) -> np.ndarray:
        """Bonus of every member of ``group_ids`` against its group's x1, streaming the
        gradients block by block; returns a length-N array filled for those members."""
        bonus = np.zeros(self.scores.size, dtype=np.float64)
        blocks = [self.states[g] for g in group_ids]
        if self.direct is not None:
            items = np.concatenate([st.members for st in blocks])
            firsts = np.concatenate([np.full(st.members.size, st.members[st.first]) for st in blocks])
            direct = self._direct_bonuses(items, firsts)
            if direct is not None:
                bonus[items] = direct
                return bonus
        per_block = max(1, _FIRST_ROWS_BUDGET // self.dim)
        for start in range(0, len(group_ids), per_block):
            block = blocks[start : start + per_block]
            first_rows = self._rows(np.array([st.members[st.first] for st in block], dtype=np.int64))
            for k, st in enumerate(block):
                self.slot[st.members] = k
            for idx, rows in self._chunks(np.concatenate([st.members for st in block])):
                bonus[idx] = self._bonus(rows, first_rows[self.slot[idx]])
        return bonus

    # -- pairs -------------------------------------------------------------------------

    def _block(self, i: int, j: int) -> None:
        self.blocked.setdefault(i, set()).add(j)
        self.blocked.setdefault(j, set()).add(i)

    def _open_mask(self, g: int, pos: int) -> np.ndarray:
        """Members that may still be paired with member ``pos`` of group ``g``."""
        st = self.states[g]
        mask = np.ones(st.members.size, dtype=bool)
        mask[pos] = False
        partners = [p for p in self.blocked.get(int(st.members[pos]), ()) if self.group_of[p] == g]
        if partners:
            mask[self.local_pos[partners]] = False
        cap = self.strategy.max_per_item
        if cap is not None:
            mask &= self.uses[st.members] < cap
            if self.uses[st.members[pos]] >= cap:
                mask[:] = False
        return mask

    def _choose_first(self, g: int) -> np.ndarray | None:
        """Make the best-utility usable member x1 of group ``g``; its open mask, or None
        (and the group marked exhausted) when no member has an open partner."""
        st = self.states[g]
        cap = self.strategy.max_per_item
        for pos in st.by_utility:
            pos = int(pos)
            if pos in st.tried or (cap is not None and self.uses[st.members[pos]] >= cap):
                continue
            mask = self._open_mask(g, pos)
            if mask.any():
                st.first = pos
                return mask
            st.tried.add(pos)
        st.first = -1
        return None

    def _refresh_group(self, g: int) -> None:
        """Values of every member of ``g`` against its (new) x1: one pass over the group."""
        st = self.states[g]
        bonus = self._stream_bonuses([g])[st.members]
        st.value = self.scores[st.members] + self.weight * bonus
        st.version = np.full(st.members.size, self.version, dtype=np.int64)

    def _challenger(self, g: int, mask: np.ndarray) -> int:
        """Position of the open member of highest exact value under the current design.

        Stored values are upper bounds (fantasy updates only shrink bonuses), so it
        suffices to recompute the best stale candidates until the best value is fresh.
        """
        st = self.states[g]
        assert st.value is not None and st.version is not None
        while True:
            candidate_values = np.where(mask, st.value, -np.inf)
            best = int(np.argmax(candidate_values))
            if st.version[best] == self.version:
                return best
            stale_values = np.where(mask & (st.version != self.version), st.value, -np.inf)
            k = min(self.strategy.eval_batch, int(np.count_nonzero(np.isfinite(stale_values))))
            top = np.argpartition(-stale_values, k - 1)[:k]
            bonus = self._direct_bonuses(st.members[top], np.full(k, st.members[st.first]))
            if bonus is None:
                rows = self._rows(np.concatenate([[st.members[st.first]], st.members[top]]))
                bonus = self._bonus(rows[1:], rows[:1])
            st.value[top] = self.scores[st.members[top]] + self.weight * bonus
            st.version[top] = self.version

    def _next_key(self, g: int) -> float:
        """Upper bound on the gain of group ``g``'s next pair (−inf: x1 must move first)."""
        st = self.states[g]
        assert st.value is not None
        mask = self._open_mask(g, st.first)
        if not mask.any():
            return -np.inf
        return float(np.max(st.value[mask]) - self.scores[st.members[st.first]])

    def _take(self, g: int) -> ScoredPair | None:
        st = self.states[g]
        mask = self._open_mask(g, st.first)
        if not mask.any():
            mask = self._choose_first(g)
            if mask is None:
                return None
            self._refresh_group(g)
        pos2 = self._challenger(g, mask)
        assert st.value is not None
        x1, x2 = int(st.members[st.first]), int(st.members[pos2])
        gain = float(st.value[pos2] - self.scores[x1])
        self._block(x1, x2)
        self.uses[[x1, x2]] += 1
        # Fantasy update: treat the pending pair as judged, so later picks explore elsewhere.
        rows = self._rows(np.array([x1, x2], dtype=np.int64))
        self.design += (rows[0] - rows[1]) ** 2
        self.inv_design = 1.0 / self.design
        self.version += 1
        i, j = ordered(x1, x2)
        return ScoredPair(i=i, j=j, score=gain, propensity=1.0)

    # -- the call ----------------------------------------------------------------------

    def _calibrate(self, bonus: np.ndarray, live: list[int]) -> float:
        if not self.strategy.relative:
            return float(self.strategy.nu)
        members = np.concatenate([self.states[g].members for g in live])
        gid = self.group_of[members]
        utilities = self.scores[members]
        means = np.bincount(gid, weights=utilities) / np.maximum(np.bincount(gid), 1)
        residuals = utilities - means[gid]
        q75, q25 = np.percentile(residuals, [75, 25])
        spread = (q75 - q25) / 1.349
        if not spread > 0:
            spread = float(residuals.std())
        if not spread > 0:
            spread = 1.0  # all utilities tied within groups: only the bonus decides
        candidates = np.concatenate([np.delete(self.states[g].members, self.states[g].first) for g in live])
        scale = float(np.median(bonus[candidates]))
        if not scale > 0:
            scale = float(np.max(bonus[candidates]))
        if not scale > 0:
            return 0.0  # every candidate's gradient equals its x1's: the bonus cannot tell them apart
        return float(self.strategy.nu) * spread / scale

    def run(self, n: int) -> list[ScoredPair]:
        live = [g for g in range(len(self.states)) if self._choose_first(g) is not None]
        if not live:
            return []
        bonus = self._stream_bonuses(live)
        self.weight = self._calibrate(bonus, live)
        for g in live:
            st = self.states[g]
            st.value = self.scores[st.members] + self.weight * bonus[st.members]
            st.version = np.zeros(st.members.size, dtype=np.int64)

        chosen: list[ScoredPair] = []
        while len(chosen) < n and live:
            keys = np.array([self._next_key(g) for g in live])
            # Stable sort on −key: equal keys keep group order, so the result is reproducible.
            order = [live[k] for k in np.argsort(-keys, kind="stable")]
            exhausted: set[int] = set()
            for g in order:
                pair = self._take(g)
                if pair is None:
                    exhausted.add(g)
                    continue
                chosen.append(pair)
                if len(chosen) >= n:
                    break
            live = [g for g in live if g not in exhausted]
        return chosen
