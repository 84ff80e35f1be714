"""Faults: the loop recovering without help, and annotators never seeing it.

PostgreSQL (a throwaway database per kind), Celery workers and beat (the
sweep) and, where annotators answer over HTTP, gunicorn, as deployed (DEBUG
off). Each kind runs in a process of its own (Django reads its settings once).

- ``worker_sigkill``: each trial answers a burst of comparisons through the
  annotation services (in this process, no web server), waits until the worker
  is running the retrain they started, SIGKILLs the worker's whole process
  group (main process and pool child) and starts a fresh worker, as a restarted
  host would. No judgment arrives after the kill, so only the claim's expiry
  and the sweep can restart the loop. A trial recovers when a fit finishes
  after the kill (``new_version_published`` counts those that published: a
  fit that does not beat the live model stays unpublished, by the publishing
  rule); throughout, the last good version must stay live with its checkpoint
  readable, and every answer given must be stored exactly once.
- ``broker_restart``: the broker is a redis-server of the section's own on a
  free port (never the machine's shared one), SIGKILLed and started again empty
  a few seconds later while four annotators keep answering through the API.
- ``broker_hang``: the same broker stopped (SIGSTOP) for 20 s and then let go
  on (SIGCONT): its connections stay open and nothing answers, as when a
  broker host freezes or a firewall drops its packets. Sends give up after
  ``PREFLOOP_BROKER_TIMEOUT_SECONDS`` and each process then backs off; the
  annotators must see no error.
- ``db_connection_drop``: every connection to the study's database (web,
  workers, beat, this process) is terminated from an admin connection
  (``pg_terminate_backend``) while four annotators keep answering.

For the last three, a trial recovers when the loop publishes a model version
newer than the one live when the fault ended, within 60 s; every 5xx or
connection error an annotator saw is a ``server_error``, and every answer
acknowledged with a 2xx must be stored exactly once (``lost``, ``duplicated``).

The short form (``--short``, which CI runs: tests/benchmarks/test_reliability_faults.py)
strikes once per kind, on a shorter claim lease and sweep (:data:`SHORT_SETTINGS`).

    python -m benchmarks.reliability --sections faults
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.postgres import libpq_url
from benchmarks.reliability.load import Crowd, LoadSampler, embedded, quality, seed_annotators, seed_study, verify
from benchmarks.reliability.stack import Stack, free_port, run_module_json, wait_for

BURST = 15  # answers per trial: enough for a fit to be due (PREFLOOP_RETRAIN_MIN_NEW = 5)


KINDS = ("worker_sigkill", "broker_restart", "broker_hang", "db_connection_drop")
RECOVERY_LIMIT = 60.0  # seconds: a trial whose loop takes longer has not recovered
CROWD = 4  # annotators answering through the API during the HTTP trials
# The short form (CI's) runs every kind on a 6 s claim lease and a 2 s sweep instead
# of the deployed 30 s and 15 s: a claim a fault orphaned then expires within seconds,
# so recovery lands well inside RECOVERY_LIMIT on a busy two-core runner and the check
# says whether the loop recovered, not how fast the runner is. Expiry and sweep still
# do the recovering; the full run measures them at the deployed settings.
SHORT_SETTINGS = {"PREFLOOP_CLAIM_LEASE_SECONDS": "6", "PREFLOOP_SWEEP_SECONDS": "2"}


def run(*, short: bool, kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    """Each kind in a process of its own; their figures by kind."""
    out: dict[str, Any] = {}
    for kind in kinds:
        out.update(run_module_json("benchmarks.reliability.faults", ["--kind", kind], short=short))
    return out


def run_kind(kind: str, *, short: bool) -> dict[str, Any]:
    """One kind against a fresh stack, in this process, with a broker of its own
    (a redis-server on a free port), so no kind touches a Redis others use."""
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}")
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="prefloop-faults-redis-")))
    redis.start()
    before, sampler = os.getloadavg(), LoadSampler()
    try:
        if kind == "worker_sigkill":
            figures = _worker_sigkill(short=short, broker=redis.url)
        elif kind == "broker_restart":
            figures = _broker_restart(short=short, redis=redis)
        elif kind == "broker_hang":
            figures = _broker_hang(short=short, redis=redis)
        else:
            figures = _db_connection_drop(short=short, broker=redis.url)
    finally:
        sampler.stop()
        redis.kill()
    # Recovery times include fits, which wait for CPU: how busy the machine was.
    figures[kind].update(
        cpus=os.cpu_count(),
        load_average_before=[round(x, 2) for x in before],
        load_average_after=[round(x, 2) for x in os.getloadavg()],
        load_average_1min_mean_during=sampler.mean(),
    )
    return figures


def _stack(name: str, *, short: bool, broker: str) -> Stack:
    """The kind's stack: the short form's with :data:`SHORT_SETTINGS` and a
    database of its own name, so CI's run never drops a full run's."""
    if short:
        return Stack(f"{name}_short", broker=broker, settings=SHORT_SETTINGS)
    return Stack(name, broker=broker)


def _worker_sigkill(*, short: bool, broker: str) -> dict[str, Any]:
    trials = 1 if short else 5
    with _stack("faults", short=short, broker=broker) as stack:
        from django.conf import settings as django_settings  # noqa: PLC0415

        study_id, user_id = _seed()
        stack.beat()
        worker = stack.worker("w0")
        if not wait_for(lambda: embedded(study_id), 300, "embeddings"):
            raise SystemExit(f"the worker did not embed the study's candidates in time; see {stack.work}/w0.log")
        errors: list[str] = []
        runs = []
        for trial in range(trials):
            figures, worker = _trial(stack, study_id, user_id, worker, trial, errors)
            runs.append(figures)
            print(json.dumps(figures), flush=True)
        lease = django_settings.PREFLOOP_CLAIM_LEASE_SECONDS
        sweep = django_settings.PREFLOOP_SWEEP_SECONDS
    recoveries = [t["recovery_seconds"] for t in runs if t["recovered"]]
    return {
        "worker_sigkill": {
            "trials": len(runs),
            "recovered": len(recoveries),
            "recovered_within_limit": sum(1 for r in recoveries if r <= RECOVERY_LIMIT),
            "new_version_published": sum(1 for t in runs if t.get("published")),
            "recovery_limit_seconds": RECOVERY_LIMIT,
            "max_recovery_seconds": max(recoveries) if recoveries else None,
            "median_recovery_seconds": sorted(recoveries)[len(recoveries) // 2] if recoveries else None,
            "lost": sum(t["lost"] for t in runs),
            "duplicated": sum(t["duplicated"] for t in runs),
            "annotator_errors": len(errors),
            "annotator_error_messages": errors[:5],
            "last_good_model_served_throughout": all(t["last_good_model_served_throughout"] for t in runs),
            "claim_lease_seconds": lease,
            "sweep_seconds": sweep,
            "answers": "through the annotation services in the benchmark process (no web server)",
            "runs": runs,
        }
    }


def _seed() -> tuple[int, int]:
    """The load section's pairwise study (its texts carry the quality ranking the
    annotator follows), small, and one annotator."""
    from django.contrib.auth import get_user_model  # noqa: PLC0415

    from annotation.models import Membership  # noqa: PLC0415

    study = seed_study(name="Reliability", answers=400, clients=1, overlap=1, budget=100_000)
    user = get_user_model().objects.create_user("reliability-annotator", password="unused-in-this-benchmark")
    Membership.objects.create(user=user, study=study, role="annotator")
    return study.id, user.id


def _readable(reference: str) -> bool:
    from annotation import checkpoints  # noqa: PLC0415

    try:
        return checkpoints.local_folder(reference).is_dir()
    except checkpoints.CheckpointMissing:
        return False


def _trial(stack: Stack, study_id: int, user_id: int, worker: Any, trial: int, errors: list[str]) -> tuple[dict, Any]:
    from django.utils import timezone  # noqa: PLC0415

    from activelearn.services import reward_model_latest  # noqa: PLC0415
    from annotation.models import Judgment, Study  # noqa: PLC0415

    answered = _answer(study_id, user_id, BURST, errors)
    running = Study.objects.filter(id=study_id, retrain_owner__startswith="r-")
    if not wait_for(running.exists, 120, "a retrain to run"):
        raise SystemExit(f"no retrain started after {len(answered)} answers; see {stack.work}/w{trial}.log")
    live = reward_model_latest(study_id=study_id)
    before = live.version if live else 0
    stack.kill(worker)
    killed_at = time.monotonic()
    claim_left = running.exists()
    worker = stack.worker(f"w{trial + 1}")
    served: list[bool] = []

    killed_wall = timezone.now()
    fitted = Study.objects.filter(id=study_id, last_fit_at__gt=killed_wall).exclude(last_fit_status="failed")

    def recovered() -> bool:
        latest = reward_model_latest(study_id=study_id)
        served.append(before == 0 or (latest is not None and _readable(latest.checkpoint_path)))
        # The loop resumed: a fit finished after the kill. Whether it published
        # is the publishing rule's call (a fit that does not beat the live model
        # stays unpublished), counted apart.
        return (latest is not None and latest.version > before) or fitted.exists()

    ok = wait_for(recovered, 120, "a fit after the kill")
    latest = reward_model_latest(study_id=study_id)
    judgments = Judgment.objects.filter(study_id=study_id)
    pairs = judgments.values("comparison_id", "annotator_id").distinct().count()
    return {
        "trial": trial,
        "claim_left_by_the_kill": claim_left,
        "recovered": ok,
        "recovery_seconds": round(time.monotonic() - killed_at, 1) if ok else None,
        "published": bool(latest is not None and latest.version > before),
        "last_fit_status": Study.objects.values_list("last_fit_status", flat=True).get(id=study_id),
        "version_before": before,
        "last_good_model_served_throughout": all(served),
        "answers": len(answered),
        "lost": len(answered) - judgments.filter(id__in=answered).count(),
        "duplicated": judgments.count() - pairs,
    }, worker


def _answer(study_id: int, user_id: int, n: int, errors: list[str]) -> list[int]:
    """Lease and answer ``n`` comparisons as the annotator; the judgments' ids.
    The better candidate by :func:`~benchmarks.reliability.load.quality` wins (a
    preference a fit can learn: answers blind to the texts gave fits that did not
    improve, so no version followed a kill). An exception is what an annotator
    would have seen as an error: counted."""
    from django.contrib.auth import get_user_model  # noqa: PLC0415

    from annotation.models import Candidate, Study  # noqa: PLC0415
    from annotation.services import assignment_lease_or_refill, judgment_submit  # noqa: PLC0415

    user = get_user_model().objects.get(id=user_id)
    made = []
    for _ in range(n):
        study = Study.objects.get(id=study_id)
        try:
            lease = assignment_lease_or_refill(study=study, annotator=user)
            if lease is None:
                break
            shown = list(lease.assignment.display_order)
            texts = dict(Candidate.objects.filter(id__in=shown).values_list("id", "text"))
            choice = "a" if quality(texts[shown[0]]) >= quality(texts[shown[1]]) else "b"
            result = judgment_submit(
                study=study, annotator=user, comparison_id=lease.assignment.comparison_id, choice=choice
            )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        made.append(result.judgment.id)
    return made


# --- faults while annotators answer over HTTP ---------------------------------------


class RedisServer:
    """A redis-server of the section's own on a free port, in its own process
    group, without persistence: a restart comes back empty, as a crashed broker
    without a disk would."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.work = work
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.work / f"redis-{self.port}.log", "a")  # noqa: SIM115 - the process owns it until it ends
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.work)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        if not wait_for(self._pong, 30, f"redis-server on port {self.port}"):
            raise SystemExit(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def _broker_restart(*, short: bool, redis: RedisServer) -> dict[str, Any]:
    trials = 1 if short else 3
    outage = 5.0

    def fault() -> dict[str, Any]:
        redis.kill()
        time.sleep(outage)
        redis.start()
        return {"outage_seconds": outage}

    with _stack("faults_broker", short=short, broker=redis.url) as stack:
        figures = _http_trials(stack, "broker_restart", trials, fault)
    figures["fault"] = (
        f"the broker (a redis-server of its own on a free port, no persistence) SIGKILLed and started again "
        f"empty {outage:.0f} s later"
    )
    return {"broker_restart": figures}


def _broker_hang(*, short: bool, redis: RedisServer) -> dict[str, Any]:
    trials = 1 if short else 3
    frozen = 20.0

    def fault() -> dict[str, Any]:
        assert redis.process is not None
        os.kill(redis.process.pid, signal.SIGSTOP)
        time.sleep(frozen)
        os.kill(redis.process.pid, signal.SIGCONT)
        return {"frozen_seconds": frozen}

    with _stack("faults_hang", short=short, broker=redis.url) as stack:
        figures = _http_trials(stack, "broker_hang", trials, fault)
    figures["fault"] = (
        f"the broker (a redis-server of its own) stopped with SIGSTOP for {frozen:.0f} s, its connections left "
        "open, then continued with SIGCONT"
    )
    return {"broker_hang": figures}


def _db_connection_drop(*, short: bool, broker: str) -> dict[str, Any]:
    trials = 1 if short else 3
    with _stack("faults_dbdrop", short=short, broker=broker) as stack:

        def fault() -> dict[str, Any]:
            return {"connections_terminated": terminate_connections(stack.admin_database_url, stack.db_name)}

        figures = _http_trials(stack, "db_connection_drop", trials, fault)
    figures["fault"] = (
        "every connection to the study's database terminated at once (pg_terminate_backend from an admin "
        "connection): web, workers, beat and the benchmark's own"
    )
    return {"db_connection_drop": figures}


def terminate_connections(admin_url: str, db_name: str) -> int:
    """Terminate every backend connected to ``db_name``; how many."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (db_name,),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def _http_trials(stack: Stack, kind: str, trials: int, fault: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Annotators answer through gunicorn while ``fault`` strikes ``trials``
    times; each trial times the loop's recovery after it."""
    from django.conf import settings  # noqa: PLC0415 - the stack has set up Django

    study = seed_study(name=f"Faults {kind}", answers=1500, clients=CROWD, budget=100_000)
    tokens = seed_annotators(study_id=study.id, count=CROWD, prefix=f"faults-{kind}")
    stack.worker("main", queues=("train", "select", "default"), concurrency=2)
    stack.worker("embed", queues=("embed",))
    stack.beat()
    url = stack.web(workers=2, threads=4)
    if not wait_for(lambda: embedded(study.id), 600, "embeddings", poll=1.0):
        raise SystemExit(f"the worker did not embed the study's candidates in time; see {stack.work}/embed.log")
    crowd = Crowd(url=url, slug=study.slug, tokens=tokens, target=10**9, seed=150, deadline=3600.0)
    thread = crowd.start()
    served: list[bool] = []

    def newer_than(version: int) -> Callable[[], bool]:
        def check() -> bool:
            latest = _latest(study.id)
            served.append(version == 0 or (latest is not None and Path(latest[1]).is_dir()))
            return latest is not None and latest[0] > version

        return check

    runs = []
    try:
        if not wait_for(newer_than(0), 300, "a first model version", poll=0.5):
            raise SystemExit(f"no model was published before the faults; see {stack.work}/main.log")
        for trial in range(trials):
            time.sleep(10.0)  # the loop running normally between faults
            errors_before, given_before = sum(crowd.errors.values()), crowd.given()
            struck = time.monotonic()
            detail = fault()
            over = time.monotonic()
            live = _latest(study.id)
            version = live[0] if live else 0
            ok = wait_for(newer_than(version), 2 * RECOVERY_LIMIT, "a newer model version", poll=0.25)
            recovery = time.monotonic() - over
            window_errors = [what for at, what in crowd.error_times if at >= struck - crowd.started_at]
            figures = {
                "trial": trial,
                **detail,
                "fault_seconds": round(over - struck, 1),
                "recovered": ok and recovery <= RECOVERY_LIMIT,
                "recovery_seconds": round(recovery, 1) if ok else None,
                "version_at_fault_end": version,
                "answers_during_trial": crowd.given() - given_before,
                "errors_during_trial": sum(crowd.errors.values()) - errors_before,
                "error_kinds_during_trial": sorted(set(window_errors)),
            }
            runs.append(figures)
            print(json.dumps(figures), flush=True)
    finally:
        crowd.stop.set()
        thread.join(timeout=180)
    time.sleep(1.0)
    _reconnect()
    checks = verify(study_id=study.id, crowd=crowd)
    summary = crowd.summary()
    recoveries = [t["recovery_seconds"] for t in runs if t["recovery_seconds"] is not None]
    return {
        "trials": len(runs),
        "recovered": sum(1 for t in runs if t["recovered"]),
        "max_recovery_seconds": max(recoveries) if len(recoveries) == len(runs) and runs else None,
        "recovery_limit_seconds": RECOVERY_LIMIT,
        "lost": checks["lost"],
        "duplicated": checks["duplicated"],
        "server_errors": summary["server_errors"],
        "errors_by_kind": summary["errors_by_kind"],
        "answers": summary["answers"],
        "p50_cycle_ms": summary["p50_cycle_ms"],
        "p95_cycle_ms": summary["p95_cycle_ms"],
        "max_cycle_ms": summary["max_cycle_ms"],
        "leases_orphaned": checks["leases_orphaned"],
        "model_versions_published": checks["model_versions_published"],
        "last_good_model_served_throughout": all(served),
        "annotators": CROWD,
        "answers_via": "HTTP API through gunicorn (2 workers × 4 threads)",
        "claim_lease_seconds": settings.PREFLOOP_CLAIM_LEASE_SECONDS,
        "sweep_seconds": settings.PREFLOOP_SWEEP_SECONDS,
        "runs": runs,
    }


def _latest(study_id: int) -> tuple[int, str] | None:
    """The live version's number and checkpoint path, reconnecting once when this
    process's own connection was dropped (the database fault drops it too)."""
    from django.db import DatabaseError  # noqa: PLC0415

    from activelearn.services import reward_model_latest  # noqa: PLC0415

    for attempt in range(2):
        try:
            latest = reward_model_latest(study_id=study_id)
        except DatabaseError:
            if attempt:
                raise
            _reconnect()
            continue
        return (latest.version, latest.checkpoint_path) if latest else None
    return None


def _reconnect() -> None:
    from django.db import connections  # noqa: PLC0415

    for conn in connections.all(initialized_only=True):
        conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="reliability section: faults")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--kind", choices=KINDS, help="one kind, in this process")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds to run")
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.kind:
        figures = run_kind(args.kind, short=args.short)
    else:
        figures = run(short=args.short, kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()))
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
