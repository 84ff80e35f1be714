"""The benchmark's outputs: the results JSON, its Markdown table and the regret plots."""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.strategies.protocol import (
    ALL_SETTINGS,
    HELD_OUT_FIRST_SEED,
    NAMED_BEST,
    PREFLOOP,
    RETRAIN_GROWTH,
    RETRAIN_MIN_NEW,
    STRATEGIES,
    BenchConfig,
    Setting,
    model_kind,
)
from benchmarks.strategies.summary import summarise


def results_document(
    cfg: BenchConfig, runs: list[dict], settings: list[Setting], strategies: list[str], scale: dict | None
) -> dict[str, Any]:
    """The results JSON (without targets and plots): the protocol as run, the machine,
    the pooled, per-setting, per-pool and per-family summaries, the wins and the
    scale section."""
    seeds = sorted({r["seed"] for r in runs})
    summarised = summarise(runs, strategies)
    return {
        "config": dataclasses.asdict(cfg)
        | {
            "seeds": seeds,
            "settings": [s.key for s in settings],
            "strategies": strategies,
            "config_digest": cfg.digest(),
            "code_versions": sorted({r.get("code_version", "unknown") for r in runs}),
            "ratio": "ratio of medians over problem-paired runs: median_s(regret_T) / median_random(regret_T); "
            "90% percentile bootstrap over the problems (2,000 resamples)",
            "difference": "mean over problems of (strategy − peer) regret at T; 90% percentile bootstrap over "
            "the problems (2,000 resamples)",
            "recommendation": "argmax of the fitted (mean) utility over all N; choix: best compared item",
        },
        "protocol": protocol_facts(cfg, seeds),
        "named_best": NAMED_BEST,
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        **summarised,
        "scale": scale,
    }


def protocol_facts(cfg: BenchConfig, seeds: list[int]) -> dict[str, Any]:
    """What each model was told and how the runs were made, for the JSON's ``protocol``."""
    return {
        "true_flip_rate_given": False,
        "true_scale_given": False,
        "told": {
            "prefloop models": "nothing but the judgments: the model kind a default study gives the strategy "
            f"({', '.join(f'{s}: {model_kind(s)}' for s in PREFLOOP)}) in its default configuration (seed and "
            "device aside), through the kind's own fit, publishing gate and outputs; the kernel model chooses "
            "its prior scale, non-linear share, length-scale and item share by the evidence, the MLP head "
            "learns the flip rate with its weights; every recommendation is the top posterior mean of the "
            "kernel Bradley–Terry posterior"
            + (f"; test overrides {dict(cfg.model_overrides)}" if cfg.model_overrides else ""),
            "botorch_eubo": f"the judgments only: PairwiseGP (probit, no flip model: BoTorch has none) on "
            f"PCA-{cfg.gp_dim} features, hyper-parameters refitted at each fit; batch = the pairs of highest "
            "analytic EUBO among (current best, x)",
            "choix_random": f"random pairs; choix.ilsr_pairwise(alpha={cfg.choix_alpha}) on compared items",
        },
        "cadence": f"the app's retrain cadence: a fit at {cfg.n_start} judgments, then after "
        f"max({RETRAIN_MIN_NEW}, ceil({RETRAIN_GROWTH} × judged)) more, and at T; between fits each strategy's "
        "batch goes through the app's refill path (select 2× the batch, diversify, random fill)",
        "problems": "independent per setting and seed (their own rows of the pool and utility)",
        "common_random_numbers": "one uniform per (seed, setting, unordered pair): the answer does not depend "
        "on who asks or on the order the pair is shown",
        "held_out_seeds": bool(seeds) and min(seeds) >= HELD_OUT_FIRST_SEED,
        "held_out_first_seed": HELD_OUT_FIRST_SEED,
        "named_best_before_run": NAMED_BEST,
    }


def machine() -> str:
    """The operating system, architecture, core count and torch version."""
    import torch

    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def _curves(runs: list[dict], strategy: str) -> tuple[np.ndarray, np.ndarray] | None:
    mine = [r for r in runs if r["strategy"] == strategy]
    if not mine:
        return None
    length = min(len(r["t"]) for r in mine)
    return np.array(mine[0]["t"][:length]), np.array([r["regret"][:length] for r in mine])


def plot(runs: list[dict], strategies: list[str], out_dir: Path) -> list[str]:
    """Regret against judgments (median over seeds, IQR band), per setting and pooled,
    as PNGs in ``out_dir``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [s.key for s in ALL_SETTINGS if any(r["setting"] == s.key for r in runs)]
    colours = {s: plt.get_cmap("tab10")(k) for k, s in enumerate(STRATEGIES)}
    written = []

    def panel(ax: Any, sub: list[dict], title: str) -> None:
        for s in strategies:
            got = _curves(sub, s)
            if got is None:
                continue
            t, r = got
            q25, med, q75 = np.percentile(r, [25, 50, 75], axis=0)
            ax.plot(t, med, label=s, color=colours[s], lw=1.6)
            ax.fill_between(t, q25, q75, color=colours[s], alpha=0.12)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("judgments")
        ax.set_ylabel("normalised simple regret")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)

    cols = min(4, max(1, len(keys)))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        sub = [r for r in runs if r["setting"] == key]
        panel(ax, sub, f"{key} ({len({r['seed'] for r in sub})} seeds)")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Regret vs judgments: median over seeds, IQR band", fontsize=10)
    fig.tight_layout()
    path = out_dir / "strategies_regret_by_setting.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    panel(ax, runs, "all settings pooled")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "strategies_regret.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)
    return written


def markdown(results: dict) -> str:
    """The results as the Markdown page written beside the JSON."""
    cfg = results["config"]
    proto = results.get("protocol", {})
    seeds = cfg["seeds"]
    held_out = proto.get("held_out_seeds")
    lines = [
        "# Query-strategy benchmark (fair protocol)",
        "",
        f"Generated by `python -m benchmarks.strategies` ({results['generated']}), machine: {results['machine']}, "
        f"code {', '.join(cfg.get('code_versions', []))}.",
        f"Seeds: {_seed_range(seeds)} ({len(seeds)}, {'held out' if held_out else 'DEVELOPMENT seeds, not held out'})"
        f"; settings: {len(results['settings'])}; N = {cfg['n_items']}, T = {cfg['steps']} "
        f"({cfg['n_start']} random start pairs)."
        + (" **Reduced run** (fewer seeds than the ≥ 20 the protocol asks for)." if len(seeds) < 20 else ""),
        f"Strategy named best before the run: **{results.get('named_best')}**.",
        "",
        "What each model was told (`protocol` in the JSON): "
        + "; ".join(f"{k}: {v}" for k, v in proto.get("told", {}).items())
        + f". True flip rate given: {proto.get('true_flip_rate_given')}. Cadence: {proto.get('cadence')}. "
        f"Problems: {proto.get('problems')}. Common random numbers: {proto.get('common_random_numbers')}.",
        "",
        "Regret is the normalised simple regret at T of the recommended item (0 = best, 1 = a random pick). "
        "Ratios are medians over problem-paired runs (strategy / random); differences are the mean over "
        "problems of (strategy − peer) regret, negative = lower regret than the peer; all intervals are 90% "
        "bootstraps over problems.",
        "",
        "## Pooled over all settings",
        "",
        *_strategy_table(results["summary"]),
    ]
    previous = results.get("previous_protocol")
    if results.get("classic"):
        lines += [
            "",
            "## The eight classic settings (composed pool, linear/mlp × s ∈ {10, 3} × ε ∈ {0, 0.1})",
            "",
            "Beside them, the previous protocol's figures on the same eight settings (ε given to the models, "
            "a refit after every judgment, one problem per seed shared by the four s/ε settings)"
            + (f", from `{previous['source']}`" if previous else "")
            + ".",
            "",
            *_strategy_table(results["classic"], previous.get("summary") if previous else None),
        ]
    for name, title in (("pools", "pool"), ("families", "utility family")):
        block = results.get(name) or {}
        if not block:
            continue
        strategies = list(results["summary"])
        lines += ["", f"## By {title}: mean / median regret at T", "", f"| {title} | " + " | ".join(strategies) + " |"]
        lines.append("|---" * (len(strategies) + 1) + "|")
        for key, sub in block.items():
            cells = [
                f"{sub[s]['mean_regret_at_T']:.3f} / {sub[s]['median_regret_at_T']:.3f}" if s in sub else "–"
                for s in strategies
            ]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    strategies = list(results["summary"])
    for stat, label in (("mean_regret_at_T", "Mean"), ("median_regret_at_T", "Median")):
        lines += ["", f"## {label} regret at T by setting", "", "| setting | " + " | ".join(strategies) + " |"]
        lines.append("|---" * (len(strategies) + 1) + "|")
        for key, block in results["settings"].items():
            cells = [f"{block[s][stat]:.3f}" if s in block else "–" for s in strategies]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    if results.get("wins"):
        peers = sorted({p for tally in results["wins"].values() for p in tally})
        lines += [
            "",
            "## Wins, losses and ties against every other strategy, by setting",
            "",
            "Per setting, by the mean paired regret difference at T: wins–losses–ties, then in brackets the "
            "settings won and lost with the paired 90% interval excluding zero.",
            "",
            "| strategy | " + " | ".join(peers) + " |",
            "|---" * (len(peers) + 1) + "|",
        ]
        for s, tally in results["wins"].items():
            cells = [
                f"{t['wins']}–{t['losses']}–{t['ties']} ({len(t['sure_wins'])}/{len(t['sure_losses'])})"
                if (t := tally.get(p))
                else "–"
                for p in peers
            ]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        to_random = [
            f"{s}: {', '.join(t['sure_losses'])}"
            for s, tally in results["wins"].items()
            if (t := tally.get("random")) and t["sure_losses"]
        ]
        lines += ["", "Settings a prefloop strategy surely loses to random: " + ("; ".join(to_random) or "none") + "."]
        best = results["wins"].get(results.get("named_best"), {}).get("botorch_eubo")
        if best:
            lines.append(
                f"Settings the named best ({results.get('named_best')}) surely loses to EUBO: "
                + (", ".join(best["sure_losses"]) or "none")
                + "; surely wins: "
                + (", ".join(best["sure_wins"]) or "none")
                + "."
            )
    lines += ["", "## Targets", ""]
    for name, t in results["targets"].items():
        lines.append(f"- {name}: {t['value']} → **{'met' if t['met'] else 'not met'}** ({t['detail']})")
    if results.get("scale"):
        sc = results["scale"]
        lines += [
            "",
            f"## Scale: batch of {sc['batch']} among N = {sc['N']:,} ({sc['features']})",
            "",
            "| strategy | groups | model | pairs | prepare s | select s | total s | total s, max | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in sc["rows"]:
            slowest = row.get("total_seconds_max", row["total_seconds"])
            lines.append(
                f"| {row['strategy']} | {row['groups']} | {row['model']} | {row['pairs']} "
                f"| {row['prepare_seconds']:.2f} | {row['select_seconds']:.2f} | {row['total_seconds']:.2f} "
                f"| {slowest:.2f} | {row['peak_rss_mb']:.0f} |"
            )
        lines.append("")
        lines.append(sc["note"])
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in results.get("plots", [])), ""]
    return "\n".join(lines)


def _strategy_table(summary: dict, previous: dict | None = None) -> list[str]:
    head = (
        "| strategy | mean regret | median regret | IQR | ratio to random | 90% CI | vs EUBO: mean diff | 90% CI "
        "| median τ | select s (p50) | fit s (p50) | runs |"
    )
    if previous is not None:
        head += " previous: median | previous: ratio |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for s, b in summary.items():
        ci = b["ratio_ci90"]
        diff = b.get("paired_diff_vs_botorch_eubo")
        row = (
            f"| {s} | {b['mean_regret_at_T']:.3f} | {b['median_regret_at_T']:.3f} "
            f"| {b['regret_iqr_at_T'][0]:.3f}–{b['regret_iqr_at_T'][1]:.3f} "
            f"| {_fmt(b['ratio_to_random'])} | [{_fmt(ci[0])}, {_fmt(ci[1])}] "
            + (f"| {diff['mean']:+.3f} | [{_fmt(diff['ci90'][0])}, {_fmt(diff['ci90'][1])}] " if diff else "| – | – ")
            + f"| {b['median_tau_at_T']:.3f} | {b['select_seconds_p50']:.4f} | {b['fit_seconds_p50']:.3f} "
            f"| {b['runs']} |"
        )
        if previous is not None:
            old = previous.get(s)
            row += f" {old['median_regret_at_T']:.3f} | {_fmt(old['ratio_to_random'])} |" if old else " – | – |"
        lines.append(row)
    return lines


def _seed_range(seeds: list[int]) -> str:
    if not seeds:
        return "none"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"
