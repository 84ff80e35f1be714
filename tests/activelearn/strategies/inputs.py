"""Inputs for strategy tests: a gradient source over a dense matrix, and a
selection input that offers every model output a strategy may need."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from activelearn.strategies import SelectionInput


class DenseGradients:
    """A GradientSource over an explicit (N, p) matrix that serves ``chunk_size`` rows
    at a time and counts what it serves."""

    def __init__(self, matrix: np.ndarray, design_diag: np.ndarray | None = None, chunk_size: int = 7) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float64)
        p = self.matrix.shape[1]
        self._diag = np.ones(p) if design_diag is None else np.asarray(design_diag, dtype=np.float64)
        self.chunk_size = chunk_size
        self.rows_served = 0
        self.largest_chunk = 0

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    @property
    def design_diag(self) -> np.ndarray:
        return self._diag

    def chunks(self, items: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        items = np.asarray(items)
        for start in range(0, items.size, self.chunk_size):
            idx = items[start : start + self.chunk_size]
            self.rows_served += idx.size
            self.largest_chunk = max(self.largest_chunk, idx.size)
            yield idx, self.matrix[idx].copy()


GROUPS = np.repeat([0, 1, 2], 8)


def full_input(seed: int = 0, excluded: frozenset = frozenset()) -> SelectionInput:
    """Three prompts of eight items, with scores, six members' scores, gradients and counts."""
    rng = np.random.default_rng(seed)
    members = rng.normal(size=(6, GROUPS.size))
    grads = rng.normal(size=(GROUPS.size, 5))
    return SelectionInput(
        groups=GROUPS,
        scores=members.mean(axis=0),
        member_scores=members,
        gradients=DenseGradients(grads),
        counts=rng.integers(0, 4, GROUPS.size),
        excluded=excluded,
    )
