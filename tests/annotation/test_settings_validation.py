"""Study settings are refused field by field with one clear message, the same on the
settings page, the API and the Django admin: overlap and list size below their
minimum, and a change of the comparison shape once the study has judgments."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.forms.models import model_to_dict
from django.test import RequestFactory
from django.urls import reverse

from annotation.models import Study
from annotation.services import assignment_lease_next, judgment_submit, study_settings_update
from tests.annotation.test_api import api_as
from tests.annotation.test_study_setup import judge_one, settings_post
from tests.factories import MembershipFactory, UserFactory, study_with_queue

pytestmark = pytest.mark.django_db

OVERLAP_MESSAGE = "At least 1 judgment per comparison."


def test_overlap_zero_on_the_settings_page_is_one_clear_field_error(client_for, researcher, study):
    form = client_for(researcher).get(reverse("study_settings", args=[study.slug])).context["form"]
    assert 'min="1"' in str(form["overlap"]) and 'min="2"' in str(form["list_size"])
    response = client_for(researcher).post(reverse("study_settings", args=[study.slug]), settings_post(overlap="0"))
    assert response.status_code == 400
    html = response.content.decode()
    assert "Constraint" not in html and "study_overlap_positive" not in html
    assert html.count(OVERLAP_MESSAGE) == 1
    assert response.context["form"].errors["overlap"] == [OVERLAP_MESSAGE]
    study.refresh_from_db()
    assert study.overlap == 1


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"overlap": 0}, "overlap", OVERLAP_MESSAGE),
        ({"mode": "listwise", "list_size": 0}, "list_size", "Between 2 and 8 responses per comparison."),
    ],
)
def test_the_api_names_the_field_once(study, researcher, changes, field, message):
    response = api_as(researcher).patch(f"/api/v1/studies/{study.slug}/", {"settings": changes}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["fields"] == {field: [message]}
    assert "Constraint" not in body["detail"]


def _listwise_with_a_judgment() -> Study:
    study = study_with_queue(n_prompts=2, n_candidates=3, mode="listwise", list_size=3)
    user = MembershipFactory(study=study).user
    lease = assignment_lease_next(study=study, annotator=user)
    judgment_submit(study=study, annotator=user, comparison_id=lease.assignment.comparison_id, ranking=[[0], [1], [2]])
    return study


def test_the_admin_refuses_to_reshape_a_study_with_judgments_like_the_settings_page():
    study = _listwise_with_a_judgment()
    request = RequestFactory().get("/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    model_admin = admin.site._registry[Study]
    form_class = model_admin.get_form(request, study, change=True)
    data = model_to_dict(study) | {"mode": "pairwise", "list_size": 2}
    data = {k: v for k, v in data.items() if v is not None}
    form = form_class(data=data, instance=Study.objects.get(pk=study.pk))
    assert not form.is_valid()
    assert form.errors["mode"] == ["Fixed once the study has judgments."]
    assert form.errors["list_size"] == ["Fixed once the study has judgments."]
    # The same rule, from the same place, as the settings service.
    with pytest.raises(Exception) as refused:
        study_settings_update(study=study, changes={"mode": "pairwise", "list_size": 2})
    assert refused.value.message_dict == {
        name: ["Fixed once the study has judgments."] for name in ("mode", "list_size")
    }
    # Other fields still save through the admin.
    edit = form_class(data=model_to_dict(study) | {"budget": 999}, instance=Study.objects.get(pk=study.pk))
    edit.data = {k: v for k, v in edit.data.items() if v is not None}
    assert edit.is_valid(), edit.errors


def test_an_unjudged_study_may_still_be_reshaped_in_the_admin(client_for, researcher, annotator, study):
    request = RequestFactory().get("/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    form_class = admin.site._registry[Study].get_form(request, study, change=True)
    data = {k: v for k, v in (model_to_dict(study) | {"mode": "listwise", "list_size": 4}).items() if v is not None}
    assert form_class(data=data, instance=Study.objects.get(pk=study.pk)).is_valid()
    judge_one(study, annotator)
    assert not form_class(data=data, instance=Study.objects.get(pk=study.pk)).is_valid()
