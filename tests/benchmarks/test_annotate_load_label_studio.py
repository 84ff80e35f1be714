"""Label Studio beside prefloop (issue 16): the parts of ``benchmarks.annotate_load.label_studio``
that need no Label Studio: where the shared harness is found, whether a run is possible, the
environment its scripts get, how a run's project is sized, and the run record built from
ls_bench.py's output. The real runs (install, start on SQLite and PostgreSQL, 1 and 16
clients) are the benchmark's, not the test suite's: they take minutes and a 1 GB venv."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from benchmarks.annotate_load import label_studio as ls

# ls_bench.py's output for a 16-client run on SQLite, trimmed to the fields the record reads
# (the shape of a real run of Label Studio 1.23.2).
RESULT: dict[str, Any] = {
    "label": "label_studio-sqlite-c16",
    "params": {
        "next_endpoint": "POST /api/dm/actions/?id=next_task&project={pid}",
        "submit_endpoint": "POST /api/tasks/{tid}/annotations/?project={pid}",
        "think_time_s": 0,
    },
    "elapsed_s": 61.2,
    "cycles_attempted": 152,
    "cycles_ok": 150,
    "cycles_per_s": 2.45,
    "latency_ms": {
        "next": {"n": 152, "p50": 3252.0, "p95": 12735.0, "p99": 19283.0},
        "submit": {"n": 150, "p50": 1402.0, "p95": 2437.0, "p99": 3116.0},
        "cycle": {"n": 150, "p50": 4941.0, "p95": 14401.0, "p99": 20900.0},
    },
    "errors": {"total": 2, "by_kind": {"next: ReadTimeout": 2}},
    "stop_reasons": {"cycles_or_time_cap": 16},
    "duplicates": {
        "tasks_submitted_more_than_once": 20,
        "extra_annotations": 21,
        "tasks_served_to_more_than_one_client": 25,
    },
    "server_side_after": {
        "task_number": 2432,
        "num_tasks_with_annotations": 128,
        "total_annotations_number": 150,
        "extra_annotations_on_same_task": 22,
        "server_version": {
            "release": "1.23.2",
            "label-studio-os-backend": {"version": "1.23.2+0"},
            "edition": "Community",
        },
    },
    "server_log": {"db_locked_attempts_total": 140},
    "server_process": {"cpu_ms_per_ok_cycle": 252.0, "peak_rss_mb_sampled": 413.0},
    "host": {"cpus": 2, "cpu_busy_pct_all_cpus": 99.5},
}

INTERFACE_KEYS = {
    "system", "version", "database", "loop", "shape", "clients", "cycles_per_second",
    "p50_cycle_ms", "p95_cycle_ms", "p99_cycle_ms", "p50_next_ms", "p95_next_ms", "p99_next_ms",
    "p50_submit_ms", "p95_submit_ms", "p99_submit_ms", "errors", "errors_by_kind", "lost", "duplicated",
    "server_cpu_ms_per_cycle", "command",
}  # fmt: skip


def test_the_record_has_the_benchmarks_keys_and_ls_bench_figures() -> None:
    record = ls.build_record(RESULT, database="sqlite", clients=16, command="python ls_bench.py --concurrency 16")
    assert record.keys() >= INTERFACE_KEYS
    assert record["system"] == "label_studio"
    assert (record["version"], record["database"], record["loop"], record["shape"]) == (
        "1.23.2",
        "sqlite",
        "api",
        "capacity",
    )
    assert record["clients"] == 16
    assert record["cycles_per_second"] == 2.45
    assert (record["p50_cycle_ms"], record["p95_cycle_ms"], record["p99_cycle_ms"]) == (4941.0, 14401.0, 20900.0)
    assert (record["p50_next_ms"], record["p95_next_ms"], record["p99_next_ms"]) == (3252.0, 12735.0, 19283.0)
    assert (record["p50_submit_ms"], record["p95_submit_ms"], record["p99_submit_ms"]) == (1402.0, 2437.0, 3116.0)
    assert record["errors"] == 2
    assert record["errors_by_kind"] == {"next: ReadTimeout": 2}
    assert record["server_cpu_ms_per_cycle"] == 252.0
    assert record["command"] == "python ls_bench.py --concurrency 16"
    assert record["tasks_exhausted"] is False
    assert record["server_log"] == {"db_locked_attempts_total": 140}


def test_duplicates_are_the_servers_count_and_lost_is_acknowledged_minus_stored() -> None:
    record = ls.build_record(RESULT, database="sqlite", clients=16, command="c")
    # The fresh project holds 150 annotations on 128 tasks: 22 beyond the first on a task,
    # one more than the clients saw acknowledged twice (a timed-out submit the server stored).
    assert record["duplicated"] == 22
    assert record["duplicated_client_side"] == 21
    assert record["judgments_stored"] == 150
    assert record["lost"] == 0

    fewer = copy.deepcopy(RESULT)
    fewer["server_side_after"]["total_annotations_number"] = 147
    assert ls.build_record(fewer, database="sqlite", clients=16, command="c")["lost"] == 3


def test_without_the_servers_count_lost_is_unknown_and_duplicates_come_from_the_clients() -> None:
    result = copy.deepcopy(RESULT)
    result["server_side_after"] = {}
    record = ls.build_record(result, database="postgres", clients=16, command="c")
    assert record["lost"] is None
    assert record["duplicated"] == 21
    assert record["version"] == ls.LS_VERSION


def test_a_run_without_a_successful_cycle_has_no_latencies_and_no_rate_per_cycle() -> None:
    result = copy.deepcopy(RESULT)
    result.update(cycles_ok=0, cycles_per_s=0.0)
    result["latency_ms"] = {"next": {"n": 0}, "submit": {"n": 0}, "cycle": {"n": 0}}
    record = ls.build_record(result, database="postgres", clients=1, command="c", database_cpu_s=3.0)
    assert record["p95_cycle_ms"] is None and record["p50_next_ms"] is None
    assert record["database_cpu_ms_per_cycle"] is None


def test_database_cpu_is_spread_over_the_successful_cycles_and_extra_fields_are_kept() -> None:
    record = ls.build_record(
        RESULT, database="postgres", clients=16, command="c", database_cpu_s=7.5, extra={"project_id": 9}
    )
    assert record["database_cpu_ms_per_cycle"] == 50.0
    assert record["project_id"] == 9


def test_an_exhausted_project_is_flagged() -> None:
    result = copy.deepcopy(RESULT)
    result["stop_reasons"] = {"no_more_tasks": 16}
    assert ls.build_record(result, database="sqlite", clients=16, command="c")["tasks_exhausted"] is True


def test_think_time_is_refused_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may start for a run that cannot be measured")

    monkeypatch.setattr(ls, "ensure_installed", boom)
    monkeypatch.setattr(ls, "_ensure_server", boom)
    with pytest.raises(NotImplementedError, match="think time"):
        ls.run(database="postgres", clients=64, seconds=60, think_mean_s=2.0)
    with pytest.raises(ValueError, match="database"):
        ls.run(database="mysql", clients=1, seconds=60)
    with pytest.raises(ValueError, match="clients"):
        ls.run(database="sqlite", clients=0, seconds=60)


def test_the_project_line_is_read_from_the_seeding_output() -> None:
    out = 'some warning\n{"users": 16}\n{"id": 7, "title": "pairwise-bench-7", "task_count": 2432}\n'
    assert ls.parse_project(out) == {"id": 7, "title": "pairwise-bench-7", "task_count": 2432}
    with pytest.raises(ls.LabelStudioError, match="no JSON"):
        ls.parse_project("Traceback (most recent call last):\n  boom\n")
    with pytest.raises(ls.LabelStudioError, match="no project id"):
        ls.parse_project('{"users": 16}\n')


def test_a_runs_project_holds_more_tasks_than_the_run_can_answer_within_bounds() -> None:
    assert ls.tasks_for(16, 60) == 60 * ls.TASKS_PER_SECOND_CEILING + 32
    assert ls.tasks_for(1, 0.5) == ls.MIN_TASKS
    assert ls.tasks_for(64, 10_000) == ls.MAX_TASKS


def test_label_studio_gets_none_of_prefloops_settings() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "PIP_FIND_LINKS": "/opt/wheels",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/prefloop",
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "SECRET_KEY": "x",
        "DEBUG": "true",
        "PYTHONPATH": "/work/main",
        "VIRTUAL_ENV": "/work/main/.venv",
    }
    env = ls.clean_env({"LS_DB": "postgres"}, environ=environ)
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "PIP_FIND_LINKS": "/opt/wheels", "LS_DB": "postgres"}
    assert "PATH" in ls.clean_env(environ={})


def test_the_instances_use_their_own_folders_and_ports() -> None:
    sqlite, postgres = ls.INSTANCES["sqlite"], ls.INSTANCES["postgres"]
    assert sqlite.data_dir != postgres.data_dir
    assert all(str(p).startswith("/tmp/") for p in (sqlite.data_dir, postgres.data_dir, postgres.pg_dir))
    env = postgres.setup_env(N_TASKS="10")
    assert (env["LS_DB"], env["LS_HOST"], env["LS_PORT"], env["LS_PG_PORT"]) == (
        "postgres",
        "127.0.0.1",
        "8089",
        "5433",
    )
    assert (env["LS_VERSION"], env["N_TASKS"]) == ("1.23.2", "10")


def test_the_harness_is_found_beside_the_checkout_unless_an_environment_variable_says_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PREFLOOP_PEERS_DIR", raising=False)
    monkeypatch.delenv("PREFLOOP_SHARED_DIR", raising=False)
    assert ls.peers_dir() == Path(ls.__file__).resolve().parents[2].parent / "shared" / "peers"
    monkeypatch.setenv("PREFLOOP_SHARED_DIR", str(tmp_path / "shared"))
    assert ls.peers_dir() == tmp_path / "shared" / "peers"
    monkeypatch.setenv("PREFLOOP_PEERS_DIR", str(tmp_path / "elsewhere"))
    assert ls.peers_dir() == tmp_path / "elsewhere"


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A peers folder with both scripts, an installed Label Studio venv, a free port, PostgreSQL binaries."""
    peers = tmp_path / "peers"
    peers.mkdir()
    for name in ("ls_setup.sh", "ls_bench.py"):
        (peers / name).write_text("#!/bin/sh\nexit 1\n")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "label-studio").write_text("")
    monkeypatch.setenv("PREFLOOP_PEERS_DIR", str(peers))
    monkeypatch.setenv("PREFLOOP_LS_VENV", str(venv))
    monkeypatch.setattr(ls, "_port_open", lambda port, host=ls.HOST: False)
    monkeypatch.setattr(ls, "_pg_bin", lambda: tmp_path)
    return peers


def test_available_when_the_harness_and_label_studio_are_there(harness: Path) -> None:
    assert ls.available() is None
    assert ls.available("sqlite") is None
    assert ls.available("postgres") is None


def test_unavailable_without_the_harness(harness: Path) -> None:
    (harness / "ls_bench.py").unlink()
    reason = ls.available()
    assert reason is not None and "ls_bench.py" in reason and str(harness) in reason
    assert "\n" not in reason


def test_unavailable_postgres_without_its_binaries_and_unknown_databases(
    harness: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ls, "_pg_bin", lambda: None)
    assert ls.available("sqlite") is None
    assert "PostgreSQL" in (ls.available("postgres") or "")
    assert "unknown database" in (ls.available("mysql") or "")


def test_unavailable_when_another_process_holds_the_port(harness: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ls, "_port_open", lambda port, host=ls.HOST: True)
    monkeypatch.setattr(ls, "_server_pid", lambda instance: None)
    assert "8089" in (ls.available() or "")
    monkeypatch.setattr(ls, "_server_pid", lambda instance: 4242 if instance.database == "sqlite" else None)
    assert ls.available() is None


def test_stop_all_stops_only_what_this_process_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(ls, "_setup", lambda step, instance, timeout, **extra: calls.append((step, instance.database)))
    monkeypatch.setattr(ls, "_server_pid", lambda instance: 4242)
    monkeypatch.setattr(ls, "_read_pid", lambda path: 4343)
    monkeypatch.setattr(ls, "_touched_servers", set())
    monkeypatch.setattr(ls, "_touched_pg", False)
    ls.stop_all()
    assert calls == []
    monkeypatch.setattr(ls, "_touched_servers", {"postgres"})
    monkeypatch.setattr(ls, "_touched_pg", True)
    ls.stop_all()
    assert calls == [("stop", "postgres"), ("pg-stop", "postgres")]
    calls.clear()
    ls.stop_all()  # a second call has nothing left to stop
    assert calls == []
