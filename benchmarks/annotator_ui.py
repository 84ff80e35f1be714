"""Annotator UI benchmark: first-load page weight and submit → next comparison on screen.

Runs the app as it is deployed: PostgreSQL, gunicorn (DEBUG off, static files
from WhiteNoise, compressed), Redis as the broker and a Celery worker that
retrains and refills while the annotator works. A headless Chromium answers
``--judgments`` comparisons with the keyboard; for each one the time from the
key press to the next comparison being painted is measured in the page, and
split into the request (with the server's own time from its Server-Timing
header), the swap and the paint. ``--runs`` independent runs (3 by default,
each from a fresh database, server and worker) are pooled and also reported
one by one, since a 2-core machine shared by browser, server, database and
worker varies from run to run.

    python -m benchmarks.annotator_ui                  # writes benchmarks/results/annotator_ui.json
    python -m benchmarks.annotator_ui --no-worker      # without the Celery worker

Needs the PostgreSQL and Redis of the development machine (see README) and
Debian's chromium. The benchmark database is created and dropped by the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.postgres import drop_database, recreate_database

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "annotator_ui.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "bench-annotator-password"
PROMPT_TOPICS = [
    "reverse a list in Python", "boil an egg", "explain recursion to a child", "name a bakery",
    "write a haiku about rain", "pick a first programming language", "store passwords safely",
    "speed up a slow SQL query", "learn to touch type", "keep basil alive indoors",
]  # fmt: skip
# Measured in the page: key press → the new comparison swapped in and painted.
TIMER_JS = """
() => {
  window.__durations = [];
  window.__phases = [];
  let started = null, sent = null, received = null, server = null;
  document.addEventListener("keydown", () => { started = performance.now(); }, true);
  document.addEventListener("htmx:beforeSend", () => { sent = performance.now(); });
  document.addEventListener("htmx:beforeSwap", (event) => {
    received = performance.now();
    const timing = event.detail.xhr.getResponseHeader("Server-Timing") || "";
    const match = /app;dur=([0-9.]+)/.exec(timing);
    server = match ? parseFloat(match[1]) : null;
  });
  // The next comparison is on screen: swapped in from the page (prefetched)
  // or from the server's reply (a round trip); whichever comes first.
  function shown(prefetched) {
    if (started === null) return;
    const t0 = started, t1 = sent, t2 = received, t3 = performance.now(), s = server;
    started = null;
    requestAnimationFrame(() => requestAnimationFrame(() => {
      const t4 = performance.now();
      window.__phases.push(prefetched
        ? {prefetched: true, press_to_swap: t3 - t0, paint: t4 - t3}
        : {prefetched: false, press_to_send: t1 - t0, request: t2 - t1, server: s, swap: t3 - t2, paint: t4 - t3});
      window.__durations.push(t4 - t0);
    }));
  }
  document.addEventListener("prefloop:shown", () => shown(true));
  document.addEventListener("htmx:afterSwap", () => shown(false));
}
"""
WEIGHT_JS = """
() => performance.getEntriesByType("resource")
  .filter(e => /\\.(js|css)(\\?|$)/.test(e.name))
  .map(e => ({url: e.name, decoded: e.decodedBodySize}))
"""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgments", type=int, default=200)
    parser.add_argument("--admin-database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="prefloop_bench_ui")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--no-worker", action="store_true", help="no Celery worker (refills stay synchronous)")
    parser.add_argument("--runs", type=int, default=3, help="independent runs (fresh database, server and worker)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    runs = [_run_once(args) for _ in range(args.runs)]
    durations = [d for run in runs for d in run["durations"]]
    phases = [p for run in runs for p in run["phases"]]
    result = {
        "config": {
            "runs": len(runs),
            "judgments_per_run": args.judgments,
            "database": "postgresql",
            "server": "gunicorn, 2 workers × 4 threads, DEBUG off, WhiteNoise compressed static files",
            "celery_worker": not args.no_worker,
            "browser": "Debian chromium, headless, on the same machine",
            "command": "python -m benchmarks.annotator_ui"
            + (f" --runs {args.runs}" if args.runs != 3 else "")
            + (" --no-worker" if args.no_worker else ""),
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "page_weight": runs[-1]["page_weight"],
        # All runs pooled; each run's own figures below.
        "submit_to_next_ms": _summary(durations),
        # How often the next comparison was already on the page, and where the
        # time goes. Prefetched: key press → swapped in, then the paint (two
        # frames). Round trip: key press → request sent, the request (network +
        # server), of which the server (Django's own time, from its
        # Server-Timing header), the swap, and the paint.
        "prefetched_share": round(sum(p["prefetched"] for p in phases) / len(phases), 3),
        "phases_ms": {
            kind: {
                name: {
                    "p50": round(_percentile(values, 50), 1),
                    "p95": round(_percentile(values, 95), 1),
                }
                for name in ("press_to_send", "press_to_swap", "request", "server", "swap", "paint")
                if (values := [p[name] for p in group if p.get(name) is not None])
            }
            for kind, group in (
                ("prefetched", [p for p in phases if p["prefetched"]]),
                ("round_trip", [p for p in phases if not p["prefetched"]]),
            )
            if group
        },
        "runs": [
            {
                "submit_to_next_ms": _summary(run["durations"]),
                # What the worker did while the annotator answered (it shares the cores).
                "loop": run["loop"],
                "durations_ms": [round(d, 1) for d in run["durations"]],
            }
            for run in runs
        ],
        "targets": {"page_weight_kb_max": 200, "p95_ms_max": 150},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    brief = {k: v for k, v in result.items() if k != "runs"}
    brief["runs_p95_ms"] = [run["submit_to_next_ms"]["p95"] for run in result["runs"]]
    print(json.dumps(brief, indent=2))
    return result


def _summary(durations: list[float]) -> dict[str, float]:
    return {
        "n": len(durations),
        "p50": round(_percentile(durations, 50), 1),
        "p95": round(_percentile(durations, 95), 1),
        "max": round(max(durations), 1),
        "mean": round(statistics.fmean(durations), 1),
    }


def _run_once(args: argparse.Namespace) -> dict[str, Any]:
    """One run from scratch: database, seed, gunicorn, worker, browser."""
    work = Path(tempfile.mkdtemp(prefix="prefloop-ui-bench-"))
    base_url = args.admin_database_url.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "DATABASE_URL": f"{base_url}/{args.database}",
        "DEBUG": "false",
        "SECRET_KEY": "benchmark-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        # Plain HTTP on localhost, and the Server-Timing header the browser script reads.
        "PREFLOOP_HTTPS": "false",
        "PREFLOOP_SERVER_TIMING": "true",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "STATIC_ROOT": str(work / "static"),
        "PREFLOOP_VAR_DIR": str(work / "var"),
        "CELERY_BROKER_URL": args.broker,
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
    }
    recreate_database(args.admin_database_url, args.database)
    processes: list[subprocess.Popen] = []
    try:
        _manage(env, "migrate", "--noinput", "-v0")
        _manage(env, "collectstatic", "--noinput", "-v0")
        slugs = _seed(env)
        port = _free_port()
        gunicorn = ["gunicorn", "webapp.wsgi", "-b", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4"]
        commands = [[*gunicorn, "--log-level", "warning"]]
        if not args.no_worker:
            worker = ["celery", "-A", "webapp", "worker", "-Q", "train,select,default,embed", "--concurrency", "1"]
            commands.append([*worker, "--loglevel", "WARNING"])
        for command in commands:
            processes.append(subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, env=env))
        url = f"http://localhost:{port}"
        _wait_for(url + "/accounts/login/")
        figures = _browse(url, slugs, args.judgments)
        figures["loop"] = _loop_activity(env)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        drop_database(args.admin_database_url, args.database)
    return figures


def _browse(url: str, slugs: dict[str, str], judgments: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page_weight = {}
            for mode, slug in slugs.items():
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                _log_in(page, url, f"bench-{mode}")
                page.goto(f"{url}/s/{slug}/annotate/")
                page.wait_for_load_state("load")
                resources = page.evaluate(WEIGHT_JS)
                page_weight[mode] = {
                    "js_css_kb": round(sum(r["decoded"] for r in resources) / 1024, 1),
                    "files": {r["url"].rsplit("/", 1)[-1]: round(r["decoded"] / 1024, 1) for r in resources},
                }
                context.close()

            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            _log_in(page, url, "bench-pairwise")
            page.goto(f"{url}/s/{slugs['pairwise']}/annotate/")
            page.wait_for_load_state("load")
            page.evaluate(TIMER_JS)
            for k in range(judgments):
                shown = page.get_attribute("#comparison", "data-comparison-id")
                if not shown:
                    raise RuntimeError(f"no comparison on screen after {k} judgments")
                page.keyboard.press("1" if k % 3 else "2")
                page.wait_for_function("n => window.__durations.length > n", arg=k, timeout=30_000, polling="raf")
                # An annotator reads before answering; annotate.js takes no answer key
                # in a comparison's first ARM_MS (350 ms), so wait until it takes them.
                page.wait_for_function(
                    "() => !document.getElementById('comparison').classList.contains('arming')", timeout=30_000
                )
                page.wait_for_timeout(100)
            durations = page.evaluate("window.__durations")
            phases = page.evaluate("window.__phases")
            context.close()
        finally:
            browser.close()
    return {"page_weight": page_weight, "durations": durations, "phases": phases}


def _log_in(page, url: str, username: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def _seed(env: dict[str, str]) -> dict[str, str]:
    """A pairwise and a listwise study with realistic text, and one annotator each."""
    code = f"""
import django; django.setup()
from django.contrib.auth import get_user_model
from annotation.imports.records import CandidateRecord, PromptRecord
from annotation.imports.writer import study_import_records
from annotation.services import study_create
from annotation.models import Membership
topics = {PROMPT_TOPICS!r}
records = []
for k in range(60):
    topic = topics[k % len(topics)]
    prompt = f"Question {{k}}: how do I {{topic}}?"
    answers = [
        f"Here is a short answer about how to {{topic}}: start small, check the result, then repeat.",
        f"To {{topic}}, follow these steps:\\n\\n1. Read the basics.\\n2. Try it once.\\n3. Fix what went wrong.",
        f"I'm not sure about {{topic}}; maybe search online.",
        f"**{{topic.capitalize()}}** is easier than it looks. The key idea is to do one thing at a time "
        f"and to keep notes, so the next attempt builds on the last one.",
    ]
    records.append(PromptRecord(external_id=str(k), text=prompt, format="text", metadata={{}},
                                candidates=tuple(CandidateRecord(text=a, source=f"model-{{i}}", metadata={{}})
                                                 for i, a in enumerate(answers)), line=k + 1))
User = get_user_model()
for mode, extra in (("pairwise", {{}}), ("listwise", {{"mode": "listwise", "list_size": 4}})):
    study = study_create(name=f"Bench {{mode}}", budget=5000, strategy="uncertainty", **extra)
    study_import_records(study=study, records=records)
    user = User.objects.create_user(f"bench-{{mode}}", password={PASSWORD!r})
    Membership.objects.create(user=user, study=study, role="annotator")
    print(mode, study.slug)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return dict(line.split() for line in out.stdout.strip().splitlines() if line.startswith(("pairwise", "listwise")))


def _loop_activity(env: dict[str, str]) -> dict[str, Any]:
    """Model versions the worker trained during the run, and who chose the comparisons answered."""
    code = """
import django, json; django.setup()
from django.db.models import Count, Sum
from annotation.models import RewardModelVersion
from annotation.models import Judgment
versions = RewardModelVersion.objects.filter(study__name="Bench pairwise")
print(json.dumps({
    "model_versions": versions.count(),
    "train_seconds_total": round(versions.aggregate(s=Sum("train_seconds"))["s"] or 0.0, 1),
    "answered_by_strategy": dict(
        Judgment.objects.filter(study__name="Bench pairwise")
        .values_list("comparison__strategy").annotate(n=Count("id")).order_by()
    ),
}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the server did not answer at {url}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


if __name__ == "__main__":
    main()
