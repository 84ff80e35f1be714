"""Large-import benchmark: 100,000 candidates through the background job path.

Writes a JSONL file of ``--prompts`` prompts × ``--candidates`` responses (25,000
× 4 by default, responses of 40 to 120 words), stores it as an upload and creates
an ``ImportJob`` the way the import page does, then runs the job's Celery task
(``annotation.tasks.import_job_run``) in a separate process, as a worker would.
Meanwhile this process plays the web process: it polls the htmx progress
partial every 0.2 s through Django's test client and records what it saw and
how long each poll took, which shows that the web side keeps answering.

    python -m benchmarks.import_large      # writes benchmarks/results/import_large.json

Needs the PostgreSQL of the development machine; the database
``prefloop_bench_import`` is created and dropped by the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.postgres import drop_database, recreate_database

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "import_large.json"
WORDS = [
    "model", "answer", "helpful", "honest", "careful", "step", "first", "then", "because", "however", "example",
    "data", "result", "clear", "short", "long", "python", "list", "value", "error", "query", "table", "index",
    "cache", "layer", "token", "prompt", "reward", "human", "preference",
]  # fmt: skip
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=25_000)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--admin-database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="prefloop_bench_import")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    base_url = args.admin_database_url.rsplit("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="prefloop-import-") as tmp:
        env = {
            **os.environ,
            "DATABASE_URL": f"{base_url}/{args.database}",
            "DEBUG": "true",
            "MEDIA_ROOT": str(Path(tmp) / "media"),
            "PREFLOOP_VAR_DIR": str(Path(tmp) / "var"),
        }
        recreate_database(args.admin_database_url, args.database)
        try:
            subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
            os.environ.update(env)
            data = Path(tmp) / "large.jsonl"
            size = _write_file(data, prompts=args.prompts, per_prompt=args.candidates)
            result = _run(data, env=env, expected=args.prompts * args.candidates)
        finally:
            from django.db import connections

            connections.close_all()
            drop_database(args.admin_database_url, args.database)

    result = {
        "config": {
            "prompts": args.prompts,
            "candidates_per_prompt": args.candidates,
            "file_mb": round(size / 1024**2, 1),
            "database": "postgresql",
            "path": "upload stored → ImportJob → Celery task body in a separate process (as a worker)",
            "command": "python -m benchmarks.import_large",
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        **result,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "progress_seen"}, indent=2))
    return result


def _write_file(path: Path, *, prompts: int, per_prompt: int) -> int:
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as out:
        for i in range(prompts):
            record = {
                "id": f"p{i}",
                "prompt": f"Question {i}: " + " ".join(rng.choices(WORDS, k=rng.randint(8, 30))) + "?",
                "candidates": [
                    {"text": f"Answer {j}. " + " ".join(rng.choices(WORDS, k=rng.randint(40, 120))), "source": f"m{j}"}
                    for j in range(per_prompt)
                ],
            }
            out.write(json.dumps(record) + "\n")
    return path.stat().st_size


def _run(data: Path, *, env: dict[str, str], expected: int) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.files import File
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from annotation.importing import import_job_create
    from annotation.models import Candidate, ImportJob
    from annotation.services import study_create
    from tests.factories import UserFactory

    setup_test_environment()  # lets the test client talk to this process's Django
    user = UserFactory(username="bench-researcher")
    study = study_create(name="Large import", created_by=user)
    with data.open("rb") as handle:
        job = import_job_create(
            study=study, upload=File(handle, name=data.name), format="jsonl", options={}, created_by=user
        )
    client = Client()
    client.force_login(user)
    progress_url = reverse("import_job_progress", args=[study.slug, job.pk])

    seen: list[dict[str, Any]] = []
    poll_ms: list[float] = []
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_CODE, str(job.pk)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
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


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    main()
