"""The reliability benchmark's hostile-input section in a short form, so a
regression fails the build: generated files of every import format, valid
and mutated, through the service, the pages, the API and the command line,
end accepted in full or refused with a message, never a server error, a
stuck job or a partial import.

In this process on the test database (SQLite by default), with the pages
and the API through Django's test client and jobs run as their tasks are
enqueued; where PostgreSQL and Redis answer on 127.0.0.1, also the
section's own short form against the app as deployed (gunicorn, a Celery
worker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.reliability import fuzz
from benchmarks.reliability.stack import listening
from webapp.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
# Cases of the in-process run: every path and format, in about a minute on 2 cores.
IN_PROCESS_CASES = 200


def _assert_clean(figures: dict) -> None:
    examples = json.dumps(figures["examples"], indent=2)
    assert figures["generator_errors"] == 0, examples
    assert figures["server_errors"] == 0, examples
    assert figures["stuck_jobs"] == 0, examples
    assert figures["partial_imports"] == 0, examples
    assert figures["valid_refused"] == 0, examples
    assert figures["accepted"] + figures["refused"] == figures["files"]


def test_the_generator_is_seeded_and_covers_every_format_mutation_and_path():
    cases = [fuzz.case_generate(fuzz.SEED, index) for index in range(150)]
    again = fuzz.case_generate(fuzz.SEED, 17)
    assert (again.name, again.content, again.path) == (cases[17].name, cases[17].content, cases[17].path)
    assert fuzz.case_generate(fuzz.SEED + 1, 17).content != cases[17].content
    assert {case.family for case in cases} == set(fuzz.FAMILY_WEIGHTS)
    assert {case.path for case in cases} == set(fuzz.PATHS)
    assert any(case.expected is not None for case in cases) and any(case.expected is None for case in cases)
    assert max(len(case.content) for case in cases) <= 1024 * 1024


@pytest.mark.django_db(transaction=True)
def test_hostile_files_end_cleanly_on_every_path_in_process(settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", True)
    # Compression bombs of megabytes take minutes of progress writes on SQLite: kilobytes here.
    monkeypatch.setattr(fuzz, "BOMBS", [(fill, size >> 6) for fill, size in fuzz.BOMBS])
    user, _password, token = fuzz._researcher()
    bench = fuzz.Bench(researcher=user, web=lambda: fuzz.ClientWeb(user, token), cli_subprocess=False, job_timeout=5)
    figures = fuzz.drive(
        bench, seed=fuzz.SEED, indices=range(IN_PROCESS_CASES), threads=1, log=False,
        reroute=lambda case: "cli" if case.index % 20 == 7 else case.path,  # the command line is drawn rarely
    ).figures()  # fmt: skip
    _assert_clean(figures)
    assert figures["files"] == IN_PROCESS_CASES
    assert {path.split(":")[0] for path in figures["by_path"]} == set(fuzz.PATHS)
    assert set(figures["by_format"]) == set(fuzz.FAMILY_WEIGHTS)
    assert figures["accepted"] and figures["refused"] and figures["via_background_job"]
    assert not any(path.is_file() for path in (tmp_path / "media" / "imports").rglob("*")), "uploads left behind"


@pytest.mark.worker
@pytest.mark.skipif(not (listening(5432) and listening(6379)), reason="needs PostgreSQL and Redis on 127.0.0.1")
def test_the_short_form_on_the_app_as_deployed(tmp_path):
    out = tmp_path / "fuzz.json"
    command = [sys.executable, "-m", "benchmarks.reliability.fuzz", "--short", "--json-out", str(out)]
    subprocess.run(command, cwd=ROOT, check=True, timeout=600)
    figures = json.loads(out.read_text())
    _assert_clean(figures)
    assert figures["files"] == fuzz.FILES_SHORT and figures["uploads_left"] == 0
    assert {path.split(":")[0] for path in figures["by_path"]} == set(fuzz.PATHS)
