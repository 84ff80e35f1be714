"""What the annotate-load runs read besides the clients' own clocks: CPU time
from /proc, the measured window, percentiles, and the model's publications.

CPU is read as cumulative time at the start and the end of the measured window:

- a process group (gunicorn's master and workers, a Celery worker's supervising
  shell, worker and pool): ``utime + stime + cutime + cstime`` of every live
  member (``cutime``/``cstime`` hold the members that exited and were reaped),
  so nothing is counted twice;
- PostgreSQL: the backends connected to the run's database (``pg_stat_activity``);
  a backend that exits inside the window takes its CPU with it, so this is a
  lower bound (the app keeps its connections, ``CONN_MAX_AGE``);
- the load generator (this process, all its client threads): ``os.times()``;
- the machine: busy jiffies of ``/proc/stat`` (everything, other users too).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.reliability.load import LoadSampler, _quantile

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat after the command name (field 3 on), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def group_cpu_seconds(pgids: Iterable[int]) -> float:
    """CPU seconds of every process in the process groups ``pgids`` (see the module docstring)."""
    wanted = set(pgids)
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if fields is None or int(fields[2]) not in wanted:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / CLOCK_TICKS


def pids_cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """Own CPU seconds (utime + stime) of each pid still alive."""
    seconds = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            seconds[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


def self_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine, all cores (not idle, not iowait)."""
    with open("/proc/stat") as stat:
        values = [int(x) for x in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    # guest time is already in user; leave it out of the sum
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def postgres_backend_pids(admin_url: str, database: str) -> list[int]:
    import psycopg  # noqa: PLC0415 - PostgreSQL only

    from benchmarks.postgres import libpq_url  # noqa: PLC0415

    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
    return [row[0] for row in rows]


@dataclass
class CpuProbe:
    """CPU time of the stack's parts, read at the window's start and end."""

    groups: dict[str, list[int]]  # part → process-group ids
    postgres: tuple[str, str] | None = None  # (admin URL, database name)
    _start: dict[str, Any] = field(default_factory=dict)
    _end: dict[str, Any] = field(default_factory=dict)

    def _read(self) -> dict[str, Any]:
        reading: dict[str, Any] = {name: group_cpu_seconds(pgids) for name, pgids in self.groups.items()}
        if self.postgres is not None:
            try:
                reading["database"] = pids_cpu_seconds(postgres_backend_pids(*self.postgres))
            except Exception:
                reading["database"] = None
        reading["load_generator"] = self_cpu_seconds()
        reading["machine"] = machine_busy_seconds()
        return reading

    def start(self) -> None:
        self._start = self._read()

    def end(self) -> None:
        self._end = self._read()

    def seconds(self) -> dict[str, float | None]:
        """CPU seconds each part used in the window (``database`` None on SQLite: it is in the others)."""
        used: dict[str, float | None] = {"database": None}
        for name, after in self._end.items():
            before = self._start.get(name)
            if name == "database":
                if after is None or before is None:
                    used[name] = None
                else:  # a backend that started inside the window counts from zero
                    used[name] = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
            else:
                used[name] = after - before if before is not None else None
        return used


class Window:
    """The measured part of a run: from ``warmup`` seconds after the crowd
    started, for ``seconds``. ``on_start``/``on_end`` run at its edges (CPU
    readings); it notes the wall-clock times (for the database's timestamps)
    and samples the machine's load average meanwhile."""

    def __init__(
        self,
        *,
        warmup: float,
        seconds: float,
        on_start: Callable[[], None],
        on_end: Callable[[], None],
    ) -> None:
        self.warmup, self.seconds = warmup, seconds
        self.on_start, self.on_end = on_start, on_end
        self.wall_start = self.wall_end = 0.0
        self.sampler: LoadSampler | None = None
        self.load_before: tuple[float, float, float] | None = None

    def follow(self, started_at: Callable[[], float]) -> None:
        """Block until the window is over; ``started_at`` is the crowd's start
        (``time.monotonic()``, 0 until it started)."""
        while not started_at():
            time.sleep(0.01)
        origin = started_at()
        self.load_before = os.getloadavg()
        _sleep_until(origin + self.warmup)
        self.on_start()
        self.wall_start = time.time()
        self.sampler = LoadSampler()
        _sleep_until(origin + self.warmup + self.seconds)
        self.wall_end = time.time()
        self.sampler.stop()
        self.on_end()

    def start_thread(self, started_at: Callable[[], float]) -> threading.Thread:
        thread = threading.Thread(target=self.follow, args=(started_at,), name="window", daemon=True)
        thread.start()
        return thread

    def datetimes(self) -> tuple[datetime, datetime]:
        return (datetime.fromtimestamp(self.wall_start, UTC), datetime.fromtimestamp(self.wall_end, UTC))

    def load_average(self) -> dict[str, Any]:
        samples = self.sampler.samples if self.sampler else []
        return {
            "before": [round(x, 2) for x in self.load_before] if self.load_before else None,
            "during_1min_mean": self.sampler.mean() if self.sampler else None,
            "during_1min_max": round(max(samples), 2) if samples else None,
        }


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def quantiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 (nearest rank, as the reliability load section reports them)."""
    ordered = sorted(values)
    return {"p50": _quantile(ordered, 0.50), "p95": _quantile(ordered, 0.95), "p99": _quantile(ordered, 0.99)}


def longest_gap(moments: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] without one of ``moments`` (seconds)."""
    points = [start, *sorted(m for m in moments if start <= m <= end), end]
    return round(max(b - a for a, b in itertools.pairwise(points)), 1)
