"""psycopg's connection pool (``PREFLOOP_DB_POOL``): the settings that turn it on,
and, on PostgreSQL, a pooled connection the server dropped costing a reconnect,
not an error (the pool checks a connection before handing it out)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.webapp.test_production_settings import _settings

ROOT = Path(__file__).resolve().parents[2]
DATABASE_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = DATABASE_URL.startswith(("postgres://", "postgresql://"))


def test_the_pool_replaces_persistent_connections(monkeypatch, tmp_path: Path):
    url = "postgres://someone@db.example:5432/prefloop"
    pooled = _settings(
        monkeypatch, tmp_path, DEBUG="true", DATABASE_URL=url, PREFLOOP_DB_POOL="true", PREFLOOP_DB_POOL_MAX="5"
    )
    database = pooled["DATABASES"]["default"]
    assert database["OPTIONS"]["pool"]["max_size"] == 5
    assert database["CONN_MAX_AGE"] == 0, "Django refuses a pool with persistent connections"
    assert database["CONN_HEALTH_CHECKS"] is True, "the pool checks a connection before handing it out"
    plain = _settings(monkeypatch, tmp_path, DEBUG="true", DATABASE_URL=url)["DATABASES"]["default"]
    assert "pool" not in plain.get("OPTIONS", {}) and plain["CONN_MAX_AGE"] == 60 and plain["CONN_HEALTH_CHECKS"]


# Run in a process of its own (the test run's connection is not pooled): the
# pooled connection is dropped by the server from a second, unpooled one.
SCRIPT = """
import psycopg
from django.db import connection
assert connection.pool is not None, "not pooled"
with connection.cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    first = cursor.fetchone()[0]
connection.close()  # back to the pool, still open
params = {k: v for k, v in connection.get_connection_params().items() if k in ("dbname", "user", "host", "port")}
with psycopg.connect(**params, autocommit=True) as admin:
    dropped = admin.execute("SELECT pg_terminate_backend(%s)", (first,)).fetchone()[0]
with connection.cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    second = cursor.fetchone()[0]
print(f"dropped={dropped} first={first} second={second}")
"""


@pytest.mark.skipif(not ON_POSTGRES, reason="the pool is PostgreSQL's (set DATABASE_URL to postgres://…)")
@pytest.mark.django_db
def test_a_pooled_connection_dropped_by_the_server_costs_a_reconnect(tmp_path: Path):
    from django.db import connection

    test_database = DATABASE_URL.rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    env = {**os.environ, "DATABASE_URL": test_database, "PREFLOOP_DB_POOL": "true", "PREFLOOP_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = result.stdout.strip().splitlines()[-1]
    figures = dict(part.split("=") for part in line.split())
    assert figures["dropped"] == "True", line
    assert figures["first"] != figures["second"], f"the dropped connection was handed out again: {line}"


def test_postgres_sessions_start_with_jit_off_unless_told_otherwise(monkeypatch, tmp_path: Path):
    url = "postgres://someone@db.example:5432/prefloop"
    plain = _settings(monkeypatch, tmp_path, DEBUG="true", DATABASE_URL=url)["DATABASES"]["default"]
    assert plain["OPTIONS"]["options"] == "-c jit=off"
    cleared = _settings(monkeypatch, tmp_path, DEBUG="true", DATABASE_URL=url, PREFLOOP_PG_OPTIONS="")
    assert "options" not in cleared["DATABASES"]["default"].get("OPTIONS", {}), "empty: nothing sent (PgBouncer)"
    own = _settings(monkeypatch, tmp_path, DEBUG="true", DATABASE_URL=url, PREFLOOP_PG_OPTIONS="-c work_mem=64MB")
    assert own["DATABASES"]["default"]["OPTIONS"]["options"] == "-c work_mem=64MB"
    sqlite = _settings(monkeypatch, tmp_path, DEBUG="true", DATABASE_URL="sqlite:///x.db")["DATABASES"]["default"]
    assert "options" not in sqlite["OPTIONS"]


@pytest.mark.skipif(not ON_POSTGRES, reason="a PostgreSQL setting (set DATABASE_URL to postgres://…)")
@pytest.mark.django_db
def test_the_test_runs_own_postgres_session_has_jit_off():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
