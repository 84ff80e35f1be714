"""The statistics of the benchmark: per strategy, pooled and per setting, and the targets.

Regret at T is summarised by its median and IQR over runs; a strategy's ratio to
random is the ratio of medians over seed-paired runs, median(strategy) /
median(random), with a 90% percentile bootstrap interval that resamples the pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from benchmarks.strategies.protocol import PREFLOOP


def paired_ratio(values: np.ndarray, baseline: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> dict:
    """Ratio of medians over seed-paired runs, median(strategy) / median(random), with a
    90% percentile bootstrap interval that resamples the pairs (not the two sides
    separately)."""

    def ratio(a: np.ndarray, b: np.ndarray) -> float:
        mb = float(np.median(b))
        ma = float(np.median(a))
        if mb == 0.0:
            return 1.0 if ma == 0.0 else math.inf
        return ma / mb

    point = ratio(values, baseline)
    idx = rng.integers(0, values.size, (n_boot, values.size))
    boots = np.array([ratio(values[k], baseline[k]) for k in idx])
    lo, hi = np.percentile(boots, [5, 95])
    return {"ratio_to_random": _num(point), "ratio_ci90": [_num(lo), _num(hi)]}


def _num(x: float) -> float | None:
    return None if not math.isfinite(float(x)) else round(float(x), 4)


def _block(runs: list[dict], strategy: str, rng: np.random.Generator) -> dict[str, Any] | None:
    mine = {(r["setting"], r["seed"]): r for r in runs if r["strategy"] == strategy}
    base = {(r["setting"], r["seed"]): r for r in runs if r["strategy"] == "random"}
    if not mine:
        return None
    regrets = np.array([r["regret"][-1] for r in mine.values()])
    taus = np.array([r["tau"][-1] for r in mine.values()])
    out: dict[str, Any] = {
        "median_regret_at_T": round(float(np.median(regrets)), 4),
        "regret_iqr_at_T": [round(float(q), 4) for q in np.percentile(regrets, [25, 75])],
        "mean_regret_at_T": round(float(regrets.mean()), 4),
        "median_tau_at_T": round(float(np.median(taus)), 4),
        "select_seconds_p50": round(float(np.median([r["select_seconds_p50"] for r in mine.values()])), 5),
        "fit_seconds_p50": round(float(np.median([r["fit_seconds_p50"] for r in mine.values()])), 5),
        "runs": len(mine),
    }
    keys = sorted(set(mine) & set(base))
    if keys:
        a = np.array([mine[k]["regret"][-1] for k in keys])
        b = np.array([base[k]["regret"][-1] for k in keys])
        out |= paired_ratio(a, b, rng) | {"paired_runs": len(keys)}
    else:
        out |= {"ratio_to_random": None, "ratio_ci90": [None, None], "paired_runs": 0}
    return out


def summarise(runs: list[dict], strategies: Iterable[str]) -> tuple[dict, dict]:
    """The per-strategy blocks pooled over all runs, and per setting (one bootstrap
    generator for both, seeded 0, so the intervals reproduce)."""
    rng = np.random.default_rng(0)
    summary = {s: b for s in strategies if (b := _block(runs, s, rng)) is not None}
    settings: dict[str, dict] = {}
    for key in sorted({r["setting"] for r in runs}):
        sub = [r for r in runs if r["setting"] == key]
        settings[key] = {s: b for s in strategies if (b := _block(sub, s, rng)) is not None}
    return summary, settings


def targets(summary: dict, scale: dict | None) -> dict:
    """The benchmark's targets (APOHF and double TS at most half of random's regret,
    the best prefloop strategy no worse than EUBO, the scale budget), met or not."""
    out: dict[str, dict] = {}
    for s in ("apohf", "double_ts"):
        if s in summary and summary[s].get("ratio_to_random") is not None:
            r = summary[s]["ratio_to_random"]
            hi = summary[s]["ratio_ci90"][1]
            sure = hi is not None and hi <= 0.5
            out[f"{s} ≤ 0.5 × random (pooled median regret at T)"] = {
                "value": r,
                "met": r <= 0.5,
                "detail": f"ratio {r:.3f}, 90% CI {summary[s]['ratio_ci90']}: "
                + ("upper bound ≤ 0.5" if sure else "point estimate only, the interval still reaches above 0.5"),
            }
    if "botorch_eubo" in summary:
        ours = {s: summary[s]["median_regret_at_T"] for s in PREFLOOP if s in summary and s != "random"}
        if ours:
            best = min(ours, key=ours.get)
            eubo = summary["botorch_eubo"]["median_regret_at_T"]
            out["best prefloop strategy no worse than BoTorch EUBO"] = {
                "value": f"{best} {ours[best]:.3f} vs EUBO {eubo:.3f}",
                "met": ours[best] <= eubo,
                "detail": "pooled median regret at T",
            }
    if scale:
        worst = max(scale["rows"], key=lambda r: r["total_seconds"])
        peak = max(r["peak_rss_mb"] for r in scale["rows"])
        out["batch of 32 among 50,000 in < 2 s and < 4 GB (every prefloop strategy)"] = {
            "value": f"slowest {worst['strategy']} ({worst['groups']}) {worst['total_seconds']:.2f} s, "
            f"peak RSS {peak:.0f} MB",
            "met": worst["total_seconds"] < 2.0 and peak < 4096,
            "detail": "total = prepare (scores, member scores, gradient source) + select",
        }
    return out
