"""List pages and list endpoints read a fixed number of queries, however long the list.

Each is measured on a small and a large study (or set of studies): the counts must be
equal, and equal to the number written here, so an N+1 query shows up as a failure.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import ImportJob, Judgment, Membership, RewardModelVersion, Study
from annotation.services import assignment_lease_next, judgment_submit
from tests.factories import MembershipFactory, StudyFactory, UserFactory, study_with_queue


def _queries(fetch: Callable[[], object]) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = fetch()
    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    return len(captured.captured_queries)


def _answer_all(study: Study, users: list) -> None:
    for user in users:
        MembershipFactory(user=user, study=study)
        while (lease := assignment_lease_next(study=study, annotator=user)) is not None:
            judgment_submit(study=study, annotator=user, comparison_id=lease.assignment.comparison_id, choice="a")


def _researched_study(n_prompts: int, n_annotators: int, n_versions: int) -> tuple[Study, object]:
    study = study_with_queue(n_prompts=n_prompts, n_candidates=3, queue_target=100, budget=1000, overlap=n_annotators)
    researcher = UserFactory()
    MembershipFactory(user=researcher, study=study, role=Membership.Role.RESEARCHER)
    _answer_all(study, [UserFactory() for _ in range(n_annotators)])
    for v in range(1, n_versions + 1):
        RewardModelVersion.objects.create(
            study=study, version=v, model_type="mlp", embedder_key="k", n_judgments=v, checkpoint_path="/nowhere"
        )
    for k in range(n_versions):
        ImportJob.objects.create(study=study, created_by=researcher, format="jsonl", file_path=f"imports/{k}.jsonl")
    return study, researcher


@pytest.mark.django_db
def test_the_home_page_lists_any_number_of_studies_in_fixed_queries(client_for) -> None:
    counts = []
    for n in (1, 12):
        user = UserFactory()
        for _ in range(n):
            MembershipFactory(user=user, study=StudyFactory(), role=Membership.Role.RESEARCHER)
        client = client_for(user)
        counts.append(_queries(lambda c=client: c.get(reverse("home"))))
    # With organisations (2 more): the user's roles in them, and whether they are in any (the new-study picker).
    assert counts[0] == counts[1] == 6, counts


@pytest.mark.django_db
def test_the_api_study_list_is_fixed_in_queries() -> None:
    counts = []
    for n in (1, 12):
        user = UserFactory()
        for _ in range(n):
            MembershipFactory(user=user, study=StudyFactory(), role=Membership.Role.RESEARCHER)
        api = APIClient()
        api.force_authenticate(user)
        counts.append(_queries(lambda a=api: a.get(reverse("api_studies"))))
    assert counts[0] == counts[1] == 2, counts  # the user's roles in organisations, then the studies


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("route", "expected"),
    # The settings page: 7, and its Organisation card (the study's, and the user's to move it to: 2).
    [("api_judgments", 2), ("api_model_versions", 2), ("study_settings", 9)],
)
def test_study_lists_are_fixed_in_queries(route: str, expected: int, client_for) -> None:
    counts = []
    for n_prompts, n_annotators, n_versions in ((2, 1, 1), (6, 3, 9)):
        study, researcher = _researched_study(n_prompts, n_annotators, n_versions)
        url = reverse(route, kwargs={"slug": study.slug})
        if route.startswith("api_"):
            api = APIClient()
            api.force_authenticate(researcher)
            counts.append(_queries(lambda a=api, u=url: a.get(u)))
        else:
            client = client_for(researcher)
            counts.append(_queries(lambda c=client, u=url: c.get(u)))
        assert Judgment.objects.filter(study=study).count() >= n_prompts * n_annotators
    assert counts[0] == counts[1] == expected, counts
