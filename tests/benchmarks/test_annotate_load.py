"""The annotate-load benchmark in its short form (issue 16): 4 clients, capacity
and crowd, the API and the htmx form loop, on PostgreSQL with a retraining
worker and on SQLite; every run's record complete, and the database checks
clean (nothing lost, nothing duplicated, no server error). No speed is asserted.

The benchmark starts its own stacks (a throwaway PostgreSQL database, Redis dbs
13 and 14, Celery workers and beat, gunicorn on 127.0.0.1), so it runs where
the tests run against PostgreSQL (CI: DATABASE_URL, see .ci/run) and is skipped
elsewhere. The tests after it check the parts that need no stack: how a reply
of the annotate page is read, and how results merge.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.annotate_load import cli, measure
from benchmarks.annotate_load.htmx import parse_comparison
from tests.benchmarks.sections import ROOT, needs_postgres

RUN_KEYS = {
    "system", "database", "loop", "shape", "clients", "cycles_per_second",
    "p50_cycle_ms", "p95_cycle_ms", "p99_cycle_ms", "p50_next_ms", "p95_next_ms", "p99_next_ms",
    "p50_submit_ms", "p95_submit_ms", "p99_submit_ms", "errors", "errors_by_kind", "server_errors",
    "lost", "duplicated", "no_comparison", "model_chosen_share", "versions_published",
    "longest_publication_gap_s", "cpu_ms_per_cycle", "load_average", "command", "commit",
}  # fmt: skip
SUMMARY_KEYS = {
    "crowd64_pg_p95_cycle_ms", "crowd64_sqlite_p95_cycle_ms", "crowd64_pg_model_chosen_share",
    "capacity_pg16_cycles_per_second", "ratio_to_label_studio_pg16",
}  # fmt: skip


@needs_postgres
def test_short_annotate_load_loses_duplicates_and_fails_nothing(tmp_path: Path) -> None:
    out = tmp_path / "annotate_load.json"
    command = [sys.executable, "-m", "benchmarks.annotate_load", "--short", "--out", str(out)]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    results = json.loads(out.read_text())

    assert set(results["summary"]) >= SUMMARY_KEYS
    assert results["summary"]["ratio_to_label_studio_pg16"] is None  # --short runs no peer
    runs = results["runs"]
    configurations = {(r["database"], r["loop"], r["shape"]) for r in runs}
    assert configurations == {
        (db, loop, shape)
        for db in ("postgres", "sqlite")
        for loop in ("api", "htmx")
        for shape in ("capacity", "crowd")
    }
    for run in runs:
        where = f"{run['database']} {run['loop']} {run['shape']}"
        assert set(run) >= RUN_KEYS, (where, sorted(RUN_KEYS - set(run)))
        assert (run["system"], run["clients"]) == ("prefloop", 4), where
        assert run["answers"] > 0 and run["cycles"] > 0, (where, run["errors_by_kind"])
        assert run["cycles_per_second"] > 0 and run["p95_cycle_ms"] > 0, where
        assert run["lost"] == 0, (where, run)
        assert run["duplicated"] == 0, (where, run["duplicated_detail"])
        assert run["server_errors"] == 0, (where, run["errors_by_kind"])
        assert run["leases_orphaned"] == 0, where
        assert set(run["no_comparison"]) >= {"count", "seconds"}, where
        assert run["cpu_ms_per_cycle"]["web"] is not None, where
        assert run["command"].startswith("python -m benchmarks.annotate_load") and run["commit"], where


REPLY = """
<section id="comparison" class="comparison" data-comparison-id="41">
  <form class="undo-bar"><input type="hidden" name="csrfmiddlewaretoken" value="u">
    <input type="hidden" name="judgment_id" value="7"></form>
  <form id="answer-form" class="answer-form" method="post">
    <input type="hidden" name="csrfmiddlewaretoken" value="tok">
    <input type="hidden" name="comparison_id" value="41">
    <input type="hidden" name="time_on_task_ms" value="">
    <article class="candidate" data-card="A"><h2>Response A</h2>
      <div class="rendered-view"><p>I don&#x27;t know</p></div></article>
    <article class="candidate" data-card="B"><h2>Response B</h2>
      <div class="rendered-view"><p>Steps to <em>fix</em></p></div></article>
    <input type="checkbox" name="unchecked"><textarea name="rationale">why</textarea>
    <select name="skip_reason"><option value="">Choose</option><option value="other">Other</option></select>
    <button type="submit" name="choice" value="a">A</button>
  </form>
  <template id="comparison-ahead"><section id="comparison" data-comparison-id="42">
    <form id="answer-form"><input type="hidden" name="comparison_id" value="42"></form>
  </section></template>
</section>
"""


def test_a_reply_is_read_as_the_page_reads_it() -> None:
    shown, ahead, waiting = parse_comparison(REPLY)
    assert (shown.comparison_id, ahead.comparison_id, waiting) == (41, 42, False)
    assert shown.fields == [
        ("csrfmiddlewaretoken", "tok"),
        ("comparison_id", "41"),
        ("time_on_task_ms", ""),
        ("rationale", "why"),
        ("skip_reason", ""),
    ]
    assert [c["text"] for c in shown.candidates] == ["I don't know", "Steps to fix"]
    assert ahead.fields == [("comparison_id", "42")]
    empty = '<section id="comparison" data-comparison-id=""><p>There is nothing waiting for you right now</p>'
    assert parse_comparison(empty) == (None, None, True)


def test_longest_gap_counts_the_window_edges() -> None:
    assert measure.longest_gap([], 10.0, 70.0) == 60.0
    assert measure.longest_gap([15.0, 40.0, 5.0, 80.0], 10.0, 70.0) == 30.0


def test_a_rerun_replaces_its_configurations_and_keeps_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "results.json"

    def run(database: str, clients: int, rate: float, system: str = "prefloop") -> dict:
        return {"system": system, "database": database, "loop": "api", "shape": "capacity", "clients": clients,
                "cycles_per_second": rate}  # fmt: skip

    pair = {"database": "postgres", "clients": 16, "ratio": 3.0}
    cli.merge(out, [run("postgres", 16, 10.0), run("sqlite", 16, 20.0)], [pair], None, command="a", commit="c1")
    results = cli.merge(out, [run("postgres", 16, 30.0), run("postgres", 16, 50.0)], [], None, command="b", commit="c2")
    rates = sorted((r["database"], r["cycles_per_second"]) for r in results["runs"])
    assert rates == [("postgres", 30.0), ("postgres", 50.0), ("sqlite", 20.0)]
    assert results["summary"]["capacity_pg16_cycles_per_second"] == 40.0
    assert results["summary"]["ratio_to_label_studio_pg16"] == 3.0  # the pairs of the run that made them
    assert results["summary"]["crowd64_pg_p95_cycle_ms"] is None


def test_the_summary_gives_a_configurations_median_and_its_most_errors() -> None:
    def crowd(p95: float, errors: int, shape: str = "crowd", clients: int = 64) -> dict:
        return {"system": "prefloop", "database": "postgres", "loop": "api", "shape": shape, "clients": clients,
                "p95_cycle_ms": p95, "errors": errors}  # fmt: skip

    runs = [crowd(41.0, 0), crowd(70.0, 0), crowd(45.0, 0), crowd(900.0, 0, "capacity"), crowd(800.0, 2, "capacity")]
    figures = cli.summary(runs, [])
    assert figures["crowd64_pg_p95_cycle_ms"] == 45.0
    assert figures["capacity_pg64_errors"] == 2, "one failing run is enough to report errors"


def test_a_lone_client_gets_a_budget_it_can_spend() -> None:
    """With an overlap of 2 a lone client answers each comparison once: half
    the budget is kept for annotators who are not there, so it gets twice as much."""
    from benchmarks.annotate_load.runner import RunSpec, planned_answers

    lone = planned_answers(RunSpec("api", "capacity", 1, 60.0, 10.0, 0.0), max_rate=200.0)
    many = planned_answers(RunSpec("api", "capacity", 16, 60.0, 10.0, 0.0), max_rate=200.0)
    assert lone == 2 * 60 * 75 and many == 200 * 75
