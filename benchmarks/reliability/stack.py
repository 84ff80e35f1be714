"""The app as deployed, on 127.0.0.1, for one benchmark section.

A :class:`Stack` creates a throwaway database (PostgreSQL by default, or
SQLite, the embedded default), points this process's Django at it with
production settings (DEBUG off), and starts Celery workers, beat and gunicorn
as separate processes, each in its own process group so a fault can SIGKILL a
worker with its pool children. Everything is stopped and the database dropped
on exit. Each section runs in a process of its own (see ``cli``), because
Django reads its settings once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from benchmarks.postgres import drop_database, recreate_database

ROOT = Path(__file__).resolve().parents[2]
ADMIN_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
BROKER_URL = "redis://127.0.0.1:6379/13"
QUEUES = ("train", "select", "default", "embed")


class Stack:
    """Database, settings and processes for one section; a context manager."""

    def __init__(
        self,
        name: str,
        *,
        database: str = "postgres",
        broker: str = BROKER_URL,
        admin_database_url: str = ADMIN_DATABASE_URL,
        settings: dict[str, str] | None = None,
        db_name: str | None = None,
    ) -> None:
        self.name = name
        self.database = database
        self.admin_database_url = admin_database_url
        self.work = Path(tempfile.mkdtemp(prefix=f"prefloop-{name}-"))
        self.processes: list[subprocess.Popen] = []
        self.web_processes: list[subprocess.Popen] = []  # gunicorn masters, by web()
        base = admin_database_url.rsplit("/", 1)[0]
        self.db_name = db_name or f"prefloop_bench_{name}"
        self.env = {
            "DATABASE_URL": (
                f"{base}/{self.db_name}" if database == "postgres" else f"sqlite:///{self.work / 'db.sqlite3'}"
            ),
            "DEBUG": "false",
            "SECRET_KEY": "reliability-benchmark-only-key-4f9c1e7b2a6d8035c9e1f4a7b2d6c8e0",
            "PREFLOOP_HTTPS": "false",
            "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "PREFLOOP_VAR_DIR": str(self.work / "var"),
            "MEDIA_ROOT": str(self.work / "media"),
            "STATIC_ROOT": str(self.work / "static"),
            "CELERY_BROKER_URL": broker,
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            **(settings or {}),
        }

    def __enter__(self) -> Stack:
        # A SIGTERM (timeout, CI cancelling) unwinds through __exit__: the
        # processes, each in a session of its own, would outlive this one.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        os.environ.update(self.env)
        if self.database == "postgres":
            recreate_database(self.admin_database_url, self.db_name)
        # collectstatic first: with DEBUG off the URL configuration asks the manifest for the favicon.
        for command in (["collectstatic", "--noinput"], ["migrate", "--noinput"]):
            subprocess.run([sys.executable, "manage.py", *command, "-v0"], cwd=ROOT, check=True)
        import django  # noqa: PLC0415 - settings come from the environment set above

        django.setup()
        self.purge_broker()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for process in self.processes:
            self.kill(process, signal.SIGTERM)
        from django.db import connections  # noqa: PLC0415

        connections.close_all()
        if self.database == "postgres":
            drop_database(self.admin_database_url, self.db_name)

    # --- processes ----------------------------------------------------------------

    def spawn(
        self, command: list[str], log_name: str, *, restart: bool = False, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """Start ``python -m <command>`` in a process group of its own, with
        ``env`` over the stack's environment (a host's own settings). With
        ``restart``, a shell loop starts it again whenever it exits, as docker's
        ``restart: unless-stopped`` and scripts/run do (a Celery worker exits
        when it loses the broker while restoring unacknowledged messages); a
        kill of the group stops loop and process together."""
        log = open(self.work / f"{log_name}.log", "w")  # noqa: SIM115 - the process owns it until it ends
        argv = [sys.executable, "-m", *command]
        if restart:
            argv = ["sh", "-c", 'while :; do "$@"; echo "exited ($?); restarting"; sleep 1; done', "supervise", *argv]
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill takes the pool children too
            env={**os.environ, **(env or {})},
        )
        self.processes.append(process)
        return process

    def worker(
        self,
        name: str,
        queues: tuple[str, ...] = QUEUES,
        concurrency: int = 1,
        *,
        restart: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen:
        """A Celery worker (``name`` is its node name and log file), restarted
        when it exits as its deployments restart it (unless ``restart`` is
        false: a host that is gone stays gone)."""
        return self.spawn(
            ["celery", "-A", "webapp", "worker", "-n", f"{name}@%h", "-Q", ",".join(queues),
             "--concurrency", str(concurrency), "--loglevel", "INFO"],
            name,
            restart=restart,
            env=env,
        )  # fmt: skip

    def beat(self, *, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Celery beat: the loop's sweep."""
        schedule = self.work / "celerybeat-schedule"
        command = ["celery", "-A", "webapp", "beat", "--schedule", str(schedule), "--loglevel", "INFO"]
        return self.spawn(command, "beat", env=env)

    def web(
        self,
        workers: int = 2,
        threads: int = 4,
        *,
        env: dict[str, str] | None = None,
        options: Sequence[str] | None = None,
    ) -> str:
        """gunicorn on a free port; its base URL once it answers. ``options``
        (gunicorn's command-line options, e.g. a deployment's) replace
        ``--workers``/``--threads``; the process is kept in ``web_processes``."""
        port = free_port()
        chosen = list(options) if options is not None else ["--workers", str(workers), "--threads", str(threads)]
        process = self.spawn(
            ["gunicorn", "webapp.wsgi", "-b", f"127.0.0.1:{port}", *chosen, "--log-level", "warning"],
            f"web-{port}",
            env=env,
        )  # fmt: skip
        self.web_processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url + "/accounts/login/"), 60, "gunicorn")
        return url

    def kill(self, process: subprocess.Popen, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the process's whole group and wait until every member
        is gone, SIGKILLing what is left after 20 s. Waiting for the leader alone
        is not enough: a supervising shell dies at once while its Celery worker,
        in a warm shutdown stuck on a task, lived on (one outlived CI by an hour)."""
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        if not wait_for(lambda: _group_gone(process), 20, f"process group {process.pid} to exit", poll=0.1):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            wait_for(lambda: _group_gone(process), 20, f"process group {process.pid} to die", poll=0.1)

    def purge_broker(self) -> None:
        from webapp.celery import app  # noqa: PLC0415

        with app.connection_for_write() as conn:
            for queue in QUEUES:
                # A queue never declared has nothing to purge.
                with contextlib.suppress(Exception):
                    conn.default_channel.queue_purge(queue)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    print(f"timed out waiting for {what}", file=sys.stderr)
    return False


def _group_gone(process: subprocess.Popen) -> bool:
    """Whether no process of ``process``'s group is left (the leader reaped)."""
    process.poll()
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return True
    return False


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except OSError:
        return False


class ModuleFailed(SystemExit):
    """A section (or one of its parts) that exited non-zero or wrote no figures.
    A ``SystemExit``, as the sections' other failures are: uncaught, it ends the
    parent with its message; the CLI catches it and goes on to the next section."""


def run_module_json(module: str, args: Sequence[str] = (), *, short: bool) -> dict[str, Any]:
    """Run ``python -m <module> <args> --json-out FILE`` (and ``--short``) from
    the repository root in a process of its own, and return the JSON it wrote.

    Sections and their parts each get a process because Django reads its
    settings once per process and each part needs its own (database, broker,
    shorter leases). The child's output goes to this process's stdout and
    stderr, so its progress and logs' paths stay visible. Raises
    :class:`ModuleFailed` when it exits non-zero or writes no file."""
    with tempfile.TemporaryDirectory(prefix="prefloop-figures-") as tmp:
        path = Path(tmp) / "figures.json"
        command = [sys.executable, "-m", module, *args, "--json-out", str(path)] + (["--short"] if short else [])
        status = subprocess.run(command, cwd=ROOT).returncode
        if status != 0 or not path.exists():
            shown = " ".join([module, *args] + (["--short"] if short else []))
            raise ModuleFailed(f"{shown} failed (exit {status}{'' if path.exists() else ', no figures written'})")
        return json.loads(path.read_text())
