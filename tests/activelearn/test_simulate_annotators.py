"""Simulated annotators answer through the real pages of a live server.

The command logs its sim users in over HTTP, answers with htmx posts and
reports; these tests check that what it reports is what landed in the
database. The loop's retrain and refill triggers are stubbed (tests/conftest.py),
so the queue is the one the factory filled, topped up synchronously by the web
process if it ever ran dry.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import call_command

from annotation.models import Candidate, Judgment, Membership
from models_runtime.simulate import hash_utilities
from tests.factories import study_with_queue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sim_study():
    """4 prompts × 4 candidates: 24 queued pairs, more than the run needs."""
    return study_with_queue(n_prompts=4, n_candidates=4, budget=100, queue_target=24)


def test_two_annotators_land_every_judgment_once_and_follow_their_utilities(live_server, sim_study, tmp_path):
    report_path = tmp_path / "report.json"
    call_command(
        "simulate_annotators",
        "--url", live_server.url,
        "--study", sim_study.slug,
        "--annotators", "2",
        "--judgments", "10",
        "--utility", "hash",
        "--scale", "1000",
        "--think-ms", "0",
        "--checkpoint-every", "5",
        "--seed", "7",
        "--report", str(report_path),
    )  # fmt: skip

    judgments = list(Judgment.objects.filter(study=sim_study).values("comparison_id", "annotator__username", "ranking"))
    assert len(judgments) == 10
    # No double submits: every judgment is on its own comparison (overlap is 1).
    assert len({j["comparison_id"] for j in judgments}) == 10
    assert {j["annotator__username"] for j in judgments} == {"sim1", "sim2"}
    assert Membership.objects.filter(study=sim_study, user__username__in=["sim1", "sim2"]).count() == 2

    # At scale 1000 a Bradley–Terry annotator picks the higher hidden utility.
    rows = list(Candidate.objects.filter(study=sim_study).order_by("id").values_list("id", "prompt_id"))
    ids = np.array([c for c, _ in rows])
    utility = dict(zip(ids.tolist(), hash_utilities(ids, np.array([p for _, p in rows]), seed=7), strict=True))
    assert all(utility[j["ranking"][0]] > utility[j["ranking"][1]] for j in judgments)

    report = json.loads(report_path.read_text())
    totals = report["totals"]
    assert totals["judgments_submitted"] == totals["judgments_in_db"] == 10
    assert totals["distinct_comparisons_in_db"] == 10
    assert totals["repeat_served"] == 0
    assert totals["empty_queue"] == 0
    assert totals["errors"] == totals["refused"] == 0
    assert totals["agree_with_utility"] == 1.0
    assert totals["submit_latency_ms"]["n"] == 10
    assert totals["submit_latency_ms"]["p50"] <= totals["submit_latency_ms"]["p95"]
    assert [a["username"] for a in report["annotators"]] == ["sim1", "sim2"]
    assert sum(a["judgments"] for a in report["annotators"]) == 10
    assert all(a["stopped"] == "run budget spent" for a in report["annotators"])
    # No model is trained here: every checkpoint is the random-pick regret of 1.
    assert [c["judgments"] for c in report["checkpoints"]] == [0, 5, 10]
    assert all(c["model_version"] is None and c["regret"] == pytest.approx(1.0) for c in report["checkpoints"])
    assert report["model_versions_published"] == [] and report["model_versions_seen"] == []
    assert report["served_by"] == {"random": 10}
    assert report["utility"]["kind"] == "hash" and report["utility"]["candidates"] == 16


def test_an_empty_queue_is_counted_and_the_annotator_gives_up(live_server, tmp_path):
    """With every pair answered and budget left, the page says nothing is waiting."""
    study = study_with_queue(n_prompts=1, n_candidates=3, budget=100)  # 3 pairs only
    report_path = tmp_path / "report.json"
    call_command(
        "simulate_annotators",
        "--url", live_server.url,
        "--study", study.slug,
        "--annotators", "1",
        "--judgments", "5",
        "--utility", "hash",
        "--think-ms", "0",
        "--max-starve", "0.4",
        "--report", str(report_path),
    )  # fmt: skip

    report = json.loads(report_path.read_text())
    assert Judgment.objects.filter(study=study).count() == 3
    assert report["totals"]["judgments_in_db"] == 3
    assert report["totals"]["empty_queue"] >= 1
    assert report["annotators"][0]["stopped"].startswith("queue empty")
