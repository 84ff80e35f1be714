"""The statistics of the benchmark: per strategy, pooled, per setting, pool and family,
paired comparisons with every peer, and the targets.

Everything is paired by problem (setting, seed): every strategy of a problem saw the
same candidates, utility, start pairs and annotator noise. Regret at T is summarised
by its mean, median and IQR over problems; a strategy's ratio to random is the ratio
of medians over the paired problems, median(strategy) / median(random); a difference
with a peer is the mean over problems of (strategy − peer) regret at T. Intervals are
90% percentile bootstraps that resample problems (both sides of a pair together),
2,000 resamples from a generator seeded 0, so they reproduce.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from benchmarks.strategies.protocol import ALL_SETTINGS, CLASSIC, NAMED_BEST, PREFLOOP

N_BOOT = 2_000
EUBO = "botorch_eubo"


def paired_ratio(values: np.ndarray, baseline: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT) -> dict:
    """Ratio of medians over paired problems, median(strategy) / median(random), with a
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


def paired_difference(
    values: np.ndarray, other: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT
) -> dict[str, Any]:
    """The mean and median of the paired differences ``values − other`` and the 90%
    bootstrap interval of the mean (negative: ``values`` has the lower regret)."""
    diff = np.asarray(values, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    idx = rng.integers(0, diff.size, (n_boot, diff.size))
    lo, hi = np.percentile(diff[idx].mean(axis=1), [5, 95])
    return {
        "mean": _num(diff.mean()),
        "median": _num(float(np.median(diff))),
        "ci90": [_num(lo), _num(hi)],
        "n": int(diff.size),
    }


def _num(x: float) -> float | None:
    return None if not math.isfinite(float(x)) else round(float(x), 4)


def _final(runs: list[dict], strategy: str) -> dict[tuple[str, int], float]:
    return {(r["setting"], r["seed"]): r["regret"][-1] for r in runs if r["strategy"] == strategy}


def _block(runs: list[dict], strategy: str, rng: np.random.Generator) -> dict[str, Any] | None:
    mine_runs = {(r["setting"], r["seed"]): r for r in runs if r["strategy"] == strategy}
    if not mine_runs:
        return None
    regrets = np.array([r["regret"][-1] for r in mine_runs.values()])
    taus = np.array([r["tau"][-1] for r in mine_runs.values()])
    out: dict[str, Any] = {
        "median_regret_at_T": round(float(np.median(regrets)), 4),
        "mean_regret_at_T": round(float(regrets.mean()), 4),
        "regret_iqr_at_T": [round(float(q), 4) for q in np.percentile(regrets, [25, 75])],
        "median_tau_at_T": round(float(np.median(taus)), 4),
        "select_seconds_p50": round(float(np.median([r["select_seconds_p50"] for r in mine_runs.values()])), 5),
        "fit_seconds_p50": round(float(np.median([r["fit_seconds_p50"] for r in mine_runs.values()])), 5),
        "runs": len(mine_runs),
    }
    mine = {k: r["regret"][-1] for k, r in mine_runs.items()}
    base = _final(runs, "random")
    keys = sorted(set(mine) & set(base))
    if keys:
        a = np.array([mine[k] for k in keys])
        b = np.array([base[k] for k in keys])
        out |= paired_ratio(a, b, rng) | {"paired_runs": len(keys)}
        out["paired_diff_vs_random"] = paired_difference(a, b, rng)
    else:
        out |= {"ratio_to_random": None, "ratio_ci90": [None, None], "paired_runs": 0}
    eubo = _final(runs, EUBO)
    keys = sorted(set(mine) & set(eubo))
    if keys and strategy != EUBO:
        diff = paired_difference(np.array([mine[k] for k in keys]), np.array([eubo[k] for k in keys]), rng)
        out["paired_ci90_vs_botorch_eubo"] = diff["ci90"]
        out["paired_diff_vs_botorch_eubo"] = diff
    return out


def wins(runs: list[dict], strategy: str, rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """Per peer (random and every other strategy), the settings where ``strategy`` has
    the lower mean regret at T (wins), the higher (losses) or the same (ties), and
    those where the paired 90% interval of the difference excludes zero."""
    mine = _final(runs, strategy)
    out: dict[str, dict[str, Any]] = {}
    settings = sorted({k[0] for k in mine})
    for peer in sorted({r["strategy"] for r in runs} - {strategy}):
        theirs = _final(runs, peer)
        tally: dict[str, Any] = {"wins": 0, "losses": 0, "ties": 0, "sure_wins": [], "sure_losses": []}
        for setting in settings:
            keys = sorted(k for k in mine if k[0] == setting and k in theirs)
            if not keys:
                continue
            diff = paired_difference(np.array([mine[k] for k in keys]), np.array([theirs[k] for k in keys]), rng)
            mean, (lo, hi) = diff["mean"], diff["ci90"]
            tally["wins" if mean < 0 else "losses" if mean > 0 else "ties"] += 1
            if hi is not None and hi < 0:
                tally["sure_wins"].append(setting)
            if lo is not None and lo > 0:
                tally["sure_losses"].append(setting)
        out[peer] = tally
    return out


def summarise(runs: list[dict], strategies: Iterable[str]) -> dict[str, Any]:
    """Every summary of the report, from one bootstrap generator seeded 0 (so the
    intervals reproduce): ``summary`` pooled over all problems, ``settings``,
    ``pools``, ``families`` and ``classic`` (the previous protocol's eight settings)
    per strategy, and ``wins`` per prefloop strategy and peer over the settings (also
    under each prefloop strategy's ``summary`` entry)."""
    strategies = list(strategies)
    rng = np.random.default_rng(0)

    def blocks(sub: list[dict]) -> dict[str, Any]:
        return {s: b for s in strategies if (b := _block(sub, s, rng)) is not None}

    by_key = {s.key: s for s in ALL_SETTINGS}
    out: dict[str, Any] = {"summary": blocks(runs), "settings": {}, "pools": {}, "families": {}}
    for key in sorted({r["setting"] for r in runs}, key=_setting_order):
        out["settings"][key] = blocks([r for r in runs if r["setting"] == key])
    for attr, name in (("pool", "pools"), ("family", "families")):
        values = sorted({getattr(by_key[r["setting"]], attr) for r in runs if r["setting"] in by_key})
        for value in values:
            out[name][value] = blocks([r for r in runs if getattr(by_key.get(r["setting"]), attr, None) == value])
    classic = {s.key for s in CLASSIC}
    classic_runs = [r for r in runs if r["setting"] in classic]
    out["classic"] = blocks(classic_runs) if classic_runs else {}
    out["wins"] = {s: wins(runs, s, rng) for s in strategies if s in PREFLOOP}
    for s, tally in out["wins"].items():
        out["summary"][s]["wins"] = tally
    out["classic_wins"] = {s: wins(classic_runs, s, rng) for s in strategies if s in PREFLOOP} if classic_runs else {}
    return out


def _setting_order(key: str) -> tuple[int, str]:
    order = [s.key for s in ALL_SETTINGS]
    return (order.index(key) if key in order else len(order), key)


def targets(summarised: dict, scale: dict | None) -> dict:
    """The acceptance targets of the fair protocol, met or not: APOHF and double TS at
    most half of random's pooled median regret with the interval's upper end below
    0.7; the strategy named before the run below EUBO in mean and median regret with
    the paired interval below zero and winning at least 5 of the 8 classic settings;
    no prefloop strategy surely worse than random in any setting; the scale budget."""
    summary = summarised.get("summary", {})
    out: dict[str, dict] = {}
    for s in ("apohf", "double_ts"):
        b = summary.get(s)
        if b and b.get("ratio_to_random") is not None:
            r, hi = b["ratio_to_random"], b["ratio_ci90"][1]
            out[f"{s} ≤ 0.5 × random, 90% CI upper end < 0.7 (pooled median regret at T)"] = {
                "value": r,
                "met": r <= 0.5 and hi is not None and hi < 0.7,
                "detail": f"ratio {r:.3f}, 90% CI {b['ratio_ci90']}",
            }
    best, eubo = summary.get(NAMED_BEST), summary.get(EUBO)
    if best and eubo and "paired_diff_vs_botorch_eubo" in best:
        diff = best["paired_diff_vs_botorch_eubo"]
        classic = summarised.get("classic_wins", {}).get(NAMED_BEST, {}).get(EUBO, {})
        met = (
            best["mean_regret_at_T"] < eubo["mean_regret_at_T"]
            and best["median_regret_at_T"] < eubo["median_regret_at_T"]
            and diff["ci90"][1] is not None
            and diff["ci90"][1] < 0
            and classic.get("wins", 0) >= 5
        )
        out[f"named best ({NAMED_BEST}) beats BoTorch EUBO"] = {
            "value": f"mean {best['mean_regret_at_T']:.3f} vs {eubo['mean_regret_at_T']:.3f}, median "
            f"{best['median_regret_at_T']:.3f} vs {eubo['median_regret_at_T']:.3f}, paired mean difference "
            f"{diff['mean']:+.3f} (90% CI {diff['ci90']}), classic settings won {classic.get('wins', 0)} of "
            f"{classic.get('wins', 0) + classic.get('losses', 0) + classic.get('ties', 0)}",
            "met": met,
            "detail": "lower mean and median regret, paired 90% CI below zero, ≥ 5 of 8 classic settings",
        }
    worse = {
        s: tally["random"]["sure_losses"]
        for s, tally in summarised.get("wins", {}).items()
        if "random" in tally and tally["random"]["sure_losses"]
    }
    if summarised.get("wins"):
        out["no prefloop strategy surely worse than random in any setting"] = {
            "value": "; ".join(f"{s}: {', '.join(keys)}" for s, keys in worse.items()) or "none",
            "met": not worse,
            "detail": "paired 90% CI of the regret difference above zero",
        }
    if scale:
        worst = max(scale["rows"], key=lambda r: r["total_seconds"])
        peak = max(r["peak_rss_mb"] for r in scale["rows"])
        out["batch of 32 among 50,000 in < 2 s and < 4 GB (every prefloop strategy)"] = {
            "value": f"slowest {worst['strategy']} ({worst['groups']}) {worst['total_seconds']:.2f} s "
            f"(its slowest run {worst.get('total_seconds_max', worst['total_seconds']):.2f} s), "
            f"peak RSS {peak:.0f} MB",
            "met": worst["total_seconds"] < 2.0 and peak < 4096,
            "detail": "total = prepare (scores, member scores, gradient source) + select; the median of repeated runs",
        }
    return out
