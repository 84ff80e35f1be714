"""Cluster: prefloop spread over several hosts, one of them lost under load.

The hosts are processes on 127.0.0.1 that share nothing on disk: each has a
``PREFLOOP_VAR_DIR`` and ``MEDIA_ROOT`` of its own. They share what
docs/DEPLOY.md says several hosts share: PostgreSQL, the broker (Redis db 12)
and an S3 object store (moto's server mode, a process of its own, speaking
HTTP) for checkpoints and uploaded imports (``PREFLOOP_STORAGE=s3``).

- ``web-a`` and ``web-b``: gunicorn (2 workers × 2 threads each) with
  psycopg's connection pool (``PREFLOOP_DB_POOL``);
- ``train-a`` and ``train-b``: Celery workers on queues ``train`` and
  ``select`` (the GPU hosts of a real deployment);
- ``cpu-c``: a Celery worker on ``default`` and ``embed``, and beat.

Annotators answer through the API, half of them on each web host, as a load
balancer would spread them. Once the loop has published a first model, the
train host running one of its fits is SIGKILLed (its whole process group, and
it is not restarted: the host is gone); the other must take the study's fits
over when the dead worker's claim expires. Meanwhile a researcher uploads an
import through ``web-b`` (a background job, which ``cpu-c`` runs from the
object store) and downloads the live model's checkpoint through ``web-a``
(published by a train worker, fetched by ``web-a`` from the object store).

Figures: answers, lost and duplicated (checked in the database), server
errors, cycle times, the kill's takeover (the survivor running the study's
fit under a claim of its own, once the dead host's expires: the claim lease
plus at most one sweep period) and recovery (that fit finished, within 60 s),
the import's and the download's outcome, and what each host wrote under its own folders (no checkpoint, no
upload: they live in the object store).

    python -m benchmarks.reliability --sections cluster
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any

from benchmarks.reliability.load import Crowd, LoadSampler, embedded, seed_annotators, seed_study, verify
from benchmarks.reliability.stack import Stack, free_port, listening, wait_for

BROKER_URL = "redis://127.0.0.1:6379/12"
BUCKET = "prefloop-cluster"
RECOVERY_LIMIT = 60.0
# (annotators, answers at least, think seconds at most) in the full and the short
# form. The crowd answers until the kill's recovery and the researcher's session are
# over and it has given that many answers; the short form's slower pace keeps that
# within the prompts a short run embeds.
SIZES = {False: (16, 3000, 0.2), True: (4, 240, 1.0)}
# Prompts for this many times the answers: the crowd may answer past the minimum.
PROMPT_SLACK = 4
# Prompts in the researcher's import: over the size imported inside the request
# (annotation.imports.upload.SYNC_IMPORT_MAX_BYTES), so it runs as a background job.
IMPORT_PROMPTS = 400
# The load section's database checks reported here.
VERIFIED = (
    "judgments_stored",
    "lost",
    "duplicated",
    "duplicated_detail",
    "leases_orphaned",
    "model_versions_published",
)
WEB_HOSTS = ("web-a", "web-b")
TRAIN_HOSTS = ("train-a", "train-b")
CPU_HOST = "cpu-c"


def run(*, short: bool) -> dict[str, Any]:
    annotators, answers, think = SIZES[short]
    s3_port = free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    settings = {
        "PREFLOOP_STORAGE": "s3",
        "PREFLOOP_S3_BUCKET": BUCKET,
        "PREFLOOP_S3_ENDPOINT_URL": endpoint,
        "PREFLOOP_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "cluster-benchmark",
        "AWS_SECRET_ACCESS_KEY": "cluster-benchmark-secret",
        # Rate limits and cached analytics shared by every web process, as deployed.
        "CACHE_URL": "redis://127.0.0.1:6379/11",
        # The short form (CI) waits less for a dead worker's claim.
        **({"PREFLOOP_CLAIM_LEASE_SECONDS": "10", "PREFLOOP_SWEEP_SECONDS": "3"} if short else {}),
    }
    load_before, sampler = os.getloadavg(), LoadSampler()
    with Stack("cluster" + ("_short" if short else ""), broker=BROKER_URL, settings=settings) as stack:
        stack.spawn(["moto.server", "-H", "127.0.0.1", "-p", str(s3_port)], "s3")
        if not wait_for(lambda: listening(s3_port), 60, "the S3 server"):
            raise SystemExit(f"moto's server did not start; see {stack.work}/s3.log")
        s3 = _s3_client(endpoint)
        s3.create_bucket(Bucket=BUCKET)

        from django.conf import settings as django_settings  # noqa: PLC0415

        study = seed_study(name="Cluster", answers=PROMPT_SLACK * answers, clients=annotators)
        tokens = seed_annotators(study_id=study.id, count=annotators, prefix="cluster")
        researcher_token = _researcher(study.id)
        hosts = {name: _host_env(stack.work, name) for name in (*WEB_HOSTS, *TRAIN_HOSTS, CPU_HOST)}
        pool = {"PREFLOOP_DB_POOL": "true"}
        urls = [stack.web(workers=2, threads=2, env={**hosts[name], **pool}) for name in WEB_HOSTS]
        train = {
            name: stack.worker(name, queues=("train", "select"), concurrency=1, restart=False, env=hosts[name])
            for name in TRAIN_HOSTS
        }
        stack.worker(CPU_HOST, queues=("default", "embed"), concurrency=2, env=hosts[CPU_HOST])
        stack.beat(env=hosts[CPU_HOST])
        if not wait_for(lambda: embedded(study.id), 900, "embeddings", poll=1.0):
            raise SystemExit(f"the embedding did not finish; see {stack.work}/{CPU_HOST}.log")

        half = len(tokens) // 2
        crowds = [
            Crowd(url=url, slug=study.slug, tokens=part, target=10**9, seed=151 + k, think=think)
            for k, (url, part) in enumerate(((urls[0], tokens[:half]), (urls[1], tokens[half:])))
        ]
        threads = [crowd.start() for crowd in crowds]
        try:
            if not wait_for(lambda: _live_version(study.id) > 0, 600, "a first model", poll=0.5):
                raise SystemExit(f"no model was published; see {stack.work}/train-*.log")
            kill = _kill_mid_fit(stack, train, study.id)
            researcher = _researcher_session(urls, study.slug, researcher_token)
            wait_for(lambda: sum(crowd.given() for crowd in crowds) >= answers, 3600, "the answers", poll=0.5)
        finally:
            for crowd in crowds:
                crowd.stop.set()
            for thread in threads:
                thread.join(timeout=180)
        time.sleep(1.0)  # on-commit work of the last answers
        both = _merged(crowds)
        summary = both.summary()
        checks = verify(study_id=study.id, crowd=both)
        versions = checks["model_versions_published"]
        checks = {key: checks[key] for key in VERIFIED}
        written = {name: _written(Path(env["PREFLOOP_VAR_DIR"]).parent) for name, env in hosts.items()}
        objects = _object_counts(s3)
        lease = django_settings.PREFLOOP_CLAIM_LEASE_SECONDS
        sweep = django_settings.PREFLOOP_SWEEP_SECONDS
    sampler.stop()
    return {
        "hosts": {
            "web": f"{len(WEB_HOSTS)} × gunicorn (2 workers × 2 threads, psycopg pool)",
            "workers": f"{len(TRAIN_HOSTS)} on train+select (one killed), 1 on default+embed, beat",
            "shared": "PostgreSQL, Redis (broker), S3 object store (moto server); no shared folder",
        },
        "annotators": annotators,
        "target_answers": answers,
        "think_seconds": [0, think],
        "answers": summary["answers"],
        "answers_per_web_host": [len(crowd.answers) for crowd in crowds],
        **checks,
        "model_versions_published": versions,
        "server_errors": summary["server_errors"],
        "errors_by_kind": summary["errors_by_kind"],
        "p50_cycle_ms": summary["p50_cycle_ms"],
        "p95_cycle_ms": summary["p95_cycle_ms"],
        "worker_killed": kill,
        "recovered": bool(kill["recovery_seconds"] is not None and kill["recovery_seconds"] <= RECOVERY_LIMIT),
        "recovery_limit_seconds": RECOVERY_LIMIT,
        "researcher": researcher,
        "object_store": objects,
        "files_written_per_host": written,
        "claim_lease_seconds": lease,
        "sweep_seconds": sweep,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_1min_mean_during": sampler.mean(),
    }


# --- hosts --------------------------------------------------------------------------


def _host_env(work: Path, name: str) -> dict[str, str]:
    """A host's own folders (nothing shared on disk)."""
    root = work / "hosts" / name
    (root / "var").mkdir(parents=True, exist_ok=True)
    (root / "media").mkdir(parents=True, exist_ok=True)
    return {"PREFLOOP_VAR_DIR": str(root / "var"), "MEDIA_ROOT": str(root / "media")}


def _kill_mid_fit(stack: Stack, train: dict[str, Any], study_id: int) -> dict[str, Any]:
    """SIGKILL the train host that runs one of the study's fits (or, if none is
    seen running one within two minutes, the first), not to be restarted, and
    time the loop's recovery: a fit that finishes after the kill, which only
    the other train host can run."""
    from django.utils import timezone  # noqa: PLC0415

    from annotation.models import Study  # noqa: PLC0415
    from webapp.celery import app  # noqa: PLC0415

    nodes = {f"{name}@{socket.gethostname()}": name for name in train}
    fitting: list[str] = []

    def running_a_fit() -> bool:
        active = app.control.inspect(destination=list(nodes), timeout=1.0).active() or {}
        fitting[:] = [
            nodes[node]
            for node, tasks in active.items()
            if node in nodes and any(task.get("name") == "activelearn.tasks.retrain_study" for task in tasks)
        ]
        return bool(fitting)

    mid_fit = wait_for(running_a_fit, 120, "a train host to run a fit", poll=0.2)
    victim = fitting[0] if fitting else next(iter(train))
    version_before = _live_version(study_id)
    study = Study.objects.filter(id=study_id)
    owner_at_kill = study.values_list("retrain_owner", flat=True).get()
    stack.kill(train[victim])
    killed_at, killed_wall = time.monotonic(), timezone.now()
    taken_over: list[float] = []

    observed: list[bool] = []

    def fitted_again() -> bool:
        # The survivor, the only train host left, runs the study's fit under a
        # claim of its own once the dead one's expires; then a fit finishes.
        owner, fitted_at = study.values_list("retrain_owner", "last_fit_at").get()
        if not taken_over and owner.startswith("r-") and owner != owner_at_kill:
            taken_over.append(time.monotonic() - killed_at)
            observed.append(True)
        fitted = fitted_at is not None and fitted_at > killed_wall
        if fitted and not taken_over:
            # The survivor's claim came and went between two polls (a fit shorter
            # than the poll): it took over no later than now.
            taken_over.append(time.monotonic() - killed_at)
            observed.append(False)
        return fitted

    ok = wait_for(fitted_again, 2 * RECOVERY_LIMIT, "a fit after the kill", poll=0.1)
    recovery = round(time.monotonic() - killed_at, 1) if ok else None
    return {
        "host": victim,
        "while_it_ran_a_fit": mid_fit,
        "version_live_at_kill": version_before,
        "takeover_seconds": round(taken_over[0], 1) if taken_over else None,
        # False: the claim was not seen held, only the fit it made (takeover_seconds is then an upper bound).
        "takeover_observed": observed[0] if observed else None,
        "recovery_seconds": recovery,
        "fit_status_after": study.values_list("last_fit_status", flat=True).get(),
        "survivor": next(name for name in train if name != victim),
    }


def _written(root: Path) -> dict[str, int]:
    """Files a host left under its own folders: checkpoints and uploads (both
    must be none: they live in the object store) and its checkpoint cache."""

    def count(folder: Path) -> int:
        return sum(1 for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0

    return {
        "checkpoints": count(root / "media" / "checkpoints"),
        "uploads": count(root / "media" / "imports"),
        "checkpoint_cache": count(root / "var" / "checkpoint-cache"),
    }


# --- the researcher -----------------------------------------------------------------


def _researcher(study_id: int) -> str:
    from django.contrib.auth import get_user_model  # noqa: PLC0415
    from rest_framework.authtoken.models import Token  # noqa: PLC0415

    from annotation.models import Membership  # noqa: PLC0415

    user = get_user_model().objects.create_user("cluster-researcher", password=uuid.uuid4().hex)
    Membership.objects.create(user=user, study_id=study_id, role="researcher")
    return Token.objects.create(user=user).key


def _researcher_session(urls: list[str], slug: str, token: str) -> dict[str, Any]:
    """An import uploaded through web-b (a background job on cpu-c, from the
    object store), followed on web-a; the live checkpoint downloaded through web-a."""
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    body, boundary = _multipart("prompts.jsonl", _import_file())
    request = urllib.request.Request(
        f"{urls[1]}/api/v1/studies/{slug}/imports/",
        data=body,
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    status, job = _call(request)
    outcome: dict[str, Any] = {"import_upload_status": status, "import_bytes": len(body)}
    if status == 202:
        detail = f"{urls[0]}/api/v1/studies/{slug}/imports/{job['id']}/"
        final: dict[str, Any] = {}

        def finished() -> bool:
            nonlocal final
            _, final = _call(urllib.request.Request(detail, headers=headers))
            return final.get("status") in ("done", "failed")

        wait_for(finished, 600, "the import job", poll=1.0)
        outcome.update(
            import_status=final.get("status"),
            import_error=final.get("error") or None,
            prompts_imported=(final.get("result") or {}).get("prompts_created"),
        )
    live = _live_version_row(slug)
    if live:
        url = f"{urls[0]}/api/v1/studies/{slug}/model-versions/{live}/checkpoint/"
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as response:
            data = response.read()
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        outcome.update(
            checkpoint_version=live, checkpoint_status=response.status, checkpoint_bytes=len(data), files=names
        )
    return outcome


def _import_file() -> bytes:
    lines = []
    for k in range(IMPORT_PROMPTS):
        filler = " ".join(f"detail-{k}-{j}" for j in range(60))
        record = {
            "id": f"imported-{k}",
            "prompt": f"Imported question {k}: how should one plan a trip? {filler}",
            "candidates": [f"Plan A for trip {k}: {filler}", f"Plan B for trip {k}: {filler}"],
        }
        lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode()


def _multipart(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), boundary


def _call(request: urllib.request.Request) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {"detail": exc.read()[:500].decode("utf-8", "replace")}


# --- checks -------------------------------------------------------------------------


def _merged(crowds: list[Crowd]) -> Crowd:
    """Both web hosts' annotators as one crowd, for the load section's summary and checks."""
    merged = Crowd(url="", slug="", tokens=[], target=0, seed=0)
    for crowd in crowds:
        merged.answers.extend(crowd.answers)
        merged.cycles_ms.extend(crowd.cycles_ms)
        merged.errors.update(crowd.errors)
        merged.seconds = max(merged.seconds, crowd.seconds)
    return merged


def _live_version(study_id: int) -> int:
    from activelearn.services import reward_model_latest  # noqa: PLC0415

    latest = reward_model_latest(study_id=study_id)
    return latest.version if latest else 0


def _live_version_row(slug: str) -> int:
    from annotation.models import Study  # noqa: PLC0415

    return _live_version(Study.objects.get(slug=slug).id)


def _object_counts(client: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            prefix = item["Key"].split("/", 1)[0]
            counts[prefix] = counts.get(prefix, 0) + 1
    return counts


def _s3_client(endpoint: str) -> Any:
    import boto3  # noqa: PLC0415

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="reliability section: cluster")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args(argv)
    figures = run(short=args.short)
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
