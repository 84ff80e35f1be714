"""The reliability benchmark's load section in its short form (issue 15): 8
annotators × 200 answers through the API on PostgreSQL with a retraining worker,
4 × 100 on SQLite; every acknowledged answer stored once, no server error.

The section starts its own stack (a throwaway PostgreSQL database, Redis db 9,
Celery workers and beat, gunicorn on 127.0.0.1), so it runs where the tests run
against PostgreSQL (CI: DATABASE_URL, see .ci/run) and is skipped elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.sections import needs_postgres, run_short

pytestmark = needs_postgres


def test_short_load_loses_duplicates_and_fails_nothing(tmp_path: Path) -> None:
    figures = run_short("load", tmp_path / "load.json")
    for name, clients, answers in (("pg64", 8, 200), ("sqlite16", 4, 100)):
        run = figures[name]
        assert (run["clients"], run["target_answers"]) == (clients, answers)
        assert run["answers"] >= answers, run
        assert run["judgments_stored"] == run["answers"] - run["answers_replayed_200"], run
        assert run["lost"] == 0, run
        assert run["duplicated"] == 0, run["duplicated_detail"]
        assert run["server_errors"] == 0, run["errors_by_kind"]
        assert run["leases_orphaned"] == 0, run
        assert run["p95_cycle_ms"] is not None and run["p95_cycle_ms"] > 0
