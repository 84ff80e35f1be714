"""Export benchmark: a study with a million judgments, exported within 512 MB of memory.

Creates its own PostgreSQL database, migrates it, and seeds one pairwise study
with ``--judgments`` judgments (100 annotators × comparisons of 4 responses to
each prompt; prompts of 150–400 and responses of 200–1,500 characters, A/B/tie/
both-bad answers, strengths, some rationales and aspect ratings) plus skipped
leases, with ``INSERT … SELECT generate_series``-style SQL rather than the ORM
row by row. Then every streaming format and the parquet exports run, each in a
fresh Python process that writes the export to a file and reports its wall
time, rows, bytes and peak resident memory (``ru_maxrss`` of that process, so
Django, the database driver and pyarrow are counted too). The database is
dropped at the end.

    python -m benchmarks.export_memory                    # writes benchmarks/results/export_memory.json
    python -m benchmarks.export_memory --judgments 100000 --formats dpo.jsonl dpo.parquet

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

from benchmarks.postgres import drop_database, libpq_url, recreate_database

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "export_memory.json"
SLUG = "bench-export"
ANNOTATORS = 100
RESPONSES_PER_PROMPT = 4
PAIRS_PER_PROMPT = 4  # of the 6 pairs of 4 responses
SKIPPING_ANNOTATORS = 10
SKIPS_EACH = 2000
TARGET_MB = 512
DEFAULT_FORMATS = [
    "judgments.jsonl", "judgments.csv", "dpo.jsonl", "dpo.csv", "rankings.jsonl", "skips.jsonl", "skips.csv",
    "dpo.parquet", "judgments.parquet",
]  # fmt: skip
WORDS = [
    "the", "a", "of", "to", "and", "in", "is", "that", "for", "it", "with", "as", "on", "be", "this", "by", "are",
    "or", "from", "at", "model", "answer", "response", "question", "data", "value", "list", "function", "return",
    "error", "example", "first", "then", "each", "step", "result", "small", "large", "because", "however",
    "python", "query", "index", "memory", "stream", "file", "write", "read", "user", "time", "number", "string",
    "text", "should", "would", "could", "can", "explain", "simple", "clear", "reason", "better", "worse", "safe",
    "careful", "check", "test", "case", "note", "point", "idea", "way", "part", "use",
]  # fmt: skip

# Run in a fresh interpreter per format: its peak RSS is the export's alone.
CHILD = r"""
import json, os, resource, sys, time
import django
django.setup()
from annotation.exports import registry
from annotation.exports.writers import CSV, PARQUET
from annotation.models import Study


def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

fmt, out_dir = sys.argv[1], sys.argv[2]
study = Study.objects.get(slug=%(slug)r)
export = registry.get(fmt)
if export.writer is PARQUET:
    import pyarrow.parquet  # counted in the baseline: the import is not the export
baseline = rss_mb()
started = time.perf_counter()
# What a download sends, written to a file as it streams.
path = os.path.join(out_dir, export.file_name(slug=study.slug))
blocks = export.stream(study=study)
with open(path, "wb") as out:
    for block in blocks:
        out.write(block)
close = getattr(blocks, "close", None)
if close is not None:
    close()  # a zipped dataset removes its build folder
wall = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
size = os.path.getsize(path)
if export.writer is PARQUET:
    rows = pyarrow.parquet.read_metadata(path).num_rows
elif export.writer is CSV:
    import csv
    with open(path, newline="", encoding="utf-8") as handle:
        rows = sum(1 for _ in csv.reader(handle)) - 1  # cells may hold newlines: parse, do not count lines
elif fmt.endswith(".jsonl"):
    with open(path, "rb") as handle:
        rows = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
else:
    rows = None  # a zipped dataset folder: its rows are in the arrow files inside
os.remove(path)
print(json.dumps({"format": fmt, "rows": rows, "bytes": size, "wall_s": round(wall, 1),
                  "rows_per_s": round(rows / wall) if wall and rows else None,
                  "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(peak, 1)}))
"""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--formats", nargs="+", default=DEFAULT_FORMATS)
    parser.add_argument("--admin-database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="prefloop_bench_export")
    parser.add_argument("--keep-database", action="store_true", help="leave the seeded database for inspection")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    base_url = args.admin_database_url.rsplit("/", 1)[0]
    database_url = f"{base_url}/{args.database}"
    work = Path(tempfile.mkdtemp(prefix="prefloop-export-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": "benchmark-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "PREFLOOP_VAR_DIR": str(work / "var"),
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
    }
    recreate_database(args.admin_database_url, args.database)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        started = time.perf_counter()
        seeded = _seed(env, database_url, args.judgments)
        seeded["seed_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps({"seeded": seeded}), flush=True)
        exports = []
        for fmt in args.formats:
            out = subprocess.run(
                [sys.executable, "-c", CHILD % {"slug": SLUG}, fmt, str(work)],
                cwd=ROOT, env=env, check=True, capture_output=True, text=True,
            )  # fmt: skip
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            figures["within_target"] = figures["peak_rss_mb"] < TARGET_MB
            print(json.dumps(figures), flush=True)
            exports.append(figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep_database:
            drop_database(args.admin_database_url, args.database)

    result = {
        "config": {
            "judgments": args.judgments,
            "database": "postgresql",
            "command": "python -m benchmarks.export_memory"
            + (f" --judgments {args.judgments}" if args.judgments != 1_000_000 else "")
            + (f" --formats {' '.join(args.formats)}" if args.formats != DEFAULT_FORMATS else ""),
            "measure": "each export in a fresh process writing what a download sends to a local file; "
            "peak RSS = ru_maxrss of that process (Django, psycopg and pyarrow included); "
            "baseline = RSS after start-up, before the export",
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "seeded": seeded,
        "target_peak_rss_mb": TARGET_MB,
        "exports": exports,
        "all_within_target": all(e["within_target"] for e in exports),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


def _text(rng: random.Random, low: int, high: int, *, markdown: bool = False) -> str:
    """Filler prose of a length drawn between ``low`` and ``high`` characters."""
    target = rng.randint(low, high)
    words: list[str] = []
    length = 0
    while length < target:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    text = " ".join(words)
    if markdown and len(text) > 400:
        cut = len(text) // 2
        text = text[:cut] + ".\n\n- " + text[cut:].replace(" and ", "\n- ", 2)
    return text[:1].upper() + text[1:] + "."


def _seed(env: dict[str, str], database_url: str, judgments: int) -> dict[str, Any]:
    """One pairwise study with ``judgments`` judgments and some skips, written by SQL."""
    comparisons_needed = -(-judgments // ANNOTATORS)
    n_prompts = -(-comparisons_needed // PAIRS_PER_PROMPT)
    rng = random.Random(0)
    prompts = [_text(rng, 150, 400) + "?" for _ in range(n_prompts)]
    responses = [_text(rng, 200, 1500, markdown=True) for _ in range(n_prompts * RESPONSES_PER_PROMPT)]
    study_id = _create_study(env, judgments)

    with psycopg.connect(libpq_url(database_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT setseed(0.42)")
        _copy_texts(cur, study_id, prompts, responses)
        _insert_comparisons(cur, study_id, comparisons_needed)
        inserted = _insert_judgments(cur, study_id, judgments)
        skips = _insert_skips(cur, study_id)
        conn.commit()
        cur.execute("ANALYZE")
        cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cur.fetchone()[0]
    return {
        "study_judgments": inserted,
        "skips": skips,
        "prompts": n_prompts,
        "candidates": len(responses),
        "comparisons": comparisons_needed,
        "annotators": ANNOTATORS,
        "mean_prompt_chars": round(sum(map(len, prompts)) / len(prompts)),
        "mean_response_chars": round(sum(map(len, responses)) / len(responses)),
        "database_size": size,
    }


def _create_study(env: dict[str, str], judgments: int) -> int:
    """The study and its annotators, through Django in a child process (model
    defaults live in Python); the study's id."""
    code = f"""
import django; django.setup()
from django.contrib.auth import get_user_model
from annotation.models import Membership, Study
study = Study.objects.create(name="Bench export", slug={SLUG!r}, budget={judgments}, strategy="random",
                             allow_both_bad=True, ask_strength=True, ask_rationale="optional",
                             aspects=["helpfulness"], overlap={ANNOTATORS})
User = get_user_model()
users = User.objects.bulk_create([User(username=f"bench-annotator-{{k:04d}}", password="!")
                                  for k in range({ANNOTATORS + SKIPPING_ANNOTATORS})])
Membership.objects.bulk_create([Membership(user=u, study=study, role="annotator") for u in users])
print(study.id)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def _copy_texts(cur: psycopg.Cursor, study_id: int, prompts: list[str], responses: list[str]) -> None:
    """The prompts, then ``RESPONSES_PER_PROMPT`` responses to each, with ``COPY``."""
    with cur.copy(
        "COPY annotation_prompt (study_id, external_id, text, format, metadata, content_hash, created_at) FROM STDIN"
    ) as copy:
        for k, text in enumerate(prompts):
            copy.write_row((study_id, f"p{k}", text, "text", "{}", f"{k:064x}", "now"))
    cur.execute("SELECT id FROM annotation_prompt WHERE study_id = %s ORDER BY id", (study_id,))
    prompt_ids = [row[0] for row in cur.fetchall()]
    with cur.copy(
        "COPY annotation_candidate (study_id, prompt_id, text, source, metadata, content_hash, created_at) FROM STDIN"
    ) as copy:
        for k, text in enumerate(responses):
            prompt_id = prompt_ids[k // RESPONSES_PER_PROMPT]
            metadata = json.dumps({"temperature": 0.7, "tokens": len(text) // 4})
            copy.write_row(
                (study_id, prompt_id, text, f"model-{k % RESPONSES_PER_PROMPT}", metadata, f"c{k:063x}", "now")
            )


def _insert_comparisons(cur: psycopg.Cursor, study_id: int, comparisons_needed: int) -> None:
    """Pairs (0,1) (2,3) (0,2) (1,3) of each prompt's responses, as done comparisons
    with their items; leaves the temporary tables ``bench_comparisons`` (id, prompt_id,
    first, second) and ``bench_users`` (id, k) for the judgments and skips."""
    cur.execute(
        """
        CREATE TEMP TABLE bench_pairs AS
        WITH ranked AS (
            SELECT id, prompt_id, row_number() OVER (PARTITION BY prompt_id ORDER BY id) - 1 AS k
            FROM annotation_candidate WHERE study_id = %(study)s
        ), wanted(a, b, n) AS (VALUES (0, 1, 0), (2, 3, 1), (0, 2, 2), (1, 3, 3))
        SELECT x.prompt_id, x.id AS first, y.id AS second, row_number() OVER (ORDER BY x.prompt_id, w.n) AS seq
        FROM wanted w JOIN ranked x ON x.k = w.a JOIN ranked y ON y.prompt_id = x.prompt_id AND y.k = w.b
        ORDER BY x.prompt_id, w.n LIMIT %(limit)s
        """,
        {"study": study_id, "limit": comparisons_needed},
    )
    cur.execute(
        """
        INSERT INTO annotation_comparison (study_id, prompt_id, item_key, status, judgments_wanted, strategy,
            score, propensity, priority, is_gold, created_at, completed_at)
        SELECT %(study)s, prompt_id, first || ',' || second, 'done', %(overlap)s,
               CASE WHEN seq %% 3 = 0 THEN 'random' ELSE 'uncertainty' END,
               random(), CASE WHEN seq %% 3 = 0 THEN NULL ELSE 0.01 + random() / 10 END, 0, false, now(), now()
        FROM bench_pairs ORDER BY seq
        """,
        {"study": study_id, "overlap": ANNOTATORS},
    )
    cur.execute(
        """
        CREATE TEMP TABLE bench_comparisons AS
        SELECT c.id, c.prompt_id, p.first, p.second FROM annotation_comparison c
        JOIN bench_pairs p ON c.item_key = p.first || ',' || p.second WHERE c.study_id = %(study)s
        """,
        {"study": study_id},
    )
    cur.execute(
        """
        INSERT INTO annotation_comparisonitem (comparison_id, candidate_id, position)
        SELECT id, first, 0 FROM bench_comparisons UNION ALL SELECT id, second, 1 FROM bench_comparisons
        """
    )
    cur.execute(
        """
        CREATE TEMP TABLE bench_users AS
        SELECT id, row_number() OVER (ORDER BY id) AS k FROM auth_user WHERE username LIKE 'bench-annotator-%'
        """
    )


def _insert_judgments(cur: psycopg.Cursor, study_id: int, judgments: int) -> int:
    """``judgments`` judgments in one statement, by the first ``ANNOTATORS``
    annotators; how many were inserted."""
    # Each annotator sees the pair in their own order and answers A 45 %,
    # B 40 %, tie 10 %, both bad 5 %, with strengths, some rationales and
    # aspect ratings.
    cur.execute(
        """
        INSERT INTO annotation_judgment (study_id, comparison_id, prompt_id, annotator_id, choice, ranking, strength,
            rationale, aspect_ratings, shown_order, time_on_task_ms, client_info, created_at)
        SELECT %(study)s, c.id, c.prompt_id, u.id, x.choice,
               CASE x.choice WHEN 'a' THEN jsonb_build_array(x.s0, x.s1)
                             WHEN 'b' THEN jsonb_build_array(x.s1, x.s0)
                             ELSE jsonb_build_array(jsonb_build_array(x.s0, x.s1)) END,
               CASE WHEN x.choice IN ('a', 'b') THEN (ARRAY['slight', 'clear', 'strong'])[1 + floor(x.r2 * 3)::int]
                    ELSE '' END,
               CASE WHEN x.r2 < 0.2 THEN 'The chosen answer explains the steps and checks the result, '
                                         || 'the other one skips the hard part.' ELSE '' END,
               jsonb_build_object(x.s0::text, jsonb_build_object('helpfulness', 1 + floor(x.r2 * 5)::int),
                                  x.s1::text, jsonb_build_object('helpfulness', 1 + floor(x.r * 5)::int)),
               jsonb_build_array(x.s0, x.s1), 2000 + floor(x.r * 60000)::int, '{"via": "htmx"}'::jsonb,
               now() - make_interval(secs => x.r * 86400)
        FROM bench_comparisons c CROSS JOIN bench_users u
        CROSS JOIN LATERAL (
            SELECT CASE WHEN f THEN c.second ELSE c.first END AS s0,
                   CASE WHEN f THEN c.first ELSE c.second END AS s1,
                   CASE WHEN r < 0.45 THEN 'a' WHEN r < 0.85 THEN 'b' WHEN r < 0.95 THEN 'tie'
                        ELSE 'both_bad' END AS choice, r, r2
            FROM (SELECT random() AS r, random() AS r2, random() < 0.5 AS f, c.id AS dep) s
        ) x
        WHERE u.k <= %(annotators)s
        ORDER BY c.id, u.k
        LIMIT %(judgments)s
        """,
        {"study": study_id, "annotators": ANNOTATORS, "judgments": judgments},
    )
    return cur.rowcount


def _insert_skips(cur: psycopg.Cursor, study_id: int) -> int:
    """``SKIPS_EACH`` skipped leases for each of the ``SKIPPING_ANNOTATORS``; how many."""
    cur.execute(
        """
        INSERT INTO annotation_assignment (study_id, comparison_id, annotator_id, status, leased_at, expires_at,
            display_order, skip_reason, skip_note)
        SELECT %(study)s, c.id, u.id, 'skipped', now(), now(), jsonb_build_array(c.first, c.second),
               (ARRAY['cannot_judge', 'broken', 'offensive', 'other'])[1 + (c.id + u.k) %% 4],
               CASE WHEN (c.id + u.k) %% 4 = 3 THEN 'Both answers are in a language I do not read.' ELSE '' END
        FROM (SELECT * FROM bench_comparisons ORDER BY id LIMIT %(each)s) c CROSS JOIN bench_users u
        WHERE u.k > %(annotators)s
        """,
        {"study": study_id, "annotators": ANNOTATORS, "each": SKIPS_EACH},
    )
    return cur.rowcount


if __name__ == "__main__":
    main()
