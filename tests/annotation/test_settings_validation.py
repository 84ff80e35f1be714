"""Study settings are refused field by field with one clear message, the same on the
settings page, the API and the Django admin: overlap and list size below their
minimum, a change of the comparison shape once the study has judgments, text a
database cannot store (NUL characters, lone surrogates) and integers past their
sensible maxima."""

from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
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


# --- text a database cannot store, and numbers past their maxima ------------------------------------


def _patch(user, study: Study, settings: dict):
    """PATCH the settings as JSON text, escapes kept ("\\ud800"), as a client would send them."""
    return api_as(user).patch(
        f"/api/v1/studies/{study.slug}/", json.dumps({"settings": settings}), content_type="application/json"
    )


NUL_MESSAGE = r"Contains a NUL character (\u0000), which cannot be stored."
SURROGATE_MESSAGE = r"Contains a lone surrogate (\ud800), which is not valid Unicode."


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Study\0", NUL_MESSAGE),
        ("name", "Study\ud800", SURROGATE_MESSAGE),
        ("guidelines", "Be kind.\0", NUL_MESSAGE),
        ("guidelines", "\ud800", SURROGATE_MESSAGE),
        ("completion_code", "C0\0DE", NUL_MESSAGE),
        ("completion_code", "C\ud800", SURROGATE_MESSAGE),
        ("completion_url", "https://example.org/done?cc=\ud800", SURROGATE_MESSAGE),
        ("aspects", ["honesty", "help\0"], NUL_MESSAGE),
        ("aspects", ["\ud800"], SURROGATE_MESSAGE),
        ("strategy_params", {"seed": "\0"}, r'"seed": contains a NUL character (\u0000), which cannot be stored.'),
    ],
)
def test_the_api_refuses_text_a_database_cannot_store_naming_the_setting(study, researcher, field, value, message):
    before = Study.objects.values().get(pk=study.pk)
    response = _patch(researcher, study, {field: value})
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body["fields"]) == [field]
    assert message in body["fields"][field]
    assert Study.objects.values().get(pk=study.pk) == before


def test_creating_a_study_through_the_api_refuses_unstorable_settings(researcher):
    response = api_as(researcher).post(
        "/api/v1/studies/",
        json.dumps({"name": "Fine", "settings": {"guidelines": "a\ud800"}}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["fields"] == {"guidelines": [SURROGATE_MESSAGE]}
    assert not Study.objects.filter(name="Fine").exists()


MAXIMA = [
    ("queue_target", 1000),
    ("queue_low_water", 1000),
    ("budget", 10_000_000),
    ("annotator_quota", 10_000_000),
    ("lease_seconds", 86_400),
    ("overlap", 100),
]


@pytest.mark.parametrize(("field", "most"), MAXIMA)
def test_integer_settings_are_bounded_on_the_api(study, researcher, field, most):
    refused = _patch(researcher, study, {field: most + 1})
    assert refused.status_code == 400
    assert refused.json()["fields"] == {field: [f"At most {most:,}."]}
    accepted = _patch(researcher, study, {field: most})
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()[field] == most


def test_a_queue_of_two_billion_comparisons_is_refused_once(study, researcher):
    refused = _patch(researcher, study, {"queue_target": 2_000_000_000})
    assert refused.status_code == 400
    assert refused.json()["fields"] == {"queue_target": ["At most 1,000."]}
    study.refresh_from_db()
    assert study.queue_target == 24


@pytest.mark.parametrize("field", ["queue_target", "gold_rate"])
@pytest.mark.parametrize("number", ["1e400", "-1e400"])
def test_a_number_too_large_for_a_float_is_refused_not_a_server_error(study, researcher, field, number):
    body = f'{{"settings": {{"{field}": {number}}}}}'
    response = api_as(researcher).patch(f"/api/v1/studies/{study.slug}/", body, content_type="application/json")
    assert response.status_code == 400
    assert field in json.dumps(response.json())


def test_a_fraction_given_as_the_text_nan_is_refused(study, researcher):
    response = _patch(researcher, study, {"gold_rate": "nan"})
    assert response.status_code == 400
    assert response.json()["fields"] == {"gold_rate": ["Must be a number (not NaN or infinity)."]}


def test_the_settings_page_bounds_integers_and_refuses_nul_naming_the_field(client_for, researcher, study):
    client = client_for(researcher)
    form = client.get(reverse("study_settings", args=[study.slug])).context["form"]
    assert 'max="1000"' in str(form["queue_target"]) and 'max="100"' in str(form["overlap"])
    response = client.post(
        reverse("study_settings", args=[study.slug]), settings_post(queue_target="2000000000", guidelines="a\0b")
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors["queue_target"] == ["At most 1,000."]
    assert list(errors) == ["guidelines", "queue_target"] and errors["guidelines"]
    study.refresh_from_db()
    assert study.queue_target == 24


def test_the_admin_applies_the_same_bounds_and_text_rules(study):
    request = RequestFactory().get("/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    form_class = admin.site._registry[Study].get_form(request, study, change=True)
    data = {k: v for k, v in model_to_dict(study).items() if v is not None}
    form = form_class(
        data=data | {"queue_target": 2_000_000_000, "budget": 10_000_001}, instance=Study.objects.get(pk=study.pk)
    )
    assert not form.is_valid()
    assert form.errors["queue_target"] == ["At most 1,000."] and form.errors["budget"] == ["At most 10,000,000."]
    study.completion_code = "x\ud800"
    with pytest.raises(ValidationError) as refused:
        study.full_clean()
    assert refused.value.message_dict == {"completion_code": [SURROGATE_MESSAGE]}
