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

from benchmarks.strategies.protocol import ALL_SETTINGS, STRATEGIES, BenchConfig, Setting
from benchmarks.strategies.summary import summarise


def results_document(
    cfg: BenchConfig, runs: list[dict], settings: list[Setting], strategies: list[str], scale: dict | None
) -> dict[str, Any]:
    """The results JSON (without targets and plots): the protocol as run, the machine,
    the pooled and per-setting summaries and the scale section."""
    summary, per_setting = summarise(runs, strategies)
    return {
        "config": dataclasses.asdict(cfg)
        | {
            "seeds": sorted({r["seed"] for r in runs}),
            "settings": [s.key for s in settings],
            "strategies": strategies,
            "config_digest": cfg.digest(),
            "ratio": "ratio of medians over seed-paired runs: median_s(regret_T) / median_random(regret_T); "
            "90% percentile bootstrap over the pairs (2,000 resamples)",
            "recommendation": "argmax of the fitted (mean) utility over all N; choix: best compared item",
            "models": _models(cfg),
        },
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "summary": summary,
        "settings": per_setting,
        "scale": scale,
    }


def _models(cfg: BenchConfig) -> dict[str, str]:
    return {
        "single_head": f"RewardModelConfig(head='mlp', hidden={cfg.hidden}, max_epochs={cfg.max_epochs}, "
        f"patience={cfg.patience}, likelihood label_flip_rate=ε), warm-started every refit",
        "ensemble": f"EnsembleConfig(n_members={cfg.n_members}, hidden={cfg.hidden}, "
        f"prior_scale={cfg.prior_scale}, anchor_strength={cfg.anchor_strength}, bootstrap=True), "
        "warm-started",
        "botorch_eubo": f"PairwiseGP on PCA-{cfg.gp_dim} features scaled to [0,1]; EUBO over (best, x) "
        f"for all x plus {cfg.eubo_random_pairs} random pairs",
        "choix_random": f"random pairs; choix.ilsr_pairwise(alpha={cfg.choix_alpha}) on compared items",
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
    lines = [
        "# Query-strategy benchmark",
        "",
        f"Generated by `python -m benchmarks.strategies` ({results['generated']}), machine: {results['machine']}.",
        f"Seeds: {cfg['seeds']}; settings: {len(results['settings'])}; N = {cfg['n_items']}, "
        f"T = {cfg['steps']} ({cfg['n_start']} random start pairs)."
        + (" **Reduced run** (fewer seeds than the ≥ 20 the protocol asks for)." if len(cfg["seeds"]) < 20 else ""),
        "",
        "Ratios are the ratio of medians over seed-paired runs (median regret of the strategy / median regret "
        "of random on the same setting and seed), with a 90% bootstrap interval over the pairs.",
        "",
        "## Pooled over all settings",
        "",
        "| strategy | median regret at T | IQR | ratio to random | 90% CI | median τ at T | select s (p50) "
        "| fit s (p50) | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s, b in results["summary"].items():
        ci = b["ratio_ci90"]
        lines.append(
            f"| {s} | {b['median_regret_at_T']:.3f} | {b['regret_iqr_at_T'][0]:.3f}–{b['regret_iqr_at_T'][1]:.3f} "
            f"| {_fmt(b['ratio_to_random'])} | [{_fmt(ci[0])}, {_fmt(ci[1])}] | {b['median_tau_at_T']:.3f} "
            f"| {b['select_seconds_p50']:.4f} | {b['fit_seconds_p50']:.3f} | {b['runs']} |"
        )
    strategies = list(results["summary"])
    lines += ["", "## Median regret at T by setting", "", "| setting | " + " | ".join(strategies) + " |"]
    lines.append("|---" * (len(strategies) + 1) + "|")
    for key, block in results["settings"].items():
        cells = [f"{block[s]['median_regret_at_T']:.3f}" if s in block else "–" for s in strategies]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "## Targets", ""]
    for name, t in results["targets"].items():
        lines.append(f"- {name}: {t['value']} → **{'met' if t['met'] else 'not met'}** ({t['detail']})")
    if results.get("scale"):
        sc = results["scale"]
        lines += [
            "",
            f"## Scale: batch of {sc['batch']} among N = {sc['N']:,} ({sc['features']})",
            "",
            "| strategy | groups | model | pairs | prepare s | select s | total s | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in sc["rows"]:
            lines.append(
                f"| {row['strategy']} | {row['groups']} | {row['model']} | {row['pairs']} "
                f"| {row['prepare_seconds']:.2f} | {row['select_seconds']:.2f} | {row['total_seconds']:.2f} "
                f"| {row['peak_rss_mb']:.0f} |"
            )
        lines.append("")
        lines.append(sc["note"])
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in results.get("plots", [])), ""]
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"
