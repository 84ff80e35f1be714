"""Where an annotate cycle's time goes, measured in one process: statements and CPU per request.

    python -m benchmarks.annotate_profile [--database postgres|sqlite] [--cycles 400] [--annotators 16]
                                          [--top 25] [--out benchmarks/results/annotate_profile.json]

The load benchmark (``benchmarks.annotate_load``) says how fast the served
stack is; this one says why. It builds a study as the load benchmark does (the
app's default model and strategy, production settings: ``DEBUG`` off), fills
its queue once, and then drives the two annotate loops through Django's WSGI
handler itself (what gunicorn calls, less the HTTP parsing), annotators taking
turns:

- **api**: ``GET …/next/`` then ``POST …/judgments/`` with a token;
- **htmx**: the annotate page's answer form (``POST /s/<slug>/annotate/submit/``
  as htmx sends it, with the session and CSRF cookies), naming the comparison
  the page already shows (leased ahead, put on screen as the answer goes out)
  as annotate.js does; the reply carries the parts around it and the one
  leased after it.

No worker runs: requests that ask the loop for work enqueue on the broker
(Redis database 12, purged before and after) exactly as served, and the queue
was filled up front, so what is measured is the steady state of a study whose
queue is ahead of its annotators. For each loop and request kind it records the
SQL statements per request (and the distinct statements, so a repeated query
shows), CPU per cycle (``time.process_time``, the whole process: Django,
psycopg, the broker client), and the top functions of a cProfile run by own
time. The first ``--warmup`` cycles (imports, connection, caches) are not counted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "annotate_profile.json"
BROKER_URL = "redis://127.0.0.1:6379/12"
# The project's own functions, for the cumulative profile (pstats takes a regular expression).
PROJECT_CODE = r"/(annotation|activelearn|webapp|models_runtime)/"


class Client:
    """One annotator calling the WSGI application directly, with a cookie jar."""

    def __init__(self, app: Callable, *, token: str | None = None, session_key: str | None = None) -> None:
        self.app = app
        self.token = token
        self.cookies: dict[str, str] = {"sessionid": session_key} if session_key else {}

    def request(self, method: str, path: str, *, body: bytes = b"", content_type: str = "", headers=None):
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": content_type,
        }
        if self.token:
            environ["HTTP_AUTHORIZATION"] = f"Token {self.token}"
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        status: list[str] = []
        response_headers: list[tuple[str, str]] = []

        def start_response(line: str, given: list[tuple[str, str]], exc_info=None) -> None:
            status.append(line)
            response_headers.extend(given)

        chunks = self.app(environ, start_response)
        try:
            text = b"".join(chunks).decode()
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        for name, value in response_headers:
            if name.lower() == "set-cookie":
                for key, morsel in SimpleCookie(value).items():
                    self.cookies[key] = morsel.value
        return int(status[0].split()[0]), text


def seed(*, annotators: int, cycles: int) -> tuple[Any, list[str], list[str]]:
    """A study with a full queue, its annotators' tokens and session keys."""
    from annotation.models import Study  # noqa: PLC0415
    from annotation.selectors import queue_waiting_count  # noqa: PLC0415
    from benchmarks.annotate_load.htmx import sign_in  # noqa: PLC0415
    from benchmarks.reliability.load import seed_annotators, seed_study  # noqa: PLC0415

    # Both loops run on the study: enough comparisons queued for all their cycles.
    answers = 2 * cycles + 200
    study = seed_study(
        name="annotate profile", answers=answers, clients=annotators, queue={"queue_target": 1000, "queue_low_water": 8}
    )
    tokens = seed_annotators(study_id=study.id, count=annotators, prefix="prof")
    from annotation import loop  # noqa: PLC0415

    while queue_waiting_count(study_id=study.id) * study.overlap < answers and loop.get().refill_now(study_id=study.id):
        pass
    study = Study.objects.get(id=study.id)
    keys = sign_in([f"prof-{k:03d}" for k in range(annotators)])
    return study, tokens, keys


def _api_cycle(client: Client, slug: str, record: Callable) -> None:
    status, text = record("next", lambda: client.request("GET", f"/api/v1/studies/{slug}/next/"))
    assert status == 200, (status, text[:300])
    comparison_id = json.loads(text)["comparison_id"]
    assert comparison_id, text[:300]
    body = json.dumps({"comparison_id": comparison_id, "choice": "a"}).encode()
    path = f"/api/v1/studies/{slug}/judgments/"
    status, text = record("submit", lambda: client.request("POST", path, body=body, content_type="application/json"))
    assert status == 201, (status, text[:300])


def _htmx_cycle(client: Client, slug: str, record: Callable, pages: dict[int, Any]) -> None:
    from benchmarks.annotate_load.htmx import parse_comparison  # noqa: PLC0415

    key = id(client)
    if key not in pages:
        status, text = client.request("GET", f"/s/{slug}/annotate/")
        assert status == 200, status
        pages[key] = parse_comparison(text)[:2]
    shown, ahead = pages[key]
    assert shown is not None, "nothing shown"
    fields = [(k, v) for k, v in shown.fields if k != "choice"] + [("choice", "a")]
    fields = [(k, "1500" if k == "time_on_task_ms" else v) for k, v in fields]
    body = urlencode(fields).encode()
    headers = {
        "HX-Request": "true",
        "HX-Trigger": "answer-form",
        "HX-Target": "comparison",
        "HX-Current-URL": f"http://127.0.0.1/s/{slug}/annotate/",
        "Origin": "http://127.0.0.1",
        "X-CSRFToken": client.cookies.get("csrftoken", ""),
    }
    if ahead is not None:  # annotate.js shows it as the answer goes out, and says so
        headers["X-Prefloop-Showing"] = str(ahead.comparison_id)
    status, text = record(
        "submit",
        lambda: client.request(
            "POST",
            f"/s/{slug}/annotate/submit/",
            body=body,
            content_type="application/x-www-form-urlencoded; charset=UTF-8",
            headers=headers,
        ),
    )
    assert status == 200, (status, text[:300])
    reply, reply_ahead, _ = parse_comparison(text)
    if ahead is not None and reply is not None and reply.comparison_id == ahead.comparison_id:
        pages[key] = (ahead, reply_ahead)  # the page keeps the comparison it shows
    else:
        pages[key] = (reply, reply_ahead)


def profile_loop(loop: str, *, study: Any, clients: list[Client], cycles: int, warmup: int, top: int) -> dict:
    from django.db import connection  # noqa: PLC0415
    from django.test.utils import CaptureQueriesContext  # noqa: PLC0415

    statements: dict[str, list[int]] = {}
    clean = [0.0]  # CPU seconds inside the application
    distinct: dict[str, Counter] = {}
    cpu: dict[str, float] = {}
    counting = False

    def record(kind: str, call: Callable) -> Any:
        # Only the application's time counts: not the client's parsing of the reply.
        with CaptureQueriesContext(connection) as captured:
            started = time.process_time()
            result = call()
            spent = time.process_time() - started
        clean[0] += spent
        if counting:
            statements.setdefault(kind, []).append(len(captured.captured_queries))
            shape = distinct.setdefault(kind, Counter())
            for query in captured.captured_queries:
                shape[_shape(query["sql"])] += 1
            cpu[kind] = cpu.get(kind, 0.0) + spent
        return result

    pages: dict[int, Any] = {}

    def cycle(k: int) -> None:
        client = clients[k % len(clients)]
        if loop == "api":
            _api_cycle(client, study.slug, record)
        else:
            _htmx_cycle(client, study.slug, record, pages)

    for k in range(warmup):
        cycle(k)
    # First pass: statements counted and a profile taken (by CPU time, so a wait
    # on the database is not charged to the function waiting). Both cost time
    # themselves: the CPU figure is a second pass with neither.
    counting = True
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for k in range(warmup, warmup + cycles):
        cycle(k)
    profiler.disable()
    counting = False

    def bare(kind: str, call: Callable) -> Any:
        started = time.process_time()
        result = call()
        clean[0] += time.process_time() - started
        return result

    clean[0] = 0.0
    backend = _backend_cpu()
    wall = time.perf_counter()
    for k in range(warmup + cycles, warmup + 2 * cycles):
        client = clients[k % len(clients)]
        if loop == "api":
            _api_cycle(client, study.slug, bare)
        else:
            _htmx_cycle(client, study.slug, bare, pages)
    wall = time.perf_counter() - wall
    clean_cpu = clean[0]
    backend = _backend_cpu() - backend if backend is not None else None

    stream, cumulative = io.StringIO(), io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(top)
    pstats.Stats(profiler, stream=cumulative).sort_stats("cumulative").print_stats(PROJECT_CODE, top)
    return {
        "loop": loop,
        "cycles": cycles,
        "cpu_ms_per_cycle": round(1000 * clean_cpu / cycles, 2),
        "wall_ms_per_cycle": round(1000 * wall / cycles, 2),
        # The database server's side of the same pass: the CPU of the backend
        # process serving this connection (PostgreSQL, read from /proc).
        "database_cpu_ms_per_cycle": None if backend is None else round(1000 * backend / cycles, 2),
        "requests": {
            kind: {
                "statements_mean": round(statistics.fmean(counts), 2),
                "statements_max": max(counts),
                "cpu_ms_mean_instrumented": round(1000 * cpu[kind] / len(counts), 2),
                "statements": [
                    {"count_per_request": round(n / len(counts), 2), "sql": sql}
                    for sql, n in distinct[kind].most_common()
                ],
            }
            for kind, counts in statements.items()
        },
        "profile_top_by_own_time": _profile_lines(stream.getvalue()),
        "profile_project_by_cumulative_time": _profile_lines(cumulative.getvalue()),
    }


def _backend_cpu() -> float | None:
    """CPU seconds the PostgreSQL backend of this process's connection has used; None elsewhere."""
    from django.db import connection  # noqa: PLC0415

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


_NUMBERS = re.compile(r"\b\d+\b")
_STRINGS = re.compile(r"'(?:[^']|'')*'")


def _shape(sql: str) -> str:
    """A statement with its literal values blanked, so its repeats count together."""
    shape = _STRINGS.sub("'…'", _NUMBERS.sub("N", sql))
    shape = re.sub(r"IN \((?:N|%s)(?:, (?:N|%s))*\)", "IN (…)", shape)
    return shape[:400]


def _profile_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return [line.rstrip() for line in lines[start:] if line.strip()]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--loops", default="api,htmx")
    parser.add_argument("--cycles", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--annotators", type=int, default=16)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from benchmarks.reliability.cli import _code_version  # noqa: PLC0415
    from benchmarks.reliability.stack import Stack  # noqa: PLC0415

    loops = [name.strip() for name in args.loops.split(",") if name.strip()]
    stack = Stack("annotate_profile", database=args.database, broker=BROKER_URL, db_name="prefloop_bench_profile")
    with stack:
        from django.core.handlers.wsgi import WSGIHandler  # noqa: PLC0415

        app = WSGIHandler()
        needed = len(loops) * (args.warmup + 2 * args.cycles)
        study, tokens, keys = seed(annotators=args.annotators, cycles=needed)
        results = []
        for loop in loops:
            clients = [
                Client(app, token=token) if loop == "api" else Client(app, session_key=key)
                for token, key in zip(tokens, keys, strict=True)
            ]
            results.append(
                profile_loop(loop, study=study, clients=clients, cycles=args.cycles, warmup=args.warmup, top=args.top)
            )
            print(f"annotate_profile {args.database} {loop}: {results[-1]['cpu_ms_per_cycle']} ms CPU per cycle "
                  f"(database {results[-1]['database_cpu_ms_per_cycle']}), "
                  + ", ".join(f"{k} {v['statements_mean']} statements" for k, v in results[-1]["requests"].items()),
                  flush=True)  # fmt: skip
        stack.purge_broker()
    record = {
        "database": args.database,
        "annotators": args.annotators,
        "commit": _code_version(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loops": results,
    }
    if args.out:
        previous = json.loads(args.out.read_text()) if args.out.exists() else {}
        previous[args.database] = record
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(previous, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
