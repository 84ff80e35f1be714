"""Large-import benchmark: 100,000 candidates through the background job path.

Writes a JSONL file of ``--prompts`` prompts × ``--candidates`` responses (25,000
× 4 by default, responses of 40 to 120 words), then starts the web side
(``benchmarks.import_large_web``) in a process of its own: it stores the file
and creates an ``ImportJob`` as the upload service does for a large file, runs
the job's Celery task (``annotation.tasks.import_job_run``) in a separate
process, as a worker would, and meanwhile polls the htmx progress partial every
0.2 s through Django's test client, recording what it saw and how long each
poll took, which shows that the web side keeps answering. This process only
prepares the database and the file, so it never imports Django's settings.

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
import subprocess
import sys
import tempfile
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
# The web side runs in its own process, once Django is set up for the benchmark's database.
WEB_CODE = (
    "import sys, django; django.setup(); from benchmarks import import_large_web; import_large_web.main(sys.argv[1:])"
)


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
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DATABASE_URL": f"{base_url}/{args.database}",
            "DEBUG": "true",
            "MEDIA_ROOT": str(Path(tmp) / "media"),
            "PREFLOOP_VAR_DIR": str(Path(tmp) / "var"),
        }
        recreate_database(args.admin_database_url, args.database)
        try:
            subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
            data = Path(tmp) / "large.jsonl"
            size = _write_file(data, prompts=args.prompts, per_prompt=args.candidates)
            web = subprocess.run(
                [sys.executable, "-c", WEB_CODE, str(data), str(args.prompts * args.candidates)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
            result = json.loads(web.stdout.strip().splitlines()[-1])
        finally:
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


if __name__ == "__main__":
    main()
