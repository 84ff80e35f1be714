"""Django admin: every model's list and change pages render for a superuser."""

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from activelearn.models import EmbeddingRecord
from annotation.models import ImportJob, Judgment, RewardModelVersion, SimulationRun
from annotation.services import assignment_lease_next, judgment_submit
from tests.factories import MembershipFactory, UserFactory, study_with_queue


@pytest.fixture
def populated(db):
    study = study_with_queue(n_prompts=2, n_candidates=3)
    user = MembershipFactory(study=study).user
    lease = assignment_lease_next(study=study, annotator=user)
    judgment_submit(study=study, annotator=user, comparison_id=lease.assignment.comparison_id, choice="a")
    RewardModelVersion.objects.create(
        study=study, version=1, model_type="mlp", embedder_key="k", n_judgments=1, checkpoint_path="/x"
    )
    EmbeddingRecord.objects.create(key="a" * 64, dim=2, vector=b"\x00" * 8)
    ImportJob.objects.create(study=study, format="csv", file_path="/x.csv", original_name="x.csv", error="row 3")
    SimulationRun.objects.create(study=study, started_at=timezone.now(), utility_kind="hash")
    return study


def test_every_registered_model_lists_and_opens(client, populated, django_assert_max_num_queries):
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    assert Judgment.objects.exists()
    for model in admin.site._registry:
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        with django_assert_max_num_queries(20):
            response = client.get(changelist)
        assert response.status_code == 200, changelist
        obj = model.objects.first()
        if obj is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            assert client.get(change).status_code == 200, change
