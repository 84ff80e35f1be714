"""The reliability benchmark's faults section in its short form (issue 15): one
worker SIGKILL mid-retrain, one broker restart and one drop of every database
connection, each while the loop runs; after each the loop recovers by itself
within the section's limit, no answer is lost or stored twice, no annotator sees
a server error and the last good model stays served.

The section starts its own stacks (throwaway PostgreSQL databases, a
redis-server of its own on a free port, Celery workers and beat, gunicorn on
127.0.0.1), so it runs where the tests run against PostgreSQL (CI: DATABASE_URL,
see .ci/run) and is skipped elsewhere. The section waits for each condition
with generous timeouts of its own; this test checks outcomes, not speed.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.benchmarks.sections import needs_postgres, run_short

HTTP_KINDS = ("broker_restart", "broker_hang", "db_connection_drop")

pytestmark = needs_postgres


def test_short_faults_recover_without_losing_duplicating_or_failing_answers(tmp_path: Path) -> None:
    # About 3 minutes on two cores.
    figures = run_short("faults", tmp_path / "faults.json", timeout=1800)
    assert set(figures) == {"worker_sigkill", *HTTP_KINDS}
    for kind, run in figures.items():
        # Messages as strings, the kind first: pytest shows them whole.
        summary = f"{kind}: " + json.dumps({key: value for key, value in run.items() if key != "runs"})
        trials = f"{kind}: " + json.dumps(run["runs"])
        assert run["trials"] >= 1, summary
        assert run["recovered"] == run["trials"], trials
        limit = run["recovery_limit_seconds"]
        assert all(t["recovery_seconds"] <= limit for t in run["runs"]), trials
        assert run["lost"] == 0, summary
        assert run["duplicated"] == 0, summary
        assert run["last_good_model_served_throughout"] is True, summary
        if kind in HTTP_KINDS:
            assert run["answers"] > 0, f"{kind}: no annotator answered during the trials"
            assert run["server_errors"] == 0, summary
            assert run["leases_orphaned"] == 0, summary
        else:
            assert run["recovered_within_limit"] == run["trials"], trials
            assert run["annotator_errors"] == 0, summary
