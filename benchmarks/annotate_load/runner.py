"""One database's runs of the annotate-load benchmark, in this process, against one stack.

    python -m benchmarks.annotate_load.runner --database postgres --runs '[{...}]' --json-out FILE

Started by :mod:`benchmarks.annotate_load.cli` through ``run_module_json``
(Django reads its settings once per process, and each database needs its own).
The stack (``benchmarks.reliability.stack.Stack``) is started once; each run
gets a study and annotators of its own, and the study is paused and its
background work left to finish before the next run starts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.annotate_load import htmx, measure, serving
from benchmarks.reliability.load import OVERLAP, Crowd, embedded, seed_annotators, seed_study, verify
from benchmarks.reliability.stack import ADMIN_DATABASE_URL, Stack, wait_for

BROKER_URL = "redis://127.0.0.1:6379/13"
CACHE_URL = "redis://127.0.0.1:6379/14"
VAR_DIR = Path("/tmp/var-annload")
# The fastest answer rate a run's study is sized for (answers/s): enough
# prompts that the budget outlasts the run (a budget that runs out is flagged).
MAX_RATE = 200.0


@dataclass(frozen=True)
class RunSpec:
    loop: str  # "api" or "htmx"
    shape: str  # "capacity" (no think time) or "crowd" (exponential think time)
    clients: int
    seconds: float  # the measured window
    warmup: float  # before it (answers counted in the database checks, not in the figures)
    think_mean_s: float  # 0 for capacity

    @property
    def label(self) -> str:
        return f"{self.loop}-{self.shape}{self.clients}"


def planned_answers(spec: RunSpec, max_rate: float) -> int:
    """The study's budget: the answers the run could give at most. Fewer
    clients than the overlap can give only their share of it (a lone client
    answers each comparison once, and the rest of its judgments are kept for
    annotators who are not there), so the budget grows by what they cannot give."""
    rate = 1.25 * spec.clients / spec.think_mean_s if spec.think_mean_s > 0 else min(max_rate, 60.0 * spec.clients)
    answers = max(200, math.ceil(rate * (spec.warmup + spec.seconds + 5)))
    return math.ceil(answers * OVERLAP / min(spec.clients, OVERLAP))


def start_stack(stack: Stack, database: str) -> tuple[str, dict[str, Any]]:
    """Workers, beat and gunicorn as deployed; the base URL and what was started."""
    options = serving.gunicorn_options()
    concurrency = serving.worker_concurrency()
    web_env = serving.service_env("web") if database == "postgres" else {}
    worker_env = serving.service_env("worker") if database == "postgres" else {}
    main = stack.worker("main", queues=("train", "select", "default"), concurrency=concurrency, env=worker_env)
    embed = stack.worker("embed", queues=("embed",), env=worker_env)
    beat = stack.beat()
    url = stack.web(options=options, env=web_env)
    described = {
        "web": "gunicorn " + " ".join(options),
        "web_env": web_env,
        "celery": f"worker main (train, select, default; concurrency {concurrency}), worker embed (embed), beat",
        "worker_env": worker_env,
        "broker": "redis (db 13)" if database == "postgres" else "filesystem (scripts/run's default)",
        "cache": "redis (db 14)" if database == "postgres" else "local memory (the default)",
        "groups": {
            "web": [p.pid for p in stack.web_processes],
            "worker": [main.pid],
            "embed_and_beat": [embed.pid, beat.pid],
        },
    }
    return url, described


def run_one(
    stack: Stack, url: str, spec: RunSpec, index: int, started: dict[str, Any], max_rate: float, *, settle: float
) -> dict:
    """One run: a fresh study and crowd, the window measured, the database
    checked; then the study paused and its work left ``settle`` s at most to end."""
    from annotation.models import RewardModelVersion  # noqa: PLC0415

    budget = planned_answers(spec, max_rate)
    study = seed_study(name=f"Annotate load {index} {spec.label}", answers=budget, clients=spec.clients, queue={})
    prefix = f"annload{index}"
    tokens = seed_annotators(study_id=study.id, count=spec.clients, prefix=prefix)
    began = time.monotonic()
    if not wait_for(lambda: embedded(study.id), 900, "embeddings", poll=0.5):
        raise SystemExit(f"the worker did not embed the study's candidates in time; see {stack.work}/embed.log")
    embed_seconds = time.monotonic() - began
    think_kind = "exponential" if spec.think_mean_s > 0 else "uniform"
    common = {
        "url": url,
        "slug": study.slug,
        "target": 10**9,  # the run is bounded by time
        "seed": 16_000 + index,
        "deadline": spec.warmup + spec.seconds,
        "think": spec.think_mean_s,
        "think_kind": think_kind,
    }
    if spec.loop == "htmx":
        from django.contrib.auth import get_user_model  # noqa: PLC0415

        names = [f"{prefix}-{k:03d}" for k in range(spec.clients)]
        ids = dict(get_user_model().objects.filter(username__in=names).values_list("username", "id"))
        crowd: Crowd = htmx.HtmxCrowd(tokens=htmx.sign_in(names), annotators=[ids[n] for n in names], **common)
    else:
        crowd = Crowd(tokens=tokens, **common)

    probe = measure.CpuProbe(
        groups=started["groups"],
        postgres=(ADMIN_DATABASE_URL, stack.db_name) if stack.database == "postgres" else None,
    )
    window = measure.Window(warmup=spec.warmup, seconds=spec.seconds, on_start=probe.start, on_end=probe.end)
    follower = window.start_thread(lambda: crowd.started_at)
    print(
        f"annotate_load: {stack.database} {spec.label}: study of {budget} answers embedded in {embed_seconds:.0f} s;"
        f" answering for {spec.warmup:g} + {spec.seconds:g} s",
        file=sys.stderr,
    )
    crowd.run()
    follower.join(timeout=30)
    time.sleep(1.0)  # on-commit work of the last answers
    if isinstance(crowd, htmx.HtmxCrowd):
        crowd.resolve_judgments(study.id)
    checks = verify(study_id=study.id, crowd=crowd)

    w0, w1 = spec.warmup, spec.warmup + spec.seconds
    inside = [c for c in crowd.cycles if w0 <= c.ended_at <= w1]
    n = len(inside)
    cycle = measure.quantiles([c.cycle_ms for c in inside])
    submit = measure.quantiles([c.submit_ms for c in inside])
    if spec.loop == "htmx":
        next_ = measure.quantiles([ms for at, ms in crowd.page_loads if w0 <= at <= w1])
        next_request = (
            "GET /s/<slug>/annotate/ (page loads: the first, and 'Check again'); "
            "the answer's reply brings the next comparison"
        )
        submit_request = "POST /s/<slug>/annotate/submit/ (htmx; its reply is the next comparison): the whole cycle"
    else:
        next_ = measure.quantiles([c.next_ms for c in inside if c.next_ms is not None])
        next_request = "GET /api/v1/studies/<slug>/next/"
        submit_request = "POST /api/v1/studies/<slug>/judgments/"
    start_dt, end_dt = window.datetimes()
    published = list(
        RewardModelVersion.objects.filter(study_id=study.id, created_at__gte=start_dt, created_at__lte=end_dt)
        .order_by("created_at")
        .values_list("created_at", flat=True)
    )
    cpu = probe.seconds()
    spells = crowd.empty_spells
    record: dict[str, Any] = {
        "system": "prefloop",
        "database": stack.database,
        "loop": spec.loop,
        "shape": spec.shape,
        "clients": spec.clients,
        "think_mean_s": spec.think_mean_s,
        "seconds": spec.seconds,
        "warmup_s": spec.warmup,
        "cycles": n,
        "cycles_per_second": round(n / spec.seconds, 2),
        "p50_cycle_ms": cycle["p50"],
        "p95_cycle_ms": cycle["p95"],
        "p99_cycle_ms": cycle["p99"],
        "p50_next_ms": next_["p50"],
        "p95_next_ms": next_["p95"],
        "p99_next_ms": next_["p99"],
        "p50_submit_ms": submit["p50"],
        "p95_submit_ms": submit["p95"],
        "p99_submit_ms": submit["p99"],
        "max_cycle_ms": round(max(c.cycle_ms for c in inside), 1) if inside else None,
        "next_request": next_request,
        "submit_request": submit_request,
        "errors": sum(crowd.errors.values()),
        "errors_by_kind": dict(crowd.errors.most_common()),
        "server_errors": _server_errors(crowd.errors),
        "errors_in_window": sum(1 for at, _ in crowd.error_times if w0 <= at <= w1),
        "answers": len(crowd.answers),
        "answering_s": round(crowd.seconds, 1),
        "judgments_stored": checks["judgments_stored"],
        "lost": checks["lost"],
        "duplicated": checks["duplicated"],
        "duplicated_detail": checks["duplicated_detail"],
        "leases_held_at_end": checks["leases_held_at_end"],
        "leases_orphaned": checks["leases_orphaned"],
        "no_comparison": {
            "count": len(spells),
            "seconds": round(sum(b - a for a, b in spells), 1),
            "longest_s": round(max((b - a for a, b in spells), default=0.0), 1),
        },
        "strategy": study.strategy,
        "model_chosen_share": _strategy_share(study, start_dt, end_dt),
        "model_chosen_share_whole_run": _share(checks["answered_by_strategy"], study.strategy),
        "answered_comparisons": checks["answered_comparisons"],
        "answered_by_strategy": checks["answered_by_strategy"],
        "answered_chosen_by_the_strategy": checks["answered_chosen_by_the_strategy"],
        "versions_published": len(published),
        "versions_published_whole_run": checks["model_versions_published"],
        "longest_publication_gap_s": measure.longest_gap(
            [p.timestamp() for p in published], window.wall_start, window.wall_end
        ),
        "cpu_ms_per_cycle": {
            part: (round(1000 * used / n, 1) if used is not None and n else None) for part, used in cpu.items()
        },
        "cpu_seconds": {part: (round(used, 2) if used is not None else None) for part, used in cpu.items()},
        # The keys Label Studio's records have (its one server process; PostgreSQL's processes).
        "server_cpu_ms_per_cycle": round(1000 * cpu["web"] / n, 1) if cpu.get("web") is not None and n else None,
        "database_cpu_ms_per_cycle": (
            round(1000 * cpu["database"] / n, 1) if cpu.get("database") is not None and n else None
        ),
        "load_average": window.load_average(),
        "budget": budget,
        "budget_exhausted": checks["judgments_stored"] >= budget,
        "embed_seconds_before_start": round(embed_seconds, 1),
        "web": started["web"],
        "web_env": started["web_env"],
        "celery": started["celery"],
        "worker_env": started["worker_env"],
        "broker": started["broker"],
        "cache": started["cache"],
        "cpus": os.cpu_count(),
    }
    if isinstance(crowd, htmx.HtmxCrowd):
        shown = crowd.shown_ahead + crowd.shown_after_reply
        record["next_shown_from_the_page_share"] = round(crowd.shown_ahead / shown, 3) if shown else None
    if record["budget_exhausted"]:
        print(f"annotate_load: {spec.label} used its whole budget ({budget}); raise MAX_RATE", file=sys.stderr)
    if settle:
        _quiesce(study.id, settle)
    return record


def _server_errors(errors: Counter) -> int:
    from benchmarks.reliability.load import _server_error  # noqa: PLC0415

    return sum(n for what, n in errors.items() if _server_error(what))


def _share(by_strategy: dict[str, int], strategy: str) -> float | None:
    total = sum(by_strategy.values())
    return round(by_strategy.get(strategy, 0) / total, 3) if total else None


def _strategy_share(study: Any, start: Any, end: Any) -> float | None:
    """Of the comparisons answered in the window, the share the study's own
    strategy chose (not a fallback: random refills, the empty-queue refill)."""
    from django.db.models import Count  # noqa: PLC0415

    from annotation.models import Comparison, Judgment  # noqa: PLC0415

    answered = Judgment.objects.filter(study_id=study.id, created_at__gte=start, created_at__lte=end)
    rows = (
        Comparison.objects.filter(id__in=answered.values("comparison_id"))
        .values("strategy")
        .annotate(n=Count("id"))
        .values_list("strategy", "n")
    )
    return _share(dict(rows), study.strategy)


def _quiesce(study_id: int, seconds: float) -> None:
    """Pause the study and let its background work end (``seconds`` at most),
    so the next run's figures are its own."""
    from annotation.models import Study  # noqa: PLC0415

    Study.objects.filter(pk=study_id).update(status=Study.Status.PAUSED)

    def idle() -> bool:
        row = Study.objects.filter(pk=study_id).values().first() or {}
        return not any(row.get(k) for k in ("retrain_owner", "refill_owner", "retrain_claimed_at", "refill_claimed_at"))

    wait_for(idle, seconds, "the previous study's background work", poll=0.5)
    time.sleep(min(2.0, seconds / 10))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="annotate load: one database's runs")
    parser.add_argument("--database", choices=("postgres", "sqlite"), required=True)
    parser.add_argument("--runs", required=True, help="JSON list of RunSpec fields")
    parser.add_argument("--name", default="main", help="names the stack's database and folders")
    parser.add_argument("--max-rate", type=float, default=MAX_RATE)
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args(argv)
    specs = [RunSpec(**spec) for spec in json.loads(args.runs)]
    name = f"{args.name}_{args.database}" + ("_short" if args.short else "")
    var_dir = VAR_DIR / name
    shutil.rmtree(var_dir, ignore_errors=True)  # a filesystem broker's messages from an earlier run
    settings = {"PREFLOOP_VAR_DIR": str(var_dir)}
    if args.database == "postgres":
        settings["CACHE_URL"] = CACHE_URL
    broker = BROKER_URL if args.database == "postgres" else "filesystem://"
    records = []
    clock = time.monotonic()
    with Stack(name, database=args.database, broker=broker, settings=settings, db_name=f"annload_{name}") as stack:
        from django.core.cache import cache  # noqa: PLC0415

        cache.clear()  # rate limits and the like from an earlier run
        url, started = start_stack(stack, args.database)
        print(f"annotate_load: {args.database} stack up in {time.monotonic() - clock:.0f} s; logs in {stack.work}",
              file=sys.stderr)  # fmt: skip
        for index, spec in enumerate(specs):
            last = index == len(specs) - 1
            settle = 0.0 if last else (10.0 if args.short else 60.0)
            records.append(run_one(stack, url, spec, index, started, args.max_rate, settle=settle))
        logs = str(stack.work)
        clock = time.monotonic()
        # The figures are in: no need for a warm shutdown, which waits for a fit to end.
        for process in reversed(stack.processes):
            stack.kill(process, signal.SIGKILL)
    print(f"annotate_load: {args.database} stack down in {time.monotonic() - clock:.0f} s", file=sys.stderr)
    args.json_out.write_text(json.dumps({"runs": records, "logs": logs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
