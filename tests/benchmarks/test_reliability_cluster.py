"""The reliability benchmark's cluster section in its short form (issue 15): two
web hosts and three worker hosts sharing PostgreSQL, Redis and an S3 object store
(moto's server) and no folder; a train worker killed mid-fit, the other taking
over; an import uploaded through one web host and run by a worker on another;
a checkpoint published by a worker and served by a web host.

The section starts its own stack, so it runs where the tests run against
PostgreSQL (CI: DATABASE_URL, see .ci/run) and is skipped elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.sections import needs_postgres, run_short

pytestmark = needs_postgres


def test_short_cluster_survives_a_lost_worker_host_and_shares_no_folder(tmp_path: Path) -> None:
    figures = run_short("cluster", tmp_path / "cluster.json", timeout=1200)
    assert figures["answers"] >= figures["target_answers"], figures
    assert figures["judgments_stored"] == figures["answers"], figures
    assert (figures["lost"], figures["duplicated"], figures["leases_orphaned"]) == (0, 0, 0), figures
    assert figures["server_errors"] == 0, figures["errors_by_kind"]
    assert all(n > 0 for n in figures["answers_per_web_host"]), "both web hosts served annotators"
    # The lost host's work moved to the other train worker.
    assert figures["recovered"], figures["worker_killed"]
    assert figures["worker_killed"]["takeover_seconds"] is not None, figures["worker_killed"]
    # Uploads and checkpoints crossed hosts through the object store only.
    researcher = figures["researcher"]
    assert researcher["import_upload_status"] == 202, researcher
    assert researcher["import_status"] == "done" and researcher["prompts_imported"] > 0, researcher
    assert researcher["checkpoint_status"] == 200 and any(f.endswith(".safetensors") for f in researcher["files"])
    assert figures["object_store"].get("checkpoints", 0) > 0, figures["object_store"]
    for host, written in figures["files_written_per_host"].items():
        assert (written["checkpoints"], written["uploads"]) == (0, 0), (host, written)
