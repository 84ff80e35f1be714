"""How hard a benchmark problem is, in three figures that need no strategy run.

Run from the repository root:

    python -m benchmarks.strategies.difficulty    # writes benchmarks/results/difficulty.json

An audit of the first protocol found it too easy for reasons that these figures
show: a pool where most items have a near-duplicate (:func:`near_duplicate_share`)
and a few principal components hold nearly all the variance
(:func:`pca_variance_share`) offers few really different candidates, and a utility
that a ridge fit on the features explains almost entirely (:func:`ridge_r2`) is
one that a linear model learns from a few comparisons. :func:`describe` gives the
three for N-item problems drawn the way the strategy benchmark draws them (a
random N rows of a pool and a hidden utility over them, from
``np.random.default_rng([1, seed, k])``), per pool of ``benchmarks.pools`` and
utility family: the families of ``models_runtime.simulate`` and, on the hh pool,
``"hh_reward"``, the real-preference utility of ``pools.hh_reward_utility``.

Ridge is plain numpy: an SVD per fit gives the solution for every ridge strength
at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import pools
from models_runtime.simulate import UTILITY_FAMILIES, hidden_utility, standardise

RESULTS = Path(__file__).resolve().parents[1] / "results" / "difficulty.json"
# The real-preference utility of the hh pool, beside the simulator's families.
HH_REWARD = "hh_reward"
# A family's position here is the ``k`` of its stream, as in the benchmark's
# ``protocol.FAMILIES`` for the two families it had ("linear" 0, "mlp" 1).
FAMILY_ORDER = (*UTILITY_FAMILIES, HH_REWARD)
N_ITEMS = 500
UTILITY_HIDDEN = 32  # the benchmark's ``BenchConfig.utility_hidden``
SEEDS = range(5)
# Ridge: a fixed 80/20 split of the rows; the strength chosen by 5-fold CV on the
# 80% from a grid relative to the features' mean eigenvalue (scale-free).
TEST_SHARE = 0.2
INNER_FOLDS = 5
RIDGE_GRID = np.logspace(-5.0, 3.0, 33)


def near_duplicate_share(features: np.ndarray, threshold: float = 0.98) -> float:
    """Share of rows whose cosine with some other row exceeds ``threshold``."""
    x = np.asarray(features, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    cosine = x @ x.T
    np.fill_diagonal(cosine, -np.inf)
    return float(np.mean(cosine.max(axis=1) > threshold))


def pca_variance_share(features: np.ndarray, k: int = 16) -> float:
    """Share of the rows' total variance (about their mean) that the top ``k``
    principal components hold."""
    x = np.asarray(features, dtype=np.float64)
    singular = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    total = float(np.sum(singular**2))
    return float(np.sum(singular[:k] ** 2) / total) if total > 0 else 1.0


def _ridge_predictions(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Predictions on ``x_test`` of ridge fits (intercept unpenalised) on the
    training rows, one row per strength in ``alphas``."""
    x_mean, y_mean = x_train.mean(axis=0), y_train.mean()
    u, s, vt = np.linalg.svd(x_train - x_mean, full_matrices=False)
    projected_y = u.T @ (y_train - y_mean)
    projected_test = (x_test - x_mean) @ vt.T
    shrink = s[None, :] / (s[None, :] ** 2 + alphas[:, None])
    return y_mean + (shrink * projected_y[None, :]) @ projected_test.T


def ridge_r2(features: np.ndarray, utility: np.ndarray, seed: int) -> float:
    """Held-out R² of a ridge regression of ``utility`` on ``features``: the rows
    are split once by ``seed`` (``TEST_SHARE`` held out), the ridge strength is the
    one with the least squared error in a ``INNER_FOLDS``-fold CV on the training
    rows, and R² is ``1 − SSE / SST`` on the held-out rows (about their own mean,
    so 0 is no better than a constant and a poor fit is negative)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(utility, dtype=np.float64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = max(1, round(TEST_SHARE * len(y)))
    test, train = order[:n_test], order[n_test:]
    centred = x[train] - x[train].mean(axis=0)
    alphas = RIDGE_GRID * float(np.sum(centred**2)) / x.shape[1]
    fold = np.arange(len(train)) % INNER_FOLDS
    errors = np.zeros(len(alphas))
    for f in range(INNER_FOLDS):
        fit, check = train[fold != f], train[fold == f]
        predictions = _ridge_predictions(x[fit], y[fit], x[check], alphas)
        errors += np.sum((predictions - y[check][None, :]) ** 2, axis=1)
    best = alphas[int(np.argmin(errors))]
    predicted = _ridge_predictions(x[train], y[train], x[test], np.array([best]))[0]
    sst = float(np.sum((y[test] - y[test].mean()) ** 2))
    return 1.0 - float(np.sum((y[test] - predicted) ** 2)) / sst if sst > 0 else float("nan")


def problem(
    pool: np.ndarray,
    family: str,
    seed: int,
    *,
    stream: int,
    n_items: int = N_ITEMS,
    pool_utility: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A seed's problem drawn as the strategy benchmark draws it: ``n_items`` random
    rows of ``pool`` and their standardised utility, both from
    ``np.random.default_rng([1, seed, stream])``. The utility is a draw of the
    simulator's ``family``, or, for ``"hh_reward"``, ``pool_utility`` (one value per
    pool row) at the drawn rows."""
    rng = np.random.default_rng([1, seed, stream])
    idx = np.sort(rng.choice(pool.shape[0], size=n_items, replace=False))
    features = np.ascontiguousarray(pool[idx], dtype=np.float32)
    if family == HH_REWARD:
        if pool_utility is None:
            raise ValueError("the hh_reward family needs the pool's utility")
        return features, standardise(pool_utility[idx])
    return features, hidden_utility(features, family, rng, hidden=UTILITY_HIDDEN)


def _mean_sd(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": round(float(np.mean(values)), 4),
        "sd": round(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, 4),
    }


def describe(pool_name: str, family: str, seeds: Sequence[int] = SEEDS, *, stream: int | None = None) -> dict[str, Any]:
    """Near-duplicate share, PCA-16 variance share and ridge R² (mean and sd over
    ``seeds``) of N = 500 problems of ``family`` on the pool ``pool_name``.
    ``stream`` is the ``k`` of the problems' generator, by default the family's
    position in :data:`FAMILY_ORDER` (the first protocol's numbering); pass the
    benchmark's own (e.g. its setting's ``stream``) to measure its very problems."""
    if family == HH_REWARD and pool_name != "hh":
        raise ValueError("the hh_reward utility exists only on the hh pool")
    pool = pools.pool_features(pool_name)
    pool_utility = pools.hh_reward_utility()[0] if family == HH_REWARD else None
    k = FAMILY_ORDER.index(family) if stream is None else stream
    figures: dict[str, list[float]] = {"near_duplicate_share": [], "pca16_share": [], "ridge_r2": []}
    for seed in seeds:
        features, utility = problem(pool, family, seed, stream=k, pool_utility=pool_utility)
        figures["near_duplicate_share"].append(near_duplicate_share(features))
        figures["pca16_share"].append(pca_variance_share(features, 16))
        figures["ridge_r2"].append(ridge_r2(features, utility, seed))
    return {
        "pool": pool_name,
        "family": family,
        "pool_rows": int(pool.shape[0]),
        "n_items": N_ITEMS,
        "seeds": list(seeds),
        "stream": k,
        **{name: _mean_sd(values) for name, values in figures.items()},
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Every pool × family, printed as a table and written to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=len(SEEDS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    rows = []
    started = time.perf_counter()
    for pool_name in pools.POOLS:
        families = FAMILY_ORDER if pool_name == "hh" else UTILITY_FAMILIES
        for family in families:
            row = describe(pool_name, family, seeds)
            rows.append(row)
            print(
                f"{pool_name:9s} {family:10s} near-dup {row['near_duplicate_share']['mean']:.3f}  "
                f"PCA-16 {row['pca16_share']['mean']:.3f}  ridge R² {row['ridge_r2']['mean']:.3f} ± "
                f"{row['ridge_r2']['sd']:.3f}",
                flush=True,
            )
    hh = pools.hh_pool()
    result = {
        "rows": rows,
        "hh_pool": hh.facts,
        "hh_reward": pools.hh_reward_utility()[1],
        "near_duplicate_cosine": pools.NEAR_DUPLICATE_COSINE,
        "seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(["python -m benchmarks.strategies.difficulty", *(sys.argv[1:] if argv is None else argv)]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"hh pool: {hh.facts}; reward CV accuracy {result['hh_reward']['cv_accuracy_mean']}")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
