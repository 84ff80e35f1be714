"""The web side of the large-import benchmark (``benchmarks.import_large``).

Imported once Django is set up for the benchmark's database (the parent runs
``django.setup()`` first). Stores the file and creates its ``ImportJob`` as the
upload service does for a large file, starts the worker's task in a process of
its own, polls the htmx progress partial every 0.2 s meanwhile, and prints the
figures as one JSON line.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.core.files import File
from django.test import Client
from django.test.utils import setup_test_environment
from django.urls import reverse

from annotation.imports.jobs import import_job_create, import_upload_store
from annotation.models import Candidate, ImportJob
from annotation.services import study_create
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[1]
# The worker's side: run the task body in its own process and report its peak memory.
WORKER_CODE = """
import json, resource, sys, time
import django
django.setup()
from annotation.tasks import import_job_run

started = time.perf_counter()
status = import_job_run.apply(args=[int(sys.argv[1])]).get()
print(json.dumps({"status": status, "seconds": time.perf_counter() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv: list[str]) -> None:
    """``argv``: the JSONL file and the number of candidates it should create."""
    data, expected = Path(argv[0]), int(argv[1])
    print(json.dumps(_run(data, expected=expected)))


def _run(data: Path, *, expected: int) -> dict[str, Any]:
    setup_test_environment()  # lets the test client talk to this process's Django
    user = UserFactory(username="bench-researcher")
    study = study_create(name="Large import", created_by=user)
    with data.open("rb") as handle:
        stored = import_upload_store(upload=File(handle, name=data.name))
    job = import_job_create(study=study, stored=stored, format="jsonl", options={}, created_by=user)
    client = Client()
    client.force_login(user)
    progress_url = reverse("import_job_progress", args=[study.slug, job.pk])

    seen: list[dict[str, Any]] = []
    poll_ms: list[float] = []
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_CODE, str(job.pk)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    while True:
        t0 = time.perf_counter()
        response = client.get(progress_url, HTTP_HX_REQUEST="true")
        poll_ms.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
        job.refresh_from_db()
        state = {"status": job.status, "stage": job.stage, "processed": job.processed, "percent": job.percent}
        if not seen or {k: v for k, v in seen[-1].items() if k != "t"} != state:
            seen.append({"t": round(time.perf_counter() - started, 2), **state})
        if job.finished or worker.poll() is not None:
            break
        time.sleep(0.2)
    out, _ = worker.communicate()
    elapsed = time.perf_counter() - started
    worker_report = json.loads(out.strip().splitlines()[-1])
    job.refresh_from_db()
    created = Candidate.objects.filter(study=study).count()
    if job.status != ImportJob.Status.DONE or created != expected:
        raise SystemExit(f"import did not finish as expected: {job.status} {job.error!r}, {created} candidates")
    stages = {s["stage"] for s in seen if s["status"] == "running"}
    return {
        "seconds": round(elapsed, 2),
        "worker_seconds": round(worker_report["seconds"], 2),
        "candidates_per_second": round(created / elapsed),
        "candidates_created": created,
        "prompts_created": job.result["prompts_created"],
        "peak_rss_mb_worker": round(worker_report["peak_rss_mb"], 1),
        "progress_updates_observed": len([s for s in seen if s["status"] == "running"]),
        "stages_observed": sorted(stages),
        "progress_poll_ms": {
            "n": len(poll_ms),
            "p50": round(statistics.median(poll_ms), 1),
            "max": round(max(poll_ms), 1),
        },
        "progress_seen": seen,
    }
