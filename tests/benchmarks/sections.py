"""Running a reliability section's short form from a test (tests/benchmarks/test_reliability_*.py).

Each section starts its own stack (a throwaway database, Celery workers, gunicorn
on 127.0.0.1) in a process of its own; most need the PostgreSQL server and Redis
that CI provides (DATABASE_URL set to postgres://…, see .ci/run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))

needs_postgres = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="the section needs the PostgreSQL server and Redis CI provides (set DATABASE_URL to postgres://…)",
)


def run_short(module: str, out: Path, *, timeout: float = 600) -> dict[str, Any]:
    """``python -m benchmarks.reliability.<module> --short`` and the figures it
    wrote; a non-zero exit fails the test with the end of its output. The
    timeout only stops a hung run from holding CI: the asserts are on outcomes."""
    command = [sys.executable, "-m", f"benchmarks.reliability.{module}", "--short", "--json-out", str(out)]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return json.loads(out.read_text())
