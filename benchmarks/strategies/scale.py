"""The scale section: every prefloop strategy choosing a batch among N = 50,000.

Each strategy runs in a fresh spawned process, so the peak RSS it reports is its own,
with the app's default model types and sizes and torch on all cores.
"""

from __future__ import annotations

import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np

from activelearn.strategies import SelectionInput, get_strategy
from benchmarks.pools import embedded_pool, scale_features
from benchmarks.strategies.protocol import ENSEMBLE, PREFLOOP, model_outputs
from models_runtime.ensemble import EnsembleConfig, fit_ensemble
from models_runtime.gradients import GradientFeatureSource
from models_runtime.preferences import PreferenceData
from models_runtime.reward import RewardModelConfig, fit_reward_model


def _judged_problem(n: int, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, PreferenceData]:
    """Features of ``n`` candidates in ``n_groups`` groups and 1,000 judged pairs inside
    groups, as a study would have after a while."""
    rng = np.random.default_rng(7)
    features = scale_features(embedded_pool(2_000)[1], n, rng)
    groups = np.sort(rng.integers(0, n_groups, n)) if n_groups > 1 else np.zeros(n, dtype=np.int64)
    left = rng.integers(0, n, 1_000)
    right = np.array([rng.choice(np.flatnonzero(groups == groups[i])) for i in left])
    ok = left != right
    left, right = left[ok], right[ok]
    data = PreferenceData.from_pairs(left, right, (rng.random(left.size) < 0.5).astype(np.float32))
    return features, groups, left, right, data


def _scale_worker(args: tuple[str, int, int, int]) -> dict[str, Any]:
    """Time one prefloop strategy choosing ``batch`` pairs among ``n`` candidates with the
    app's default model types and sizes, in a fresh process so peak RSS is its own."""
    import torch

    strategy, n, batch, n_groups = args
    torch.set_num_threads(os.cpu_count() or 1)
    features, groups, left, right, data = _judged_problem(n, n_groups)
    excluded = frozenset((min(a, b), max(a, b)) for a, b in zip(left.tolist(), right.tolist(), strict=True))
    counts = np.bincount(np.concatenate([left, right]), minlength=n)
    if strategy in ENSEMBLE:
        model = fit_ensemble(features, data, EnsembleConfig(max_epochs=5, device="cpu")).model
        label = f"ensemble {model.n_members}×MLP{model.config.hidden}"
    else:
        model = fit_reward_model(features, data, RewardModelConfig(max_epochs=5, device="cpu")).model
        label = f"MLP head {model.config.hidden}"
    tick = time.perf_counter()
    kwargs: dict[str, Any] = {}
    outputs = model_outputs(strategy)
    if "member_scores" in outputs:
        kwargs["member_scores"] = model.member_scores(features)
    if "scores" in outputs:
        kwargs["scores"] = model.scores(features)
    if "gradients" in outputs:
        kwargs["gradients"] = GradientFeatureSource(model, features, left, right)
    inp = SelectionInput(groups=groups, excluded=excluded, counts=counts, **kwargs)
    prepare = time.perf_counter() - tick
    tick = time.perf_counter()
    picked = get_strategy(strategy).select(inp, batch, np.random.default_rng(0))
    select = time.perf_counter() - tick
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "strategy": strategy,
        "groups": "one group" if n_groups == 1 else f"{n_groups} groups",
        "model": label if outputs else "none",
        "pairs": len(picked),
        "prepare_seconds": round(prepare, 3),
        "select_seconds": round(select, 3),
        "total_seconds": round(prepare + select, 3),
        "peak_rss_mb": round(peak, 1),
    }


def run_scale(n: int, batch: int, group_options: tuple[int, ...]) -> dict[str, Any]:
    """The scale section of the results: one row per strategy and group count."""
    rows = []
    ctx = get_context("spawn")
    for n_groups in group_options:
        for strategy in PREFLOOP:
            with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                row = pool.submit(_scale_worker, (strategy, n, batch, n_groups)).result()
            print(f"scale {row}", flush=True)
            rows.append(row)
    return {
        "N": n,
        "batch": batch,
        "features": "384-d: mixtures of real MiniLM embeddings plus noise (benchmarks.pools.scale_features)",
        "select_seconds": {f"{r['strategy']} ({r['groups']})": r["total_seconds"] for r in rows},
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "rows": rows,
        "note": "Timed on the shared 2-core CPU machine. prepare = the model's scores / member scores over all N "
        "and building APOHF's gradient source "
        "(design from 1,000 judged pairs); select = the strategy's select() for the batch. Models have the app's "
        "default sizes (MLP head hidden 64; ensemble 10 × hidden 64), torch on all cores; each strategy runs in "
        "a fresh process, so peak RSS includes the Python/torch baseline (~0.7 GB).",
    }
