"""``python -m benchmarks.annotate_load``: plan the runs, run them database by
database (each in a process of its own, :mod:`.runner`), put Label Studio's
runs beside the matched prefloop ones, and merge the records into the results
file with a summary."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.annotate_load.runner import MAX_RATE, RunSpec
from benchmarks.reliability.cli import _code_version
from benchmarks.reliability.stack import ModuleFailed, run_module_json

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "annotate_load.json"
SHAPES = ("capacity", "crowd")
LOOPS = ("api", "htmx")
DATABASES = ("postgres", "sqlite")
CAPACITY_CLIENTS = (1, 16, 64)
CROWD_CLIENTS = (64,)
THINK_MEAN_S = 2.0
SECONDS, WARMUP = 60.0, 10.0
SHORT = {"clients": (4,), "seconds": 8.0, "warmup": 2.0, "max_rate": 40.0}
# Configurations Label Studio is run beside (capacity, API loop): (database, clients).
PEER_CONFIGURATIONS = (("postgres", 16), ("sqlite", 16))
PEER_REPEATS = 2  # LS, prefloop, LS, prefloop
# Runs of each configuration by shape (--repeats overrides): a crowd's p95
# moves by tens of ms from run to run on 2 cores, so its summary is the median of three.
REPEATS = {"capacity": 1, "crowd": 3}
# What identifies a configuration in the results file: a rerun replaces its records.
CONFIGURATION = ("system", "database", "loop", "shape", "clients")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = "python -m benchmarks.annotate_load " + shlex.join(argv if argv is not None else sys.argv[1:])
    commit = _code_version()
    args.out = args.out or default_out(args.short)
    if args.short and args.out.resolve() == RESULTS.resolve():
        raise SystemExit("--short never writes the results file; give --out another path (or none)")
    shapes = _chosen(args.only, SHAPES, "--only")
    loops = _chosen(args.loops, LOOPS, "--loops")
    databases = _chosen(args.databases, DATABASES, "--databases")
    clients = tuple(int(c) for c in args.clients.split(",")) if args.clients else None
    seconds = args.seconds if args.seconds is not None else (SHORT["seconds"] if args.short else SECONDS)
    warmup = args.warmup if args.warmup is not None else (SHORT["warmup"] if args.short else WARMUP)
    peer = args.peer if args.peer is not None else not args.short
    args.max_rate = args.max_rate or (SHORT["max_rate"] if args.short else MAX_RATE)

    specs: dict[str, list[RunSpec]] = {db: [] for db in databases}
    for shape in shapes:
        full = CAPACITY_CLIENTS if shape == "capacity" else CROWD_CLIENTS
        counts = clients or (SHORT["clients"] if args.short else full)
        think = 0.0 if shape == "capacity" else args.think
        repeats = args.repeats or (1 if args.short else REPEATS[shape])
        for db in databases:
            for loop in loops:
                for n in counts:
                    specs[db] += [RunSpec(loop, shape, n, seconds, warmup, think)] * repeats

    pairable = [
        (db, n)
        for db, n in PEER_CONFIGURATIONS
        if RunSpec("api", "capacity", n, seconds, warmup, 0.0) in specs.get(db, [])
    ]
    peers = _peer_module(peer and bool(pairable))
    paired: list[tuple[str, int]] = pairable if peers.module is not None else []
    for db, n in paired:
        spec = RunSpec("api", "capacity", n, seconds, warmup, 0.0)
        specs[db] = [s for s in specs[db] if s != spec]  # run as matched pairs below

    records: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    failed = False
    started = time.monotonic()
    for db, chosen in specs.items():
        if not chosen:
            continue
        try:
            out = _prefloop(db, chosen, args, name="main")
        except ModuleFailed as exc:
            print(f"annotate_load: {db} failed: {exc}", file=sys.stderr)
            failed = True
            continue
        records += _stamped(out["runs"], command, commit)
    for db, n in paired:
        spec = RunSpec("api", "capacity", n, seconds, warmup, 0.0)
        for repeat in range(PEER_REPEATS):
            try:
                theirs = peers.module.run(database=db, clients=n, seconds=seconds, think_mean_s=0.0)
            except Exception as exc:
                print(f"annotate_load: Label Studio {db}{n} failed: {exc!r}", file=sys.stderr)
                theirs = None
            try:
                ours = _prefloop(db, [spec], args, name=f"peer{repeat}")["runs"][0]
            except ModuleFailed as exc:
                print(f"annotate_load: prefloop {db}{n} (pair {repeat + 1}) failed: {exc}", file=sys.stderr)
                failed = True
                continue
            records += _stamped([ours], command, commit)
            if theirs is not None:
                defaults = {"system": "label_studio", "database": db, "loop": "api", "shape": "capacity", "clients": n}
                theirs = {**defaults, **theirs}
                records += _stamped([theirs], command, commit)
                pairs.append(_pair(db, n, repeat, theirs, ours, command, commit))

    if paired and hasattr(peers.module, "stop_all"):
        try:
            peers.module.stop_all()
        except Exception as exc:
            print(f"annotate_load: stopping Label Studio: {exc!r}", file=sys.stderr)
    label_studio = {"available": peers.module is not None, "why_not": peers.why_not} if peer else None
    results = merge(args.out, records, pairs, label_studio, command=command, commit=commit)
    shown = {"summary": results["summary"], "runs": [_brief(r) for r in records], "pairs": pairs}
    print(json.dumps(shown, indent=2))
    took = time.monotonic() - started
    print(f"annotate_load: {len(records)} runs in {took:.0f} s; written to {args.out}", file=sys.stderr)
    return 1 if failed or not records else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.annotate_load",
        description="prefloop's annotate path under load (issue 16): capacity and a crowd, API and htmx.",
    )
    parser.add_argument("--short", action="store_true", help="the CI form: 4 clients, 2 + 8 s a run, to a temp file")
    parser.add_argument("--only", help="capacity or crowd (default: both)")
    parser.add_argument("--loops", help="comma-separated: api, htmx (default: both)")
    parser.add_argument("--databases", help="comma-separated: postgres, sqlite (default: both)")
    parser.add_argument("--clients", help="comma-separated client counts for every shape (default: 1,16,64 / 64)")
    parser.add_argument("--seconds", type=float, help=f"the measured window of each run (default {SECONDS:g})")
    parser.add_argument("--warmup", type=float, help=f"answering before the window (default {WARMUP:g})")
    parser.add_argument(
        "--repeats", type=int, help="runs of each configuration (default: capacity 1, crowd 3; 1 with --short)"
    )
    parser.add_argument("--think", type=float, default=THINK_MEAN_S, help="crowd: mean think time, s")
    parser.add_argument("--max-rate", type=float, help=f"answers/s a study's budget allows (default {MAX_RATE:g})")
    parser.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Label Studio beside capacity PG16 and SQLite16, alternating (default: on, off with --short)",
    )
    parser.add_argument("--out", type=Path, help="results file (default: benchmarks/results/annotate_load.json; "
                        "with --short a temporary file)")  # fmt: skip
    return parser


def _chosen(raw: str | None, known: tuple[str, ...], flag: str) -> tuple[str, ...]:
    if not raw:
        return known
    chosen = tuple(x.strip() for x in raw.split(",") if x.strip())
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise SystemExit(f"{flag}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return chosen


class _Peers:
    def __init__(self, module: Any, why_not: str | None) -> None:
        self.module, self.why_not = module, why_not


def _peer_module(wanted: bool) -> _Peers:
    """Label Studio's side (:mod:`.label_studio`: ``available()`` and ``run()``), when wanted and able to run."""
    if not wanted:
        return _Peers(None, "not asked for (--no-peer, --short, or no capacity API run of 16 clients chosen)")
    try:
        from benchmarks.annotate_load import label_studio  # noqa: PLC0415
    except ImportError as exc:
        why = f"benchmarks/annotate_load/label_studio.py could not be imported ({exc})"
    else:
        try:
            why = label_studio.available()
        except Exception as exc:
            why = f"label_studio.available() failed: {exc!r}"
        if why is None:
            return _Peers(label_studio, None)
    print(f"annotate_load: Label Studio not run: {why}", file=sys.stderr)
    return _Peers(None, why)


def _prefloop(database: str, specs: list[RunSpec], args: argparse.Namespace, *, name: str) -> dict[str, Any]:
    runs = json.dumps([asdict(s) for s in specs])
    module_args = ["--database", database, "--runs", runs, "--name", name, "--max-rate", str(args.max_rate)]
    return run_module_json("benchmarks.annotate_load.runner", module_args, short=args.short)


def _stamped(records: list[dict[str, Any]], command: str, commit: str) -> list[dict[str, Any]]:
    machine = f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}"
    stamped = []
    for r in records:
        own = {"peer_command": r["command"]} if "command" in r else {}  # Label Studio's harness call
        stamped.append({**r, **own, "command": command, "commit": commit, "machine": machine})
    return stamped


def _pair(db: str, n: int, repeat: int, theirs: dict, ours: dict, command: str, commit: str) -> dict[str, Any]:
    a, b = theirs.get("cycles_per_second"), ours.get("cycles_per_second")
    return {
        "database": db,
        "shape": "capacity",
        "loop": "api",
        "clients": n,
        "pair": repeat + 1,
        "label_studio_cycles_per_second": a,
        "prefloop_cycles_per_second": b,
        "ratio": round(b / a, 2) if a and b is not None else None,
        "label_studio_p95_cycle_ms": theirs.get("p95_cycle_ms"),
        "prefloop_p95_cycle_ms": ours.get("p95_cycle_ms"),
        "command": command,
        "commit": commit,
    }


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("system", "database", "loop", "shape", "clients", "cycles_per_second", "p50_cycle_ms", "p95_cycle_ms",
            "p99_cycle_ms", "errors", "lost", "duplicated", "no_comparison", "model_chosen_share",
            "versions_published", "longest_publication_gap_s", "cpu_ms_per_cycle", "load_average")  # fmt: skip
    return {k: r.get(k) for k in keys}


def merge(
    out: Path,
    records: list[dict[str, Any]],
    pairs: list[dict[str, Any]],
    label_studio: dict[str, Any] | None,
    *,
    command: str,
    commit: str,
) -> dict[str, Any]:
    """Write ``records`` into the results file as it stands: a configuration
    run now replaces its earlier records (and pairs); the others are kept."""
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    rerun = {_key(r) for r in records}
    kept = [r for r in results.get("runs", []) if _key(r) not in rerun]
    paired = {(p["database"], p["clients"]) for p in pairs}
    kept_pairs = [p for p in results.get("peer_pairs", []) if (p["database"], p["clients"]) not in paired]
    results["runs"] = sorted(kept + records, key=_order)
    results["peer_pairs"] = kept_pairs + pairs
    if label_studio is not None:
        results["label_studio"] = label_studio
    results["last_command"] = {"command": command, "commit": commit, "at": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    results["summary"] = summary(results["runs"], results["peer_pairs"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _key(record: dict[str, Any]) -> tuple:
    return tuple(record.get(k) for k in CONFIGURATION)


def _order(record: dict[str, Any]) -> tuple:
    return (record.get("system") != "prefloop", record.get("database", ""), record.get("shape", ""),
            record.get("loop", ""), record.get("clients", 0))  # fmt: skip


def summary(runs: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline figures (median over a configuration's records), from the API loop."""

    def figure(key: str, database: str, shape: str, clients: int, loop: str = "api", *, of=statistics.median):
        values = [
            r[key]
            for r in runs
            if r.get("system") == "prefloop"
            and (r.get("database"), r.get("shape"), r.get("clients"), r.get("loop")) == (database, shape, clients, loop)
            and r.get(key) is not None
        ]
        return round(of(values), 3) if values else None

    ratios = [p["ratio"] for p in pairs if (p["database"], p["clients"]) == ("postgres", 16) and p.get("ratio")]
    sqlite_ratios = [p["ratio"] for p in pairs if (p["database"], p["clients"]) == ("sqlite", 16) and p.get("ratio")]
    return {
        "crowd64_pg_p95_cycle_ms": figure("p95_cycle_ms", "postgres", "crowd", 64),
        "crowd64_sqlite_p95_cycle_ms": figure("p95_cycle_ms", "sqlite", "crowd", 64),
        "crowd64_pg_model_chosen_share": figure("model_chosen_share", "postgres", "crowd", 64),
        "capacity_pg16_cycles_per_second": figure("cycles_per_second", "postgres", "capacity", 16),
        "ratio_to_label_studio_pg16": round(statistics.median(ratios), 2) if ratios else None,
        "ratio_to_label_studio_sqlite16": round(statistics.median(sqlite_ratios), 2) if sqlite_ratios else None,
        "crowd64_pg_htmx_p95_cycle_ms": figure("p95_cycle_ms", "postgres", "crowd", 64, "htmx"),
        "crowd64_sqlite_htmx_p95_cycle_ms": figure("p95_cycle_ms", "sqlite", "crowd", 64, "htmx"),
        "capacity_pg64_errors": figure("errors", "postgres", "capacity", 64, of=max),
        "note": "API loop unless the key says htmx; the median of a configuration's records (errors: the most); "
        "ratios from matched pairs (Label Studio, prefloop, alternating) of the same run",
    }


def default_out(short: bool) -> Path:
    if short:
        return Path(tempfile.mkdtemp(prefix="prefloop-annotate-load-")) / "annotate_load.json"
    return RESULTS
