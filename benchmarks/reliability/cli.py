"""Run the reliability sections and merge their figures into one results file.

Each section runs in a process of its own (``python -m
benchmarks.reliability.<section> --json-out FILE``): Django reads its settings
once per process, and sections need different ones (PostgreSQL or SQLite,
shorter leases in the short form). Sections not run keep their last figures in
the results file; each section's entry records the command, the code version
and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.reliability.stack import ModuleFailed, run_module_json

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
# Section name → (module, key in the results file).
SECTIONS = {
    "faults": ("benchmarks.reliability.faults", "faults"),
    "load": ("benchmarks.reliability.load", "load"),
    "schemathesis": ("benchmarks.reliability.schema", "schemathesis"),
    "fuzz": ("benchmarks.reliability.fuzz", "fuzz"),
    "security": ("benchmarks.reliability.security", "security"),
    "cluster": ("benchmarks.reliability.cluster", "cluster"),
}


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description="prefloop's reliability benchmark (issue 15)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--short", action="store_true", help="the short form CI runs")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)}")

    ok = True
    for name in chosen:
        module, key = SECTIONS[name]
        started = time.monotonic()
        try:
            figures = run_module_json(module, short=args.short)
        except ModuleFailed as failed:
            print(f"section {name} failed: {failed}", file=sys.stderr)
            ok = False
            continue
        figures["run"] = {
            "command": "python -m benchmarks.reliability --sections " + name + (" --short" if args.short else ""),
            "code_version": _code_version(),
            "machine": f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}",
            "seconds": round(time.monotonic() - started, 1),
            "short": args.short,
        }
        _merge(args.output, key, figures)
        print(json.dumps({key: figures}, indent=2))
    return ok


def _merge(output: Path, key: str, figures: dict[str, Any]) -> None:
    """Write one section's figures into the results file as it now stands: each
    section is saved as soon as it ends (a later one failing loses nothing), and
    a run of other sections meanwhile keeps its own."""
    results: dict[str, Any] = json.loads(output.read_text()) if output.exists() else {}
    results[key] = figures
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")


def _code_version() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        # The results files a run writes are not the code it ran.
        status = ["git", "status", "--porcelain", "--", ".", ":!benchmarks/results"]
        dirty = subprocess.run(status, cwd=ROOT, capture_output=True, text=True).stdout
        return commit + ("+uncommitted" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
