"""Data-browser benchmark: its pages on a study of 100,000 prompts and 1,000,000 judgments.

Creates its own PostgreSQL database, migrates it (with the full-text indexes of
migration 0032) and seeds one pairwise study by SQL: ``--prompts`` prompts of
80–250 characters with 4 responses of 100–400 characters from 4 sources, 4
comparisons per prompt, and ``--judgments`` judgments, 5 people per comparison
on the first comparisons (one comparison in five answered at random, so people
disagree on about 18 % of them; the rest all say A), spread over 30 days. Each
prompt gets a model certainty and the live version a recommendation covering
every prompt, as a published fit leaves them, and the counts and flags the
review scan keeps (people's judgments per prompt, disagreement per comparison).
The database is then vacuumed and analysed, as autovacuum leaves it after a bulk
insert.

Then, in a fresh Django process with a researcher signed in through the test
client, each page is requested ``--runs`` times after one warm-up: the whole
request (URL routing, the access check, every query, template rendering), with
its wall time and query count. The target, named before the run: every page's
median under 500 ms on this machine. The database is dropped at the end.

    python -m benchmarks.data_browser              # writes benchmarks/results/data_browser.json
    python -m benchmarks.data_browser --prompts 10000 --judgments 100000 --runs 3

Needs the PostgreSQL of the development machine (see README).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.export_memory import _copy_texts, _create_study, _insert_comparisons, _text
from benchmarks.postgres import drop_database, libpq_url, recreate_database

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "data_browser.json"
TARGET_MS = 500
PEOPLE_PER_COMPARISON = 5

# The pages measured: (name, path after /s/<slug>/, what it exercises).
PAGES = [
    ("first page", "data/", "no filter, newest first"),
    ("text search", "data/?q=memory+stream", "full-text search over prompts and responses"),
    ("rare word", "data/?q=zebra", "full-text search that finds nothing"),
    ("source", "data/?source=model-2", "prompts with a response from one source"),
    ("annotator", "data/?annotator=bench-annotator-0007", "prompts one person judged"),
    ("date range", "data/?since={week_ago}&until={today}", "prompts judged in the last week"),
    ("people disagree", "data/?agreement=disagree", "prompts with a comparison answered in different ways"),
    ("people agree", "data/?agreement=agree", "judged prompts without disagreement"),
    ("not judged", "data/?agreement=unjudged", "prompts nobody judged"),
    ("model unsure", "data/?below=0.4&sort=uncertain", "the model's P(best) under 0.4, least sure first"),
    ("combined", "data/?q=model&agreement=disagree&source=model-1&sort=uncertain", "search and three filters"),
    ("page 200", "data/?page=200", "deep offset pagination"),
    ("htmx results", "data/?agreement=disagree&page=3", "the results partial htmx swaps in"),
    ("prompt page", "data/prompts/{prompt}/", "a prompt, its scores from the live recommendation, its comparisons"),
]

CHILD = r"""
import json, statistics, sys, time
from datetime import date, timedelta
import django
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.contrib.auth import get_user_model
from annotation.models import Judgment, Membership, Study

pages, runs = json.loads(sys.argv[1]), int(sys.argv[2])
study = Study.objects.get(slug=%(slug)r)
user, _ = get_user_model().objects.get_or_create(username="bench-researcher")
Membership.objects.get_or_create(study=study, user=user, defaults={"role": "researcher"})
client = Client()
client.force_login(user)
prompt = Judgment.objects.filter(study=study).order_by("id").values_list("comparison__prompt_id", flat=True).first()
today = date.today()
values = {"prompt": prompt, "today": today.isoformat(), "week_ago": (today - timedelta(days=7)).isoformat()}
out = []
for name, path, about in pages:
    url = f"/s/{study.slug}/" + path.format(**values)
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "browse-results"} if name == "htmx results" else {}
    headers["secure"] = True  # production settings redirect plain http
    client.get(url, **headers)  # warm: caches, plans
    times, queries = [], 0
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url, **headers)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        queries = len(captured)
    body = response.content.decode()
    found = body.split('id="browse-count">')[1].split("<")[0].strip() if 'id="browse-count">' in body else ""
    out.append({"page": name, "url": url, "what": about, "found": found, "queries": queries,
                "median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)})
    print(json.dumps(out[-1]), flush=True)
print("RESULT " + json.dumps(out))
"""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--admin-database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="prefloop_bench_browser")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    database_url = f"{args.admin_database_url.rsplit('/', 1)[0]}/{args.database}"
    work = Path(tempfile.mkdtemp(prefix="prefloop-browser-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": "benchmark-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "PREFLOOP_VAR_DIR": str(work / "var"),
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "ALLOWED_HOSTS": "testserver",
        "STATIC_ROOT": str(work / "static"),
    }
    recreate_database(args.admin_database_url, args.database)
    try:
        # Production settings serve hashed static files: the pages render with their manifest.
        for command in ("migrate", "collectstatic"):
            subprocess.run([sys.executable, "manage.py", command, "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        started = time.perf_counter()
        seeded = _seed(env, database_url, args.prompts, args.judgments)
        seeded["seed_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps({"seeded": seeded}), flush=True)
        out = subprocess.run(
            [sys.executable, "-c", CHILD % {"slug": "bench-export"}, json.dumps(PAGES), str(args.runs)],
            cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True,  # its errors reach our stderr
        )  # fmt: skip
        pages = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep_database:
            drop_database(args.admin_database_url, args.database)
    for page in pages:
        page["within_target"] = page["median_ms"] < TARGET_MS
    command = "python -m benchmarks.data_browser"
    if (args.prompts, args.judgments, args.runs) != (100_000, 1_000_000, 5):
        command += f" --prompts {args.prompts} --judgments {args.judgments} --runs {args.runs}"
    result = {
        "config": {
            "prompts": args.prompts,
            "judgments": args.judgments,
            "runs": args.runs,
            "database": "postgresql",
            "command": command,
            "measure": "the whole request through Django's test client (routing, access check, queries, "
            "rendering), after one warm-up; median and max of the runs",
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "seeded": seeded,
        "target_median_ms": TARGET_MS,
        "pages": pages,
        "all_within_target": all(p["within_target"] for p in pages),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


def _seed(env: dict[str, str], database_url: str, n_prompts: int, judgments: int) -> dict[str, Any]:
    rng = random.Random(0)
    prompts = [_text(rng, 80, 250) + "?" for _ in range(n_prompts)]
    responses = [_text(rng, 100, 400) for _ in range(n_prompts * 4)]
    study_id = _create_study(env, judgments)
    comparisons = n_prompts * 4
    judged = -(-judgments // PEOPLE_PER_COMPARISON)
    with psycopg.connect(libpq_url(database_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT setseed(0.42)")
        _copy_texts(cur, study_id, prompts, responses)
        _insert_comparisons(cur, study_id, comparisons)
        cur.execute(
            """
            INSERT INTO annotation_judgment (study_id, comparison_id, prompt_id, annotator_id, choice, ranking,
                strength, rationale, aspect_ratings, shown_order, time_on_task_ms, client_info, created_at, evaluation)
            SELECT %(study)s, c.id, c.prompt_id, u.id, x.choice,
                   CASE x.choice WHEN 'a' THEN jsonb_build_array(c.first, c.second)
                                 ELSE jsonb_build_array(c.second, c.first) END,
                   '', '', '{}'::jsonb, jsonb_build_array(c.first, c.second), 4000, '{}'::jsonb,
                   now() - make_interval(secs => x.r * 30 * 86400), false
            FROM (SELECT id, prompt_id, first, second, row_number() OVER (ORDER BY id) AS seq FROM bench_comparisons
                  ORDER BY id LIMIT %(judged)s) c
            CROSS JOIN generate_series(0, %(people)s - 1) AS j
            JOIN bench_users u ON u.k = 1 + ((c.seq * %(people)s + j) %% 100)
            CROSS JOIN LATERAL (
                SELECT CASE WHEN c.seq %% 5 = 0 AND r2 < 0.5 THEN 'b' ELSE 'a' END AS choice, r
                FROM (SELECT random() AS r, random() AS r2, c.id + j AS dep) s
            ) x
            LIMIT %(judgments)s
            """,
            {"study": study_id, "judged": judged, "people": PEOPLE_PER_COMPARISON, "judgments": judgments},
        )
        inserted = cur.rowcount
        cur.execute(
            """
            UPDATE annotation_comparison SET disagreement = true WHERE id IN (
                SELECT comparison_id FROM annotation_judgment WHERE study_id = %(study)s
                GROUP BY comparison_id HAVING count(DISTINCT ranking) > 1)
            """,
            {"study": study_id},
        )
        disagreeing = cur.rowcount
        # What the review scan keeps for every prompt (as migration 0033 counts it).
        cur.execute(
            """
            UPDATE annotation_prompt p SET people_judgments = n.count FROM (
                SELECT c.prompt_id, COUNT(*) AS count FROM annotation_judgment j
                JOIN annotation_comparison c ON c.id = j.comparison_id WHERE j.study_id = %(study)s GROUP BY 1) n
            WHERE p.id = n.prompt_id
            """,
            {"study": study_id},
        )
        cur.execute(
            "UPDATE annotation_prompt SET model_p_best = 0.25 + random() * 0.75, model_version = 1 WHERE study_id = %s",
            (study_id,),
        )
        cur.execute(
            "UPDATE annotation_study SET review_scanned_id = (SELECT max(id) FROM annotation_judgment) WHERE id = %s",
            (study_id,),
        )
        conn.commit()
    _live_version(env, study_id)
    # VACUUM as well as ANALYZE: autovacuum does it to a table soon after a bulk
    # insert, and whether it had reached the judgments before the pages were
    # measured changed the figures (an index-only scan visits the table for every
    # row on a page not yet marked all-visible). Measured in that settled state.
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
        cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cur.fetchone()[0]
    return {
        "prompts": n_prompts,
        "candidates": len(responses),
        "comparisons": comparisons,
        "judgments": inserted,
        "comparisons_disagreeing": disagreeing,
        "database_size": size,
    }


def _live_version(env: dict[str, str], study_id: int) -> None:
    """A published version whose recommendation covers every prompt, as a fit writes it."""
    code = f"""
import random
import django; django.setup()
from annotation.models import Candidate, RewardModelVersion
rng = random.Random(1)
boards = {{}}
for prompt_id, candidate_id in Candidate.objects.filter(study_id={study_id}).order_by("prompt_id", "id").values_list(
        "prompt_id", "id").iterator(chunk_size=20000):
    board = boards.setdefault(str(prompt_id), {{"best": candidate_id, "runner_up": None, "leaderboard": []}})
    board["leaderboard"].append({{"candidate": candidate_id, "mean": round(rng.gauss(0, 1), 4),
                                  "std": round(rng.random(), 4), "p_best": round(rng.random(), 4)}})
RewardModelVersion.objects.create(study_id={study_id}, version=1, model_type="kernel", embedder_key="bench",
    n_judgments=0, checkpoint_path="", recommendation={{"method": "bench", "n_samples": 0, "prompts": boards}})
"""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
