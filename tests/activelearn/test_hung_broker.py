"""A broker that stops answering without closing its connections (a stopped
host, a failover, a firewall dropping packets) must not hold a request for
ever: a send gives up after ``PREFLOOP_BROKER_TIMEOUT_SECONDS`` and the caller
goes on (``activelearn.triggers`` gives the claim back; the sweep asks again).

Against a real redis-server of the test's own, stopped with SIGSTOP after the
first send: its sockets stay open and nothing answers. Before the timeout was
set, the second send waited for ever.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

SCRIPT = """
import os, signal, time
from activelearn import tasks
tasks.loop_sweep.delay()  # connected and sent while the broker answers
os.kill(int(os.environ["BROKER_PID"]), signal.SIGSTOP)
began = time.monotonic()
try:
    tasks.loop_sweep.delay()
    print("sent")
except Exception as exc:
    print(f"raised {type(exc).__name__} after {time.monotonic() - began:.1f} s")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_a_send_to_a_broker_that_stopped_answering_gives_up(tmp_path: Path):
    port = _free_port()
    broker = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while not _pong(port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        env = {
            **os.environ,
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "PREFLOOP_BROKER_TIMEOUT_SECONDS": "1",
            "PREFLOOP_VAR_DIR": str(tmp_path),
            "BROKER_PID": str(broker.pid),
        }
        try:
            result = subprocess.run(
                [sys.executable, "manage.py", "shell", "-c", SCRIPT],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,  # generous: the send gives up after about 2 × 1 s
            )
        except subprocess.TimeoutExpired:
            pytest.fail("the send to a broker that stopped answering waited for ever")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip().splitlines()[-1].startswith("raised "), result.stdout + result.stderr
    finally:
        os.kill(broker.pid, signal.SIGCONT)
        broker.kill()
        broker.wait()
