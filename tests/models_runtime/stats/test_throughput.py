"""An annotator's pace: active time inside working sessions only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models_runtime.stats.throughput import throughput


def test_throughput_counts_work_inside_sessions_only():
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    times = [t0, t0 + timedelta(seconds=30), t0 + timedelta(seconds=60), t0 + timedelta(hours=3)]
    active, per_hour, median = throughput(times, [20_000, 25_000, 30_000, 40_000])
    # 20 s before the first, two 30 s gaps, the 3 h pause skipped, 40 s for the last.
    assert active == pytest.approx(20 + 30 + 30 + 40)
    assert per_hour == pytest.approx(4 * 3600 / 120)
    assert median == pytest.approx(27.5)
    assert throughput([t0], [None]) == (0.0, None, None)


def test_throughput_sorts_judgments_by_time_and_ignores_unknown_times_on_task():
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    times = [t0 + timedelta(seconds=90), t0, t0 + timedelta(seconds=40)]
    active, per_hour, median = throughput(times, [None, 10_000, 6_000])
    # Sorted: 10 s before the first, then gaps of 40 s and 50 s.
    assert active == pytest.approx(10 + 40 + 50)
    assert per_hour == pytest.approx(3 * 3600 / 100)
    assert median == pytest.approx(8.0)
