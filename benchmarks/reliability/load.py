"""Load: many annotators answering through the API at once, and nothing lost.

Closed-loop HTTP clients (one thread each, the standard library's
``http.client`` on a kept-alive connection), each with its own annotator
account and API token, take their next comparison (``GET
/api/v1/studies/<slug>/next/``) and answer it (``POST …/judgments/``) after a
short think time (0–200 ms, seeded), until the study's answers reach the
target. They talk to gunicorn (2 workers × 4 threads) with Celery workers
retraining and refilling (queues train, select, default; embed on its own, as
``scripts/run`` starts them) and beat sweeping, as deployed (DEBUG off). The
study is pairwise with the app's default model and strategy, overlap 2 and a
budget of the target, over enough prompts for every comparison; its queue is
sized to the crowd (four comparisons waiting per annotator).

Every cycle's duration is recorded (both requests, no think time), every
non-2xx answer or connection error by request, status and message; then the
database is checked: every 2xx answer's judgment is there (``lost``), no
comparison has more judgments than it wants and no annotator judged one twice
(``duplicated``), no lease is left held by a finished client or orphaned, and
the share of answered comparisons the study's strategy chose (not random pairs).

Variants, each in a process of its own (Django reads its settings once):

- ``pg64``: 64 clients, 10,000 answers, PostgreSQL and Redis (db 9);
- ``sqlite16``: 16 clients on SQLite, the embedded default, with the
  filesystem broker as ``scripts/run`` starts it (no Redis).

``--short`` (CI): 8 clients × 200 answers on PostgreSQL, 4 × 100 on SQLite.

    python -m benchmarks.reliability --sections load
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.reliability.stack import Stack, run_module_json, wait_for

BROKER_URL = "redis://127.0.0.1:6379/9"
THINK_SECONDS = 0.2
TOPICS = ("sort a list", "boil an egg", "name a cat", "fix a bike", "learn chess", "brew tea", "plant a tree")
# name → (database, clients, answers) in the full and the short form.
VARIANTS: dict[str, dict[bool, tuple[str, int, int]]] = {
    "pg64": {False: ("postgres", 64, 10_000), True: ("postgres", 8, 200)},
    "sqlite16": {False: ("sqlite", 16, 2_000), True: ("sqlite", 4, 100)},
}
OVERLAP = 2
# The candidates of every prompt, best first: annotators prefer the better one
# every time, a preference the reward model can learn (and keeps learning as
# judgments come in, so the loop keeps publishing versions).
TEMPLATES = (
    "Steps to {topic}:\n1. Read.\n2. Try.\n3. Fix what went wrong ({k}).",
    "First gather what you need, then {topic} slowly; mistakes teach ({k}).",
    "{Topic} is easier than it looks: one thing at a time, and keep notes ({k}).",
    "To {topic}, start small and check the result ({k}).",
    "Ask someone who has done it: {topic} takes practice ({k}).",
    "I don't know how to {topic} ({k}).",
)
CANDIDATES_PER_PROMPT = len(TEMPLATES)  # 15 pairs a prompt


def quality(text: str) -> int:
    """How good the annotators find a candidate: its template's rank, best highest."""
    for rank, template in enumerate(TEMPLATES):
        head = template.split("{", 1)[0]
        tail = template.split("}", 1)[1].split("(", 1)[0]
        if (head and text.startswith(head)) or (not head and tail in text):
            return len(TEMPLATES) - rank
    return 0


def run(*, short: bool, variants: tuple[str, ...] = tuple(VARIANTS)) -> dict[str, Any]:
    """Each variant in a process of its own; their figures by name."""
    return {name: run_module_json("benchmarks.reliability.load", ["--variant", name], short=short) for name in variants}


def run_variant(name: str, *, short: bool) -> dict[str, Any]:
    """One variant against a fresh stack, in this process."""
    database, clients, answers = VARIANTS[name][short]
    broker = BROKER_URL if database == "postgres" else "filesystem://"
    load_before = os.getloadavg()
    # The short form's database has a name of its own: CI's run never drops a full run's.
    with Stack(f"load_{name}" + ("_short" if short else ""), database=database, broker=broker) as stack:
        study = seed_study(name=f"Load {name}", answers=answers, clients=clients)
        tokens = seed_annotators(study_id=study.id, count=clients, prefix=f"load-{name}")
        stack.worker("main", queues=("train", "select", "default"), concurrency=2)
        stack.worker("embed", queues=("embed",))
        stack.beat()
        url = stack.web(workers=2, threads=4)
        started = time.monotonic()
        if not wait_for(lambda: embedded(study.id), 900, "embeddings", poll=1.0):
            raise SystemExit(f"the worker did not embed the study's candidates in time; see {stack.work}/embed.log")
        embed_seconds = time.monotonic() - started
        crowd = Crowd(url=url, slug=study.slug, tokens=tokens, target=answers, seed=15)
        sampler = LoadSampler()
        crowd.run()
        sampler.stop()
        time.sleep(1.0)  # on-commit work of the last answers
        checks = verify(study_id=study.id, crowd=crowd)
    figures = {
        "database": database,
        "broker": "redis (db 9)" if database == "postgres" else "filesystem (scripts/run's default)",
        "clients": clients,
        "target_answers": answers,
        **crowd.summary(),
        **checks,
        "web": "gunicorn, 2 workers × 4 threads",
        "celery": "worker main (train, select, default; concurrency 2), worker embed (embed), beat",
        "study": {"mode": "pairwise", "overlap": OVERLAP, "budget": answers, **study_queue(clients)},
        "embed_seconds_before_start": round(embed_seconds, 1),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "load_average_1min_mean_during": sampler.mean(),
    }
    return figures


# --- the study ----------------------------------------------------------------------


def study_queue(clients: int) -> dict[str, int]:
    """The queue sized to the crowd: four comparisons waiting per annotator."""
    return {"queue_target": min(1000, max(24, 4 * clients)), "queue_low_water": min(1000, max(8, 2 * clients))}


def seed_study(
    *,
    name: str,
    answers: int,
    clients: int,
    overlap: int = OVERLAP,
    budget: int | None = None,
    queue: dict[str, int] | None = None,
) -> Any:
    """A pairwise study with the app's default model and strategy and enough
    prompts for ``answers`` judgments at ``overlap`` (half again as many pairs
    as comparisons, so the strategy still has a choice at the end); its budget
    is ``answers`` unless ``budget`` says otherwise. Its queue is sized to the
    crowd (:func:`study_queue`) unless ``queue`` gives the settings (``{}``:
    the app's defaults)."""
    from annotation.imports.records import CandidateRecord, PromptRecord  # noqa: PLC0415
    from annotation.imports.writer import study_import_records  # noqa: PLC0415
    from annotation.services import study_create  # noqa: PLC0415

    pairs_per_prompt = CANDIDATES_PER_PROMPT * (CANDIDATES_PER_PROMPT - 1) // 2
    comparisons = -(-answers // overlap)
    n_prompts = max(8, -(-3 * comparisons // (2 * pairs_per_prompt)))
    records = []
    for k in range(n_prompts):
        topic = TOPICS[k % len(TOPICS)]
        texts = tuple(template.format(topic=topic, Topic=topic.capitalize(), k=k) for template in TEMPLATES)[
            :CANDIDATES_PER_PROMPT
        ]
        candidates = tuple(CandidateRecord(text=t, source=f"model-{i}", metadata={}) for i, t in enumerate(texts))
        records.append(
            PromptRecord(
                external_id=str(k),
                text=f"Question {k}: how do I {topic}?",
                format="text",
                metadata={},
                candidates=candidates,
                line=k + 1,
            )
        )
    queue = study_queue(clients) if queue is None else queue
    study = study_create(name=name, budget=budget or answers, overlap=overlap, **queue)
    study_import_records(study=study, records=records)
    return study


def seed_annotators(*, study_id: int, count: int, prefix: str) -> list[str]:
    """``count`` annotator accounts of the study, each with an API token (made
    here: the token endpoint is rate-limited per client address)."""
    from django.contrib.auth import get_user_model  # noqa: PLC0415
    from django.contrib.auth.hashers import make_password  # noqa: PLC0415
    from rest_framework.authtoken.models import Token  # noqa: PLC0415

    from annotation.models import Membership  # noqa: PLC0415

    user_model = get_user_model()
    user_model.objects.bulk_create(
        user_model(username=f"{prefix}-{k:03d}", password=make_password(None)) for k in range(count)
    )
    users = list(user_model.objects.filter(username__startswith=f"{prefix}-").order_by("username"))
    Membership.objects.bulk_create(Membership(user=u, study_id=study_id, role="annotator") for u in users)
    return [Token.objects.create(user=u).key for u in users]


def embedded(study_id: int) -> bool:
    from annotation.models import EmbeddingProgress  # noqa: PLC0415

    return EmbeddingProgress.objects.filter(study_id=study_id, status="done").exists()


# --- the crowd ----------------------------------------------------------------------


@dataclass
class Answer:
    comparison_id: int
    judgment_id: int
    status: int
    client: int


@dataclass
class Cycle:
    """One answered comparison's timing: when it ended (seconds from the crowd's
    start) and how long its requests took (ms; ``next_ms`` is None where the
    answer's reply brought the next comparison, as the htmx form's does)."""

    ended_at: float
    cycle_ms: float
    next_ms: float | None
    submit_ms: float


@dataclass
class Crowd:
    """Closed-loop annotators: one thread each, until ``target`` answers are
    given (or ``stop`` is set, or ``deadline`` seconds pass). A client in the
    middle of a cycle when it stops finishes it: a comparison taken is answered.

    Think time before each next comparison: ``think_kind`` "uniform" draws it
    from 0–``think`` s, "exponential" from an exponential distribution of mean
    ``think`` s; ``think=0`` is none at all (capacity)."""

    url: str
    slug: str
    tokens: list[str]
    target: int
    seed: int
    deadline: float = 3600.0
    think: float = THINK_SECONDS
    think_kind: str = "uniform"
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[Answer] = field(default_factory=list)
    cycles_ms: list[float] = field(default_factory=list)
    cycles: list[Cycle] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    error_times: list[tuple[float, str]] = field(default_factory=list)
    # Spells of "no comparison available" while the annotator's work was not
    # finished: (start, end) in seconds from the crowd's start.
    empty_spells: list[tuple[float, float]] = field(default_factory=list)
    seconds: float = 0.0
    started_at: float = 0.0  # time.monotonic() when it started; error times count from it
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        started = self.started_at = time.monotonic()
        threads = [
            threading.Thread(target=self._client, args=(k, token), name=f"annotator-{k}", daemon=True)
            for k, token in enumerate(self.tokens)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            # Not a second per thread past the deadline: with many threads that stretched a run by a minute.
            thread.join(timeout=max(0.0, self.deadline - (time.monotonic() - started)))
        self.stop.set()
        for thread in threads:
            thread.join(timeout=120)
        self.seconds = time.monotonic() - started

    def start(self) -> threading.Thread:
        """Run in the background (fault trials); ``stop`` ends it."""
        thread = threading.Thread(target=self.run, name="crowd", daemon=True)
        thread.start()
        return thread

    def given(self) -> int:
        with self._lock:
            return len(self.answers)

    def _error(self, what: str) -> None:
        with self._lock:
            self.errors[what] += 1
            self.error_times.append((time.monotonic() - self.started_at, what))

    def think_seconds(self, rng: random.Random) -> float:
        """One think time (see the class's docstring)."""
        if self.think <= 0:
            return 0.0
        if self.think_kind == "exponential":
            return rng.expovariate(1.0 / self.think)
        return rng.uniform(0.0, self.think)

    def _empty_spell(self, since: float, until: float) -> None:
        with self._lock:
            self.empty_spells.append((since - self.started_at, until - self.started_at))

    def _answered(self, answer: Answer, began: float, next_ms: float | None, submit_ms: float) -> None:
        now = time.monotonic()
        took = (now - began) * 1000
        with self._lock:
            self.answers.append(answer)
            self.cycles_ms.append(took)
            self.cycles.append(Cycle(now - self.started_at, took, next_ms, submit_ms))

    def _client(self, k: int, token: str) -> None:
        rng = random.Random(self.seed * 1000 + k)
        parts = urlsplit(self.url)
        client = _Client(parts.hostname or "127.0.0.1", parts.port or 80, token)
        base = f"/api/v1/studies/{self.slug}"
        idle_since: float | None = None
        try:
            while not self.stop.is_set() and self.given() < self.target:
                if self.stop.wait(self.think_seconds(rng)):
                    break
                began = time.monotonic()
                status, body = client.request("GET", f"{base}/next/")
                if status != 200:
                    self._error(_describe("GET next", status, body))
                    time.sleep(0.2)
                    continue
                got_next = time.monotonic()
                comparison = body.get("comparison_id")
                if comparison is None:
                    if (body.get("progress") or {}).get("finished"):
                        return  # the study has all it wants from this annotator
                    # Near the end the rest is leased to others: wait for it, unless nobody answers at all.
                    idle_since = idle_since or began
                    if time.monotonic() - idle_since > 60:
                        self._error("GET next: no comparison for 60 s")
                        self._empty_spell(idle_since, time.monotonic())
                        return
                    time.sleep(0.5)
                    continue
                if idle_since is not None:
                    self._empty_spell(idle_since, got_next)
                idle_since = None
                choice = _choose(body.get("candidates") or [], rng)
                payload = {"comparison_id": comparison, "choice": choice, "time_on_task_ms": rng.randint(1000, 9000)}
                status, body = client.request("POST", f"{base}/judgments/", payload)
                if status not in (200, 201):
                    self._error(_describe("POST judgments", status, body))
                    time.sleep(0.2)
                    continue
                answered = Answer(comparison, int(body["id"]), status, k)
                submit_ms = (time.monotonic() - got_next) * 1000
                self._answered(answered, began, (got_next - began) * 1000, submit_ms)
            if idle_since is not None:
                self._empty_spell(idle_since, time.monotonic())
        finally:
            client.close()

    def summary(self) -> dict[str, Any]:
        cycles = sorted(self.cycles_ms)
        replays = sum(1 for a in self.answers if a.status == 200)
        return {
            "answers": len(self.answers),
            "answers_replayed_200": replays,
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(self.errors.most_common()),
            "server_errors": sum(n for what, n in self.errors.items() if _server_error(what)),
            "seconds": round(self.seconds, 1),
            "answers_per_second": round(len(self.answers) / self.seconds, 1) if self.seconds else None,
            "p50_cycle_ms": _quantile(cycles, 0.50),
            "p95_cycle_ms": _quantile(cycles, 0.95),
            "p99_cycle_ms": _quantile(cycles, 0.99),
            "max_cycle_ms": round(cycles[-1], 1) if cycles else None,
            "think_ms": [0, int(self.think * 1000)],
        }


def _choose(candidates: list[dict], rng: random.Random) -> str:
    """The better of the two shown candidates by :func:`quality` (a coin when equal)."""
    scores = [quality(c.get("text", "")) for c in sorted(candidates, key=lambda c: c.get("position", 0))]
    if len(scores) != 2 or scores[0] == scores[1]:
        return rng.choice(("a", "b"))
    return "a" if scores[0] > scores[1] else "b"


def _server_error(what: str) -> bool:
    """A 5xx or a connection error: what an annotator sees as the server failing."""
    kind = what.split(": ", 1)[0]
    return kind.endswith(" connection") or any(kind.endswith(f" {code}") for code in range(500, 600))


def _describe(request: str, status: int, body: Any) -> str:
    if status < 0:
        return f"{request} connection: {body}"
    detail = body.get("detail", "") if isinstance(body, dict) else str(body)
    return f"{request} {status}: {str(detail)[:160]}"


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


# What a kept-alive connection the server closed while it sat idle raises on
# its next request (gunicorn closes them after its --keep-alive, 2 s), and how
# long one must have been idle for that to be the reason.
STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
STALE_AFTER_SECONDS = 1.0


def send(
    opener: Any,
    conn: http.client.HTTPConnection | None,
    method: str,
    path: str,
    body: Any,
    headers: dict,
    *,
    idle: float = 0.0,
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, bytes]:
    """One request on ``conn`` (a new one from ``opener()`` when None). A
    request on a connection idle for ``idle`` ≥ ``STALE_AFTER_SECONDS`` that
    finds it closed by the server is sent again once on a new connection, as
    browsers and HTTP libraries do: the server closing an idle connection is
    not a failure (a connection closed while busy still is)."""
    for attempt in (0, 1):
        reused = conn is not None and idle >= STALE_AFTER_SECONDS
        if conn is None:
            conn = opener()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return conn, response, response.read()
        except STALE_CONNECTION:
            conn.close()
            conn = None
            if not reused or attempt:
                raise
    raise AssertionError("unreachable")


class _Client:
    """One annotator's kept-alive connection; reconnects after an error.
    ``request`` returns (status, parsed body), or (-1, the error's name) when
    the connection failed."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        self.conn: http.client.HTTPConnection | None = None
        self.last_used = 0.0

    def request(self, method: str, path: str, payload: dict | None = None) -> tuple[int, Any]:
        headers = dict(self.headers)
        body = None
        if payload is not None:
            body = json.dumps(payload)
            headers["Content-Type"] = "application/json"
        try:
            self.conn, response, raw = send(
                lambda: http.client.HTTPConnection(self.host, self.port, timeout=120),
                self.conn,
                method,
                path,
                body,
                headers,
                idle=time.monotonic() - self.last_used,
            )
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return -1, type(exc).__name__
        finally:
            self.last_used = time.monotonic()
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"detail": raw[:160].decode("utf-8", "replace")}
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return response.status, parsed

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class LoadSampler:
    """The machine's 1-minute load average every 5 s while it runs: other work
    on the machine (the benchmark shares its cores) shows here."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(5.0):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 2) if self.samples else None


# --- checks in the database ----------------------------------------------------------


def verify(*, study_id: int, crowd: Crowd) -> dict[str, Any]:
    """What the database holds against what the clients were told."""
    from django.db.models import Count, F, Q  # noqa: PLC0415

    from annotation.models import Assignment, Comparison, Judgment, RewardModelVersion, Study  # noqa: PLC0415

    judgments = Judgment.objects.filter(study_id=study_id)
    told = {a.judgment_id for a in crowd.answers}
    stored = set(judgments.filter(id__in=told).values_list("id", flat=True))
    per_comparison = Comparison.objects.filter(study_id=study_id).annotate(n=Count("judgments"))
    over_wanted = sum(
        row["n"] - row["judgments_wanted"]
        for row in per_comparison.filter(n__gt=F("judgments_wanted")).values("n", "judgments_wanted")
    )
    twice = sum(
        row["n"] - 1
        for row in judgments.values("comparison_id", "annotator_id").annotate(n=Count("id")).filter(n__gt=1)
    )
    # One answer reported created twice to the clients (two 201s for one judgment).
    created = Counter(a.judgment_id for a in crowd.answers if a.status == 201)
    reported_twice = sum(n - 1 for n in created.values() if n > 1)
    active = Assignment.objects.filter(study_id=study_id, status=Assignment.Status.ACTIVE)
    orphaned = active.filter(
        Q(comparison__status=Comparison.Status.DONE) | Q(comparison__judgments__annotator_id=F("annotator_id"))
    ).distinct()
    leased_without = (
        Comparison.objects.filter(study_id=study_id, status=Comparison.Status.LEASED)
        .exclude(assignments__status=Assignment.Status.ACTIVE)
        .count()
    )
    answered = Comparison.objects.filter(study_id=study_id, id__in=judgments.values("comparison_id"))
    by_strategy = {row["strategy"]: row["n"] for row in answered.values("strategy").annotate(n=Count("id"))}
    # Chosen by the study's strategy: a random pair that filled a model's batch
    # carries that model's version too, so the version alone would count it.
    strategy = Study.objects.values_list("strategy", flat=True).get(id=study_id)
    by_model = by_strategy.get(strategy, 0)
    total = answered.count()
    versions = RewardModelVersion.objects.filter(study_id=study_id)
    return {
        "judgments_stored": judgments.count(),
        "lost": len(told - stored),
        "duplicated": over_wanted + twice + reported_twice,
        "duplicated_detail": {
            "judgments_beyond_wanted": over_wanted,
            "same_annotator_twice": twice,
            "answer_reported_created_twice": reported_twice,
        },
        "leases_held_at_end": active.count(),
        "leases_orphaned": orphaned.count() + leased_without,
        "answered_comparisons": total,
        "answered_chosen_by_the_strategy": by_model,
        "model_chosen_share": round(by_model / total, 3) if total else None,
        "answered_by_strategy": by_strategy,
        "model_versions_published": versions.count(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="reliability section: load")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="one variant, in this process")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants to run")
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.variant:
        figures = run_variant(args.variant, short=args.short)
    else:
        chosen = tuple(v.strip() for v in args.variants.split(",") if v.strip())
        figures = run(short=args.short, variants=chosen)
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
