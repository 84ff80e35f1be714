"""Query-strategy benchmark: simple regret of the recommended candidate vs judgments.

The command line (``python -m benchmarks.strategies --help``): choose the settings,
strategies and seeds, run what is not saved yet, then write the JSON, Markdown and
plots from every saved run that was asked for.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from benchmarks.strategies.protocol import (
    ALL_SETTINGS,
    CLASSIC,
    HARDER,
    HELD_OUT_FIRST_SEED,
    QUICK,
    STRATEGIES,
    BenchConfig,
    Setting,
)
from benchmarks.strategies.report import markdown, plot, results_document
from benchmarks.strategies.runner import load_runs, run_all
from benchmarks.strategies.scale import run_scale
from benchmarks.strategies.summary import targets

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
# The previous protocol's results (ε given to the models, a refit per judgment), kept
# to be read beside the fair protocol's on the eight classic settings.
PREVIOUS = RESULTS_DIR / "strategies_previous_protocol.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.strategies", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="number of seeds (first-seed, first-seed + 1, ...)")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=HELD_OUT_FIRST_SEED,
        help=f"the held-out seeds start at {HELD_OUT_FIRST_SEED}; develop on seeds below it",
    )
    parser.add_argument(
        "--settings",
        default="all",
        help="'all', 'classic', 'harder', or comma-separated keys like composed.linear_s10_eps0",
    )
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--steps", type=int, help="T (judgments at the end, start pairs included)")
    parser.add_argument("--n-items", type=int)
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (figures not comparable)")
    parser.add_argument("--scale", action="store_true", help="also run the N=50,000 scale section")
    parser.add_argument("--scale-only", action="store_true")
    parser.add_argument("--scale-n", type=int, default=50_000)
    parser.add_argument("--report-only", action="store_true", help="only rebuild outputs from saved runs")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-plots", action="store_true")
    return parser


def _config(args: argparse.Namespace) -> BenchConfig:
    cfg = QUICK if args.quick else BenchConfig()
    overrides = {
        "steps": args.steps,
        "n_items": args.n_items,
        "eval_every": args.eval_every,
    }
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def _strategies(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    if "random" not in strategies:
        strategies.insert(0, "random")  # ratios need the paired baseline
    return strategies


def _settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Setting]:
    groups = {"all": ALL_SETTINGS, "classic": CLASSIC, "harder": HARDER}
    if args.settings in groups:
        return list(groups[args.settings])
    by_key = {s.key: s for s in ALL_SETTINGS}
    try:
        return [by_key[k.strip()] for k in args.settings.split(",")]
    except KeyError as exc:
        parser.error(f"unknown setting {exc}; known: {', '.join(by_key)}")


def _runs(args: argparse.Namespace, cfg: BenchConfig, settings: list[Setting], strategies: list[str]) -> list[dict]:
    """Run what is missing (unless ``--report-only``) and return the asked-for runs."""
    runs_path = args.output_dir / f"{_tag(args)}_runs.jsonl"
    digest = cfg.digest()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    done = {(r["setting"], r["strategy"], r["seed"]) for r in load_runs(runs_path, digest)}
    todo = [
        (setting, s, seed, cfg)
        for seed in seeds
        for setting in settings
        for s in strategies
        if (setting.key, s, seed) not in done
    ]
    if not args.report_only and todo:
        run_all(todo, runs_path, digest, workers=args.workers, saved=len(done))
    wanted = {(s.key, st, seed) for s in settings for st in strategies for seed in seeds}
    return [r for r in load_runs(runs_path, digest) if (r["setting"], r["strategy"], r["seed"]) in wanted]


def _tag(args: argparse.Namespace) -> str:
    return "strategies_quick" if args.quick else "strategies"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark as the command line asks; returns the results written."""
    parser = _parser()
    args = parser.parse_args(argv)
    cfg = _config(args)
    strategies = _strategies(parser, args)
    settings = _settings(parser, args)
    out_dir: Path = args.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [] if args.scale_only else _runs(args, cfg, settings, strategies)

    json_path = out_dir / f"{_tag(args)}.json"
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    scale = previous.get("scale")
    if args.scale or args.scale_only:
        scale = run_scale(args.scale_n, 32, (1, 500))
    if args.scale_only and previous:
        results = previous | {"scale": scale}
    else:
        results = results_document(cfg, runs, settings, strategies, scale)
        if PREVIOUS.exists():
            old = json.loads(PREVIOUS.read_text())
            results["previous_protocol"] = {"source": f"benchmarks/results/{PREVIOUS.name}", "summary": old["summary"]}
    results["targets"] = targets(results, scale)
    if runs and not args.no_plots:
        results["plots"] = plot(runs, strategies, out_dir)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / f"{_tag(args)}.md").write_text(markdown(results))
    print(f"written {json_path} and {out_dir / f'{_tag(args)}.md'}", flush=True)
    return results
