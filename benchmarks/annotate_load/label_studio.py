"""Label Studio beside prefloop: the peer side of ``python -m benchmarks.annotate_load``.

The harness that runs Label Studio lives outside the project, in ``../shared/peers/``
(``PREFLOOP_PEERS_DIR`` overrides the folder; ``PREFLOOP_SHARED_DIR/peers`` is tried next, as
for the shared data): ``ls_setup.sh`` installs Label Studio from PyPI into its own venv, starts
it, signs annotators up and creates pairwise projects; ``ls_bench.py`` drives closed-loop
clients through next → submit and prints the figures as JSON. This module never copies that
folder into the project and never edits it: each process copies it to ``/tmp/var-lspeer/peers``
(its README says to run the scripts from a copy) and calls the copy.

How the peer is run
-------------------
- Version: Label Studio **1.23.2** Community (``pip install label-studio==1.23.2`` into
  ``/tmp/ls-venv``, about 1 GB and 2 minutes the first time; ``ls_bench.py`` runs with that venv's
  Python, which has httpx; nothing goes into the project's ``.venv``).
- Server: ``label-studio start --no-browser --internal-host 127.0.0.1 --port 8089
  --enable-legacy-api-token ...`` — Label Studio's own entry point, which migrates and then runs
  Django's threaded ``runserver --noreload`` in that one process. No uwsgi/nginx (its Docker
  image's setup), no Redis, no RQ workers; analytics, the version check and Sentry are off; clients
  authenticate with legacy ``Token`` keys. The first start migrates for about a minute.
- Database: ``sqlite`` is what ``label-studio start`` uses out of the box (data in
  ``/tmp/ls-data``); ``postgres`` is Label Studio's production database, a private PostgreSQL
  cluster of the Debian package in ``/tmp/ls-pg`` on 127.0.0.1:5433 (trust auth,
  ``max_connections=200``), server data in ``/tmp/ls-data-pg``. One server at a time (they share
  the port): asking for the other database stops the running server first; the cluster stays up.
- Data: each run gets a fresh project (Label Studio's pairwise template: a prompt and two
  responses, about 840 characters; ``maximum_annotations=1``; the default Sequential sampling)
  with more tasks than the run can answer (:func:`tasks_for`), and each client is its own
  signed-up user with its own token (16 users at least, more for more clients).
- Endpoints: next is ``POST /api/dm/actions/?id=next_task&project=P`` with body ``{}`` (what Label
  Studio's label-stream UI calls; ``get_next_task`` on the server), submit is
  ``POST /api/tasks/T/annotations/?project=P`` with the body the UI sends (a pairwise result).
- Load: ``ls_bench.py`` — asyncio + httpx, one keep-alive connection per client, zero think time,
  at most ``seconds`` of starting cycles (cycles in flight then finish; cycles/s is over the
  whole elapsed time), a 30 s request timeout, 10 consecutive errors stop a client. It has no
  think time, so the crowd shape (``think_mean_s > 0``) raises :class:`ThinkTimeUnsupported`.
- Checks: ``duplicated`` is the server's count of annotations beyond the first on a task of the
  fresh project (``total_annotations_number − num_tasks_with_annotations``), or the clients' count
  when the server's is missing; ``lost`` is acknowledged submits the project does not hold
  (``max(0, acknowledged − stored)``; null when the count could not be read).
  ``server_cpu_ms_per_cycle`` is the Label Studio process alone (``ls_bench.py`` samples /proc);
  on PostgreSQL ``database_cpu_ms_per_cycle`` adds the cluster's processes.

What differs from prefloop's setup
----------------------------------
prefloop runs under gunicorn with several workers and a Celery worker that retrains a model
during the run; Label Studio runs as it ships for ``label-studio start`` (one process, threads
under the GIL) with no model and no background work. prefloop's PostgreSQL is the shared
cluster on 5432, Label Studio's a private one on 5433 (same Debian package). prefloop chooses the
next comparison with its active-learning queue; Label Studio hands out tasks in import order.
Label Studio's runs have no warm-up window, and only the capacity shape is measured. Both run on
the same host as their clients, so alternate the runs (LS, prefloop, LS, prefloop) and compare
ratios from one sitting.

Interface used by the benchmark: :func:`available`, :func:`run`, :func:`stop_all`. By hand::

    python -m benchmarks.annotate_load.label_studio run --database postgres --clients 16 --seconds 60
    python -m benchmarks.annotate_load.label_studio stop   # whatever runs from this module's folders

Everything lives under /tmp and listens on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LS_VERSION = "1.23.2"
HOST = "127.0.0.1"
PORT = 8089
PG_PORT = 5433
DATABASES = ("sqlite", "postgres")
SERVER = "label-studio start (Django runserver, threaded, one process)"
NEXT_ENDPOINT = "POST /api/dm/actions/?id=next_task&project={pid}"
SUBMIT_ENDPOINT = "POST /api/tasks/{tid}/annotations/?project={pid}"

# Sizing a run's project: more tasks than Label Studio can answer in the time (it reached about
# 6 cycles/s on 2 cores), so a run ends on its time cap, not on an empty project.
TASKS_PER_SECOND_CEILING = 40
MIN_TASKS = 100
MAX_TASKS = 20_000
MIN_USERS = 16  # as in the baseline; more are signed up when a run has more clients
REQUEST_TIMEOUT_S = 30.0  # ls_bench.py's default per-request timeout

# Bounded waits (seconds) for each ls_setup.sh step.
INSTALL_TIMEOUT_S = 900
PG_START_TIMEOUT_S = 120
START_TIMEOUT_S = 420  # ls_setup.sh itself waits at most 300 s for /health; first start migrates for ~60 s
STOP_TIMEOUT_S = 60

# Only these variables reach Label Studio and its scripts: Label Studio reads its settings from the
# environment (LABEL_STUDIO_<X>, HEARTEX_<X> or plain <X>), so prefloop's DATABASE_URL, DEBUG,
# SECRET_KEY or DJANGO_SETTINGS_MODULE in this process must not leak into it.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "TERM")
PASSED_ENV_PREFIXES = ("PIP_",)


class LabelStudioError(RuntimeError):
    """Label Studio could not be installed, started, seeded or measured."""


class ThinkTimeUnsupported(NotImplementedError):
    """ls_bench.py runs closed-loop clients with zero think time only."""


def peers_dir() -> Path:
    """The shared harness folder: PREFLOOP_PEERS_DIR, else PREFLOOP_SHARED_DIR/peers, else ../shared/peers."""
    if os.environ.get("PREFLOOP_PEERS_DIR"):
        return Path(os.environ["PREFLOOP_PEERS_DIR"])
    if os.environ.get("PREFLOOP_SHARED_DIR"):
        return Path(os.environ["PREFLOOP_SHARED_DIR"]) / "peers"
    return ROOT.parent / "shared" / "peers"


def var_dir() -> Path:
    return Path(os.environ.get("PREFLOOP_LS_VAR_DIR") or "/tmp/var-lspeer")


def ls_venv() -> Path:
    return Path(os.environ.get("PREFLOOP_LS_VENV") or "/tmp/ls-venv")


@dataclass(frozen=True)
class Instance:
    """One Label Studio server: its database and where its state lives."""

    database: str

    @property
    def data_dir(self) -> Path:
        return Path("/tmp/ls-data-pg" if self.database == "postgres" else "/tmp/ls-data")

    @property
    def pg_dir(self) -> Path:
        return Path("/tmp/ls-pg")

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "ls.pid"

    @property
    def logfile(self) -> Path:
        return self.data_dir / "ls.log"

    @property
    def env_json(self) -> Path:
        return self.data_dir / "bench_env.json"

    def setup_env(self, **extra: str) -> dict[str, str]:
        """The variables ls_setup.sh reads for this instance (its defaults, spelled out)."""
        return {
            "LS_VENV": str(ls_venv()),
            "LS_DATA": str(self.data_dir),
            "LS_HOST": HOST,
            "LS_PORT": str(PORT),
            "LS_VERSION": LS_VERSION,
            "LS_DB": self.database,
            "LS_PG_DIR": str(self.pg_dir),
            "LS_PG_PORT": str(PG_PORT),
            **extra,
        }


INSTANCES = {name: Instance(name) for name in DATABASES}

# What this process started or reused, for stop_all().
_touched_servers: set[str] = set()
_touched_pg = False
_copied: Path | None = None


# ---------------------------------------------------------------------------------------------
# pure helpers (unit-tested without Label Studio)


def clean_env(extra: dict[str, str] | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for Label Studio's scripts: PATH, locale, pip's settings, and ``extra``."""
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if k in PASSED_ENV or k.startswith(PASSED_ENV_PREFIXES)}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(extra or {})
    return env


def tasks_for(clients: int, seconds: float) -> int:
    """Tasks for one run's fresh project: more than the run can answer."""
    n = math.ceil(seconds * TASKS_PER_SECOND_CEILING) + 2 * clients
    return max(MIN_TASKS, min(MAX_TASKS, n))


def last_json_line(stdout: str) -> dict[str, Any]:
    """The last line of ``stdout`` that is a JSON object (ls_setup.sh's seeding steps print one)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    raise LabelStudioError(f"no JSON object in the output: {stdout.strip()[-300:]!r}")


def parse_project(stdout: str) -> dict[str, Any]:
    """The project record ``ls_setup.sh project`` prints: id, task_count, ..."""
    project = last_json_line(stdout)
    if not isinstance(project.get("id"), int):
        raise LabelStudioError(f"ls_setup.sh project printed no project id: {project!r}")
    return project


def _ms(summary: dict[str, Any] | None, key: str) -> float | None:
    if not summary or not summary.get("n"):
        return None
    return summary.get(key)


def build_record(
    result: dict[str, Any],
    *,
    database: str,
    clients: int,
    command: str,
    think_mean_s: float = 0.0,
    version: str | None = None,
    database_cpu_s: float | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One run record of the annotate-load benchmark from ls_bench.py's JSON output."""
    latency = result.get("latency_ms") or {}
    errors = result.get("errors") or {}
    server = result.get("server_side_after") or {}
    duplicates = result.get("duplicates") or {}
    process = result.get("server_process") or {}
    ok = int(result.get("cycles_ok") or 0)

    stored = server.get("total_annotations_number")
    lost = max(0, ok - stored) if isinstance(stored, int) else None
    duplicated = server.get("extra_annotations_on_same_task")
    if not isinstance(duplicated, int):
        duplicated = duplicates.get("extra_annotations")
    server_version = server.get("server_version")
    if not version and isinstance(server_version, dict) and isinstance(server_version.get("release"), str):
        version = server_version["release"]
    stop_reasons = result.get("stop_reasons") or {}

    record: dict[str, Any] = {
        "system": "label_studio",
        "version": version or LS_VERSION,
        "database": database,
        "loop": "api",
        "shape": "capacity" if not think_mean_s else "crowd",
        "clients": clients,
        "think_mean_s": think_mean_s,
        "cycles_per_second": result.get("cycles_per_s"),
        "cycles_ok": ok,
        "cycles_attempted": result.get("cycles_attempted"),
        "elapsed_s": result.get("elapsed_s"),
    }
    for step in ("cycle", "next", "submit"):
        for p in ("p50", "p95", "p99"):
            record[f"{p}_{step}_ms"] = _ms(latency.get(step), p)
    record.update(
        {
            "errors": int(errors.get("total") or 0),
            "errors_by_kind": dict(errors.get("by_kind") or {}),
            "lost": lost,
            "judgments_stored": stored if isinstance(stored, int) else None,
            "duplicated": duplicated,
            "duplicated_client_side": duplicates.get("extra_annotations"),
            "tasks_served_to_more_than_one_client": duplicates.get("tasks_served_to_more_than_one_client"),
            "server_cpu_ms_per_cycle": process.get("cpu_ms_per_ok_cycle"),
            "database_cpu_ms_per_cycle": (
                round(1000 * database_cpu_s / ok, 1) if database_cpu_s is not None and ok else None
            ),
            "server_peak_rss_mb": process.get("peak_rss_mb_sampled"),
            "host_cpu_busy_pct": (result.get("host") or {}).get("cpu_busy_pct_all_cpus"),
            "stop_reasons": dict(stop_reasons),
            "tasks_exhausted": bool(stop_reasons.get("no_more_tasks")),
            "server_log": result.get("server_log"),
            "server": SERVER,
            "next_endpoint": (result.get("params") or {}).get("next_endpoint", NEXT_ENDPOINT),
            "submit_endpoint": (result.get("params") or {}).get("submit_endpoint", SUBMIT_ENDPOINT),
            "command": command,
        }
    )
    record.update(extra or {})
    return record


# ---------------------------------------------------------------------------------------------
# processes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _server_pid(instance: Instance) -> int | None:
    pid = _read_pid(instance.pidfile)
    return pid if pid is not None and _pid_alive(pid) else None


def _port_open(port: int, host: str = HOST) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def _healthy(timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{PORT}/health", timeout=timeout) as r:  # loopback only
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _copy_of_peers() -> Path:
    """This process's copy of the harness (the README: run them from a copy), made once."""
    global _copied
    if _copied is not None and (_copied / "ls_setup.sh").exists():
        return _copied
    source = peers_dir()
    target = var_dir() / "peers"
    if target.exists():
        target.chmod(0o700)  # the copy keeps the shared folder's read-only modes
        for path in target.rglob("*"):
            with contextlib.suppress(OSError):
                path.chmod(0o700 if path.is_dir() else 0o600)
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    target.chmod(0o755)
    for path in target.iterdir():
        path.chmod(0o755 if path.suffix in (".sh", ".py") else 0o644)
    _copied = target
    return target


def _setup_command(step: str, instance: Instance, **extra: str) -> tuple[list[str], dict[str, str]]:
    return ["bash", str(_copy_of_peers() / "ls_setup.sh"), step], instance.setup_env(**extra)


def _show(cmd: list[str], env: dict[str, str]) -> str:
    """A command line as it could be typed: the ls_setup.sh variables, then the command."""
    prefix = " ".join(
        f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith("LS_") or k == "N_USERS" or k == "N_TASKS"
    )
    return f"{prefix} {shlex.join(cmd)}".strip()


def _run_bounded(cmd: list[str], env: dict[str, str], timeout: float, what: str) -> subprocess.CompletedProcess:
    """Run ``cmd`` in a session of its own; on timeout SIGTERM, then SIGKILL, its whole group."""
    log = var_dir() / "label_studio.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(
        cmd,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=str(var_dir()),
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
            with log.open("a") as f:
                f.write(f"$ {_show(cmd, env)}\n{err}\nTIMED OUT after {timeout:.0f} s\n")
            raise LabelStudioError(
                f"{what}: no result after {timeout:.0f} s ({_show(cmd, env)}); "
                f"last output: {(err or out).strip()[-400:]!r}"
            ) from None
    with log.open("a") as f:
        f.write(f"$ {_show(cmd, env)}\n{err}rc={proc.returncode}\n")
    if proc.returncode != 0:
        raise LabelStudioError(
            f"{what} failed (exit {proc.returncode}): {_show(cmd, env)}\n{(err or out).strip()[-1500:]}"
        )
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _setup(step: str, instance: Instance, timeout: float, **extra: str) -> subprocess.CompletedProcess:
    cmd, env = _setup_command(step, instance, **extra)
    return _run_bounded(cmd, env, timeout, f"ls_setup.sh {step} ({instance.database})")


def _installed() -> bool:
    return (ls_venv() / "bin" / "label-studio").is_file()


def _venv_has_httpx() -> bool:
    python = ls_venv() / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import httpx"], env=clean_env(), capture_output=True, timeout=60, check=False
    )
    return probe.returncode == 0


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parent.parent.name)
    return found[-1].parent if found else None


# ---------------------------------------------------------------------------------------------
# the interface


def available(database: str | None = None) -> str | None:
    """None when Label Studio can be run here (for ``database`` if given), else a one-line reason."""
    peers = peers_dir()
    missing = [name for name in ("ls_setup.sh", "ls_bench.py") if not (peers / name).is_file()]
    if missing:
        return f"no Label Studio harness: {', '.join(missing)} not in {peers} (set PREFLOOP_PEERS_DIR)"
    for tool in ("bash", "curl", "bc"):
        if shutil.which(tool) is None:
            return f"ls_setup.sh needs {tool}, which is not on PATH"
    if not _installed():
        probe = subprocess.run(
            ["python3", "-c", "import venv, ensurepip"], env=clean_env(), capture_output=True, timeout=60, check=False
        )
        if probe.returncode != 0:
            return f"Label Studio is not installed in {ls_venv()} and python3 cannot make a venv to install it"
    if database is not None and database not in DATABASES:
        return f"unknown database {database!r} (one of {', '.join(DATABASES)})"
    if database == "postgres" and _pg_bin() is None:
        return "no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)"
    if _port_open(PORT) and not any(_server_pid(i) for i in INSTANCES.values()):
        return f"{HOST}:{PORT} is taken by a process this module did not start"
    return None


def ensure_installed() -> None:
    """Install Label Studio (``ls_setup.sh install``, ~2 min from PyPI) and make sure its venv has httpx."""
    if not _installed():
        _setup("install", INSTANCES["sqlite"], INSTALL_TIMEOUT_S)
    if not _venv_has_httpx():
        pip = ls_venv() / "bin" / "pip"
        _run_bounded([str(pip), "install", "-q", "httpx"], {}, 300, "pip install httpx into the Label Studio venv")


def _stop_server(instance: Instance) -> None:
    if _server_pid(instance) is not None:
        _setup("stop", instance, STOP_TIMEOUT_S)


def _ensure_server(instance: Instance, users: int) -> tuple[int, list[str]]:
    """A healthy server for ``instance`` with at least ``users`` annotators; (its PID, the setup commands run)."""
    global _touched_pg
    commands: list[str] = []
    for other in INSTANCES.values():
        if other != instance and _server_pid(other) is not None:
            _stop_server(other)
            _touched_servers.discard(other.database)
    pid = _server_pid(instance)
    if pid is not None and not _healthy():
        _stop_server(instance)
        pid = None
    if pid is None:
        if _port_open(PORT):
            raise LabelStudioError(f"{HOST}:{PORT} is taken by a process this module did not start")
        if instance.database == "postgres":
            _touched_pg = True
            cmd, env = _setup_command("pg-start", instance)
            _run_bounded(cmd, env, PG_START_TIMEOUT_S, "ls_setup.sh pg-start")
            commands.append(_show(cmd, env))
        _touched_servers.add(instance.database)
        cmd, env = _setup_command("start", instance)
        _run_bounded(cmd, env, START_TIMEOUT_S, f"ls_setup.sh start ({instance.database})")
        commands.append(_show(cmd, env))
        pid = _server_pid(instance)
        if pid is None:
            raise LabelStudioError(f"Label Studio ({instance.database}) exited after start; see {instance.logfile}")
        _setup("versions", instance, 60)
    else:
        _touched_servers.add(instance.database)
        if instance.database == "postgres":
            _touched_pg = True
    cmd, env = _setup_command("users", instance, N_USERS=str(max(users, MIN_USERS)))
    _run_bounded(cmd, env, 60 + 5 * max(users, MIN_USERS), f"ls_setup.sh users ({instance.database})")
    commands.append(_show(cmd, env))
    return pid, commands


def _pg_cpu_s(instance: Instance) -> float | None:
    """CPU seconds of the private PostgreSQL cluster: postmaster (with its reaped children) and live children."""
    postmaster = _read_pid(instance.pg_dir / "postmaster.pid")
    if postmaster is None or not _pid_alive(postmaster):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def run(*, database: str, clients: int, seconds: float, think_mean_s: float = 0.0) -> dict[str, Any]:
    """One Label Studio run: a fresh project, ``clients`` closed-loop annotators for at most ``seconds``."""
    if database not in DATABASES:
        raise ValueError(f"database must be one of {DATABASES}, not {database!r}")
    if clients < 1 or seconds <= 0:
        raise ValueError("clients must be >= 1 and seconds > 0")
    if think_mean_s:
        raise ThinkTimeUnsupported(
            "ls_bench.py (../shared/peers) runs closed-loop clients with zero think time only; "
            "Label Studio is measured in the capacity shape (think_mean_s=0), not the crowd shape"
        )
    reason = available(database)
    if reason is not None:
        raise LabelStudioError(f"Label Studio cannot run here: {reason}")
    instance = INSTANCES[database]
    ensure_installed()
    server_pid, setup_commands = _ensure_server(instance, clients)

    n_tasks = tasks_for(clients, seconds)
    cmd, env = _setup_command("project", instance, N_TASKS=str(n_tasks))
    project = parse_project(_run_bounded(cmd, env, 120 + n_tasks / 50, f"ls_setup.sh project ({database})").stdout)
    setup_commands.append(_show(cmd, env))

    label = f"label_studio-{database}-c{clients}-{int(time.time())}"
    out = var_dir() / "runs" / f"{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    options = {
        "--env-json": str(instance.env_json),
        "--project-id": str(project["id"]),
        "--concurrency": str(clients),
        "--cycles": str(n_tasks),
        "--max-seconds": f"{seconds:g}",
        "--request-timeout": f"{REQUEST_TIMEOUT_S:g}",
        "--server-pid": str(server_pid),
        "--server-log": str(instance.logfile),
        "--label": label,
        "--out": str(out),
    }
    bench = [str(ls_venv() / "bin" / "python"), str(_copy_of_peers() / "ls_bench.py")]
    bench += [part for pair in options.items() for part in pair]
    load_before = os.getloadavg()
    db_cpu_before = _pg_cpu_s(instance) if database == "postgres" else None
    # In-flight cycles finish after the time cap: up to two request timeouts, plus start and the final count.
    done = _run_bounded_bench(bench, seconds + 2 * REQUEST_TIMEOUT_S + 120)
    db_cpu_after = _pg_cpu_s(instance) if database == "postgres" else None
    load_after = os.getloadavg()
    if not out.exists():
        raise LabelStudioError(f"ls_bench.py wrote no result (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    result = json.loads(out.read_text())
    db_cpu = (db_cpu_after - db_cpu_before) if db_cpu_before is not None and db_cpu_after is not None else None
    return build_record(
        result,
        database=database,
        clients=clients,
        think_mean_s=think_mean_s,
        command=shlex.join(bench),
        database_cpu_s=db_cpu,
        extra={
            "project_id": project["id"],
            "tasks_in_project": project.get("task_count"),
            "setup_commands": setup_commands,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
            "cpus": os.cpu_count(),
            "result_file": str(out),
            "bench_exit": done.returncode,
        },
    )


def _run_bounded_bench(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """ls_bench.py exits 1 when no cycle succeeded; the JSON it wrote still describes the run."""
    try:
        return _run_bounded(cmd, {}, timeout, "ls_bench.py")
    except LabelStudioError as e:
        if "failed (exit 1)" in str(e):
            return subprocess.CompletedProcess(cmd, 1, "", str(e))
        raise


def stop_all() -> None:
    """Stop every Label Studio server and the PostgreSQL cluster this process started or reused (by PID)."""
    global _touched_pg
    problems = []
    for name in sorted(_touched_servers):
        try:
            _stop_server(INSTANCES[name])
        except LabelStudioError as e:
            problems.append(str(e))
    _touched_servers.clear()
    if _touched_pg:
        instance = INSTANCES["postgres"]
        if _read_pid(instance.pg_dir / "postmaster.pid") is not None:
            try:
                _setup("pg-stop", instance, STOP_TIMEOUT_S)
            except LabelStudioError as e:
                problems.append(str(e))
        _touched_pg = False
    if problems:
        raise LabelStudioError("; ".join(problems))


def _stop_everything() -> None:
    """The CLI's ``stop``: whatever runs from this module's data folders, whichever process started it."""
    global _touched_pg
    _touched_servers.update(i.database for i in INSTANCES.values() if _server_pid(i) is not None)
    _touched_pg = True
    stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.annotate_load.label_studio",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("available", help="say whether Label Studio can run here")
    one = sub.add_parser("run", help="one run; prints its record as JSON (the server is left running)")
    one.add_argument("--database", choices=DATABASES, default="sqlite")
    one.add_argument("--clients", type=int, default=16)
    one.add_argument("--seconds", type=float, default=60)
    one.add_argument("--stop", action="store_true", help="stop what was started afterwards")
    sub.add_parser("stop", help="stop the Label Studio servers and the PostgreSQL cluster in this module's folders")
    args = parser.parse_args(argv)
    if args.command == "available":
        reason = available()
        print(reason or "available")
        return 0 if reason is None else 1
    if args.command == "stop":
        _stop_everything()
        return 0
    try:
        print(json.dumps(run(database=args.database, clients=args.clients, seconds=args.seconds), indent=1))
    finally:
        if args.stop:
            stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
