"""The scale section: every prefloop strategy choosing a batch among N = 50,000.

Each strategy runs in a fresh spawned process, so the peak RSS it reports is its own,
with the app's default model types and sizes and torch on all cores.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np

from activelearn.strategies import SelectionInput, get_strategy
from benchmarks.pools import embedded_pool, scale_features
from benchmarks.strategies.protocol import PREFLOOP, model_kind, model_outputs
from models_runtime import kinds
from models_runtime.preferences import PreferenceData


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


def _model_label(kind: str, config: Any) -> str:
    if kind == "kernel":
        return f"kernel BT ({config.random_features} random features, {config.n_samples} samples)"
    if kind == "ensemble":
        return f"ensemble {config.n_members}×MLP{config.hidden}"
    return f"MLP head {config.hidden}"


def _scale_worker(args: tuple[str, int, int, int]) -> dict[str, Any]:
    """Time one prefloop strategy choosing ``batch`` pairs among ``n`` candidates with the
    app's default model types and sizes, in a fresh process so peak RSS is its own."""
    import torch

    strategy, n, batch, n_groups = args
    torch.set_num_threads(os.cpu_count() or 1)
    features, groups, left, right, data = _judged_problem(n, n_groups)
    excluded = frozenset((min(a, b), max(a, b)) for a, b in zip(left.tolist(), right.tolist(), strict=True))
    counts = np.bincount(np.concatenate([left, right]), minlength=n)
    del left, right
    kind = kinds.get(model_kind(strategy))
    config = kind.config({}, "cpu")
    if hasattr(config, "max_epochs"):  # a neural kind: a short fit, the timing is the strategy's
        config = dataclasses.replace(config, max_epochs=5)
    model = kind.fit(features, data, config, None).model
    label = _model_label(model_kind(strategy), config)
    tick = time.perf_counter()
    outputs = model_outputs(strategy)
    needs = "gradients" if "gradients" in outputs else ("member_scores" if "member_scores" in outputs else None)
    produced = kind.outputs(model, features, needs, lambda: data) if outputs else {}
    kwargs: dict[str, Any] = {name: produced[name] for name in outputs}
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


def _median_row(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated measurements: the median of each time (a shared VM's
    single timings wander by half a second), the slowest total beside it."""
    row = dict(repeats[0])
    for key in ("prepare_seconds", "select_seconds", "total_seconds"):
        row[key] = round(float(np.median([r[key] for r in repeats])), 3)
    row["total_seconds_max"] = max(r["total_seconds"] for r in repeats)
    row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in repeats)
    row["repeats"] = len(repeats)
    return row


def run_scale(n: int, batch: int, group_options: tuple[int, ...], repeats: int = 3) -> dict[str, Any]:
    """The scale section of the results: one row per strategy and group count,
    each the median of ``repeats`` runs in fresh processes."""
    rows = []
    ctx = get_context("spawn")
    for n_groups in group_options:
        for strategy in PREFLOOP:
            measured = []
            for _ in range(repeats):
                with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                    measured.append(pool.submit(_scale_worker, (strategy, n, batch, n_groups)).result())
            row = _median_row(measured)
            print(f"scale {row}", flush=True)
            rows.append(row)
    return {
        "N": n,
        "batch": batch,
        "features": "384-d: mixtures of real MiniLM embeddings plus noise (benchmarks.pools.scale_features)",
        "select_seconds": {f"{r['strategy']} ({r['groups']})": r["total_seconds"] for r in rows},
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "rows": rows,
        "note": f"Timed on the shared 2-core CPU machine, each row the median of {repeats} runs (max: the "
        "slowest run's total). prepare = the model's outputs over all N: scores, "
        "member scores (the kernel model's posterior draws, conditioned on the 1,000 judged pairs) or APOHF's "
        "gradient source (design from the same pairs); select = the strategy's select() for the batch. Models "
        "have the app's default sizes (kernel model: 512 random features, 32 posterior draws; MLP head hidden "
        "64), torch on all cores; each strategy runs in a fresh process, so peak RSS includes the Python/torch "
        "baseline (~0.7 GB).",
    }
