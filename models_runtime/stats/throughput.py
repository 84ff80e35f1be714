"""An annotator's pace from the times of their judgments: active time, judgments per
active hour and median time on task."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

__all__ = ["IDLE_GAP_SECONDS", "throughput"]

# Two judgments by one annotator further apart than this belong to different
# working sessions; the gap is not counted as time at work.
IDLE_GAP_SECONDS = 600.0


def throughput(
    times: Sequence[datetime], task_ms: Sequence[int | None], *, idle_gap: float = IDLE_GAP_SECONDS
) -> tuple[float, float | None, float | None]:
    """(active seconds, judgments per active hour, median seconds on task) of one annotator.

    Active time is the sum of gaps between consecutive judgments that are at
    most ``idle_gap`` long, plus the time on task of each session's first
    judgment (the work before it that no earlier judgment brackets). Judgments
    per hour is undefined (None) without any active time.
    """
    order = sorted(range(len(times)), key=lambda i: times[i])
    active = 0.0
    previous: datetime | None = None
    for i in order:
        gap = None if previous is None else (times[i] - previous).total_seconds()
        if gap is not None and gap <= idle_gap:
            active += gap
        else:
            active += (task_ms[i] or 0) / 1000.0
        previous = times[i]
    known = [ms for ms in task_ms if ms is not None]
    median = float(np.median(known)) / 1000.0 if known else None
    return active, (len(times) * 3600.0 / active if active > 0 else None), median
