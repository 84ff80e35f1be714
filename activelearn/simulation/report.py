"""The JSON-ready report of a simulation run (what ``manage.py simulate_annotators``
prints and records as a ``SimulationRun``)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

import numpy as np

from activelearn.simulation.annotator import AnnotatorStats, SimulationConfig
from activelearn.simulation.utilities import HiddenUtilities
from annotation.models import Judgment


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Count, median, 95th percentile, mean and maximum of ``values`` (rounded to 0.1)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "mean": None, "max": None}
    arr = np.asarray(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50)), 1),
        "p95": round(float(np.percentile(arr, 95)), 1),
        "mean": round(float(arr.mean()), 1),
        "max": round(float(arr.max()), 1),
    }


def simulation_report(
    *,
    config: SimulationConfig,
    study_id: int,
    utilities: HiddenUtilities,
    stats: list[AnnotatorStats],
    checkpoints: list[dict[str, Any]],
    versions: list[dict],
    started_at: datetime,
    wall: float,
) -> dict[str, Any]:
    """The run's report: its configuration and utilities, totals (checked against the
    judgments in the database), one row per annotator, the regret checkpoints and the
    model versions published and seen."""
    served_by: Counter = Counter()
    for s in stats:
        served_by.update(s.served_by)
    return {
        "config": {
            "url": config.base_url,
            "study": config.slug,
            "annotators": len(stats),
            "judgments": config.judgments,
            "scale": config.scale,
            "flip": config.flip,
            "position_bias": config.position_bias,
            "seed": config.seed,
            "think_ms": config.think_ms,
            "checkpoint_every": config.checkpoint_every,
        },
        "utility": {
            "kind": utilities.kind,
            "embedder_key": utilities.embedder_key,
            "candidates": len(utilities.candidate_ids),
            "prompts": len(np.unique(utilities.groups)),
            "note": utilities.note,
        },
        "started_at": started_at.isoformat(),
        "wall_seconds": round(wall, 2),
        "totals": _totals(stats, study_id=study_id, started_at=started_at, wall=wall),
        "annotators": [_annotator_row(s) for s in stats],
        "checkpoints": checkpoints,
        "model_versions_published": versions,
        "model_versions_seen": sorted({c["model_version"] for c in checkpoints if c["model_version"]}),
        "served_by": dict(sorted(served_by.items(), key=lambda kv: -kv[1])),
    }


def _totals(stats: list[AnnotatorStats], *, study_id: int, started_at: datetime, wall: float) -> dict[str, Any]:
    usernames = [s.username for s in stats]
    in_db = Judgment.objects.filter(study_id=study_id, annotator__username__in=usernames, created_at__gte=started_at)
    submitted = sum(s.judgments for s in stats)
    return {
        "judgments_submitted": submitted,
        "judgments_in_db": in_db.count(),
        "distinct_comparisons_in_db": in_db.values("comparison_id").distinct().count(),
        "repeat_served": sum(s.repeat_served for s in stats),
        "empty_queue": sum(s.empty_queue for s in stats),
        "empty_wait_s": round(sum(s.empty_wait_s for s in stats), 2),
        "errors": sum(s.errors for s in stats),
        "refused": sum(s.refused for s in stats),
        "agree_with_utility": round(sum(s.agree_with_utility for s in stats) / submitted, 4) if submitted else None,
        "judgments_per_second": round(submitted / wall, 2) if wall > 0 else None,
        "submit_latency_ms": percentiles([x for s in stats for x in s.latencies_ms]),
    }


def _annotator_row(stats: AnnotatorStats) -> dict[str, Any]:
    return {
        "username": stats.username,
        "judgments": stats.judgments,
        "empty_queue": stats.empty_queue,
        "errors": stats.errors,
        "refused": stats.refused,
        "repeat_served": stats.repeat_served,
        "submit_latency_ms": percentiles(stats.latencies_ms),
        "stopped": stats.stopped,
    }


def report_json(report: dict[str, Any]) -> str:
    """The report as indented JSON (dates and other strays as strings)."""
    return json.dumps(report, indent=2, default=str)
