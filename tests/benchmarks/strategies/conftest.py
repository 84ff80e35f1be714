"""A small random pool stands in for the MiniLM pool, so the tests need no encoder."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import pools


@pytest.fixture
def tiny_pool(monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((120, 24)).astype(np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    monkeypatch.setattr(pools, "embedded_pool", lambda n, *args, **kwargs: ([""] * pool.shape[0], pool))
    return pool
