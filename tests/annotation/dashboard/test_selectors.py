"""The study page and its live dashboard partial, through the real views: what they
show, a fixed number of queries whatever the study's size, and no torch in the web
process that renders them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection
from django.urls import reverse

from annotation.dashboard import selectors as dashboard
from annotation.models import Candidate, Judgment, Membership, RewardModelVersion
from models_runtime.recommend import POSTERIOR_METHOD
from tests.annotation.dashboard.test_analytics import _populate
from tests.annotation.test_views import HTMX
from tests.factories import study_with_queue

REPO = Path(__file__).resolve().parents[3]

# The partial: session and user (2), the study with the researcher's role (1),
# the dashboard's own reads (strategies, live leases, judgment fingerprint,
# annotators, a page of model versions with their total, the live version with
# its recommendation, the versions whose checkpoints are on disk, its best
# responses: 8), annotator quality (4), and the analytics that are not
# cached (per hour, learning curve, regret: 3). The judgment-derived figures
# add four when the cache is cold (leaderboard 2, agreement 1, pace 1).
PARTIAL_WARM = 18
PARTIAL_COLD = PARTIAL_WARM + 4
# The page renders the same dashboard inside the full layout, plus the
# candidates' embedding progress (1), whether any prompt is a conversation,
# which picks the DPO and the SFT exports' default forms (asked by each: 2), and the generation card's
# sources and recent runs (2), the AI-judges card's judges (1: a study
# without judges needs nothing more), whether it optimises prompts (1) and its
# webhooks (1: a study without any needs no query for deliveries).
PAGE_COLD = PARTIAL_COLD + 8


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def _recommend(study) -> None:
    """Give the newest model version a recommendation over every prompt, so the
    best-response table (one query) is filled."""
    prompts: dict[int, list[int]] = {}
    for cid, prompt_id in Candidate.objects.filter(study=study).order_by("id").values_list("id", "prompt_id"):
        prompts.setdefault(prompt_id, []).append(cid)
    entry = {"p_best": 0.6, "mean": 0.3, "std": 0.2}
    recommendation = {
        "method": "laplace",
        "prompts": {
            str(p): {"best": ids[0], "leaderboard": [{**entry, "candidate": c} for c in ids[:2]]}
            for p, ids in prompts.items()
        },
    }
    newest = RewardModelVersion.objects.filter(study=study).order_by("-version").first()
    RewardModelVersion.objects.filter(id=newest.id).update(recommendation=recommendation)


def _sized_study(size: str, make_member):
    """A small study, or one larger in every dimension the dashboard reads: prompts,
    comparisons, annotators, judgments, more model versions and prompts than it
    shows, simulation runs."""
    if size == "small":
        study = study_with_queue(n_prompts=2, n_candidates=3, overlap=2)
        _populate(study, annotators=2, versions=1, runs=1, make_member=make_member)
    else:
        study = study_with_queue(n_prompts=12, n_candidates=4, overlap=3, queue_target=80, budget=1000)
        _populate(study, annotators=5, versions=dashboard.MODEL_VERSIONS_SHOWN + 5, runs=3, make_member=make_member)
    _recommend(study)
    return study, make_member(study, Membership.Role.RESEARCHER)


@pytest.mark.django_db
@pytest.mark.parametrize("size", ["small", "large"])
def test_dashboard_partial_runs_a_fixed_number_of_queries_whatever_the_study_size(
    size, client_for, make_member, django_assert_num_queries
):
    study, researcher = _sized_study(size, make_member)
    judgments = Judgment.objects.filter(study=study).count()
    assert judgments == (12 if size == "small" else 12 * 6 * 3)
    client, url = client_for(researcher), reverse("study_dashboard", args=[study.slug])
    with django_assert_num_queries(PARTIAL_COLD):
        cold = client.get(url, **HTMX)
    with django_assert_num_queries(PARTIAL_WARM):
        warm = client.get(url, **HTMX)
    assert cold.status_code == warm.status_code == 200
    html = warm.content.decode()
    assert f'data-stat="judgments">{judgments} <' in html
    if size == "large":
        shown = dashboard.MODEL_VERSIONS_SHOWN
        pages = -(-(shown + 5) // shown)
        assert f"(page 1 of {pages}, {shown + 5} versions)" in html
        assert html.count("<td>v") == shown
        assert f"First {dashboard.LEADERBOARD_PROMPTS} of 12 prompts" in html


@pytest.mark.django_db
@pytest.mark.parametrize("size", ["small", "large"])
def test_study_page_runs_a_fixed_number_of_queries_whatever_the_study_size(
    size, client_for, make_member, django_assert_num_queries
):
    study, researcher = _sized_study(size, make_member)
    client, url = client_for(researcher), reverse("study_detail", args=[study.slug])
    with django_assert_num_queries(PAGE_COLD):
        response = client.get(url)
    assert response.status_code == 200
    assert 'id="dashboard"' in response.content.decode()


@pytest.mark.django_db
def test_dashboard_shows_charts_and_numbers(client_for, make_member):
    study = study_with_queue(n_prompts=3, n_candidates=3, overlap=2, gold_rate=0.0)
    researcher = make_member(study, Membership.Role.RESEARCHER)
    _populate(study, annotators=2, versions=3, runs=1, make_member=make_member)
    html = client_for(researcher).get(reverse("study_dashboard", args=[study.slug]), **HTMX).content.decode()
    assert html.count('role="img"') == 4
    for chart in ("chart-per-hour", "chart-learning-curve", "chart-leaderboard", "chart-regret"):
        assert f'id="{chart}"' in html
    # Key numbers in the accessible labels and on the page.
    assert "18 in all, 18 in the last 60 minutes" in html
    assert "latest v3: 62.0% (95% interval 45.0% to 77.0%, 30 evaluation judgments) after 30 training judgments" in html
    assert 'data-stat="heldout-accuracy">62% (95% CI 45%–77%, n = 30 evaluation judgments never trained on)<' in html
    assert "3 checkpoints; 0.200 after 40 judgments" in html
    assert 'data-stat="krippendorff-alpha">1.00<' in html
    assert 'data-stat="judgments-this-hour">18<' in html
    assert "9 candidate pairs judged by two or more of 2 annotators" in html
    for source in ("alpha", "beta", "gamma"):
        assert f"<td>{source}</td>" in html
    assert "P(best)" in html and "95% interval" in html
    assert ">Median time<" in html and ">Per hour<" in html and ">Reliability · weight<" in html


@pytest.mark.django_db
def test_dashboard_without_data_says_so(client_for, researcher, study):
    html = client_for(researcher).get(reverse("study_dashboard", args=[study.slug]), **HTMX).content.decode()
    assert "No data yet." in html  # learning curve
    assert "No comparison has two judgments yet: set the study's overlap to 2 or more" in html
    assert "No judgments between responses of two different models yet" in html
    assert 'id="chart-regret"' not in html


# Runs in a fresh interpreter against the test database (committed: transactional_db).
_RENDER_IN_A_WEB_PROCESS = """
import sys
import django
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

settings.ALLOWED_HOSTS = ["testserver"]
client = Client()
client.force_login(get_user_model().objects.get(pk=int(sys.argv[1])))
page = client.get(reverse("study_detail", args=[sys.argv[2]]))
partial = client.get(reverse("study_dashboard", args=[sys.argv[2]]), HTTP_HX_REQUEST="true")
for response in (page, partial):
    assert response.status_code == 200, response.status_code
    assert b"chart-leaderboard" in response.content
print(",".join(m for m in ("torch", "transformers", "scipy", "sklearn") if m in sys.modules))
"""


def _test_database_url() -> str:
    """The test database as a DATABASE_URL, for a second process (SQLite or PostgreSQL)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_rendering_the_dashboard_never_imports_torch(transactional_db, make_member):
    study = study_with_queue(n_prompts=3, n_candidates=3, overlap=2)
    _populate(study, annotators=2, versions=2, runs=1, make_member=make_member)
    researcher = make_member(study, Membership.Role.RESEARCHER)
    proc = subprocess.run(
        [sys.executable, "-c", _RENDER_IN_A_WEB_PROCESS, str(researcher.pk), study.slug],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": _test_database_url()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "", f"the dashboard's web process imported {proc.stdout.strip()}"


@pytest.mark.django_db
def test_best_responses_show_a_share_of_annotators_with_its_interval_and_flag_uncalibrated_versions(
    client_for, make_member
):
    """The issue saw "P(best) 98% ± 54": a utility's ± had no unit. The table shows
    how many annotators would prefer the best response to the runner-up, with a 95%
    interval, and says when a stored version used the old, overconfident posterior."""
    study = study_with_queue(n_prompts=2, n_candidates=3)
    researcher = make_member(study, Membership.Role.RESEARCHER)
    _populate(study, annotators=1, versions=1, runs=0, make_member=make_member)
    _recommend(study)
    newest = RewardModelVersion.objects.filter(study=study).order_by("-version").first()
    recommendation = newest.recommendation
    recommendation["method"] = POSTERIOR_METHOD
    for entry in recommendation["prompts"].values():
        entry["runner_up"] = {
            "candidate": entry["leaderboard"][1]["candidate"],
            "preferred": 0.64,
            "low": 0.41,
            "high": 0.83,
        }
    RewardModelVersion.objects.filter(id=newest.id).update(recommendation=recommendation)
    url = reverse("study_dashboard", args=[study.slug])
    html = client_for(researcher).get(url, **HTMX).content.decode()
    assert "Preferred to runner-up (95% interval)" in html
    assert "64 % (41 % to 83 %)" in html
    assert " ± " not in html
    assert "stays near chance" in html and "older method" not in html

    recommendation["method"] = "last-layer Laplace"
    RewardModelVersion.objects.filter(id=newest.id).update(recommendation=recommendation)
    cache.clear()
    html = client_for(researcher).get(url, **HTMX).content.decode()
    assert "older method that overstated its confidence" in html


def test_a_version_without_figures_says_why_whatever_the_count():
    """Too few evaluation judgments, or enough but none naming a winner (all ties):
    the reason shown must match the count, never "needs 20, has 30"."""
    from datetime import UTC, datetime

    from annotation.dashboard.selectors import ModelVersionRow
    from annotation.models import EVALUATION_MIN_JUDGMENTS

    def row(n: int) -> ModelVersionRow:
        return ModelVersionRow(
            version=1, model_type="mlp", n_judgments=n, n_train=0, n_heldout=n,
            heldout_accuracy=None, heldout_accuracy_low=None, heldout_accuracy_high=None,
            heldout_log_loss=None, heldout_log_loss_low=None, heldout_log_loss_high=None,
            fixed_evaluation=True, train_seconds=0.0, device="cpu",
            created_at=datetime(2026, 1, 1, tzinfo=UTC), pruned_at=None, metrics={},
        )  # fmt: skip

    few = EVALUATION_MIN_JUDGMENTS - 1
    assert row(few).heldout_accuracy_text == f"— (needs {EVALUATION_MIN_JUDGMENTS} evaluation judgments, has {few})"
    many = EVALUATION_MIN_JUDGMENTS + 10
    assert row(many).heldout_accuracy_text == f"— (none of its {many} evaluation judgments names a winner)"
