"""Hostile request bodies are bad requests (400), never server errors: JSON
nested thousands deep, and a username longer than any account's.

The standard library's parser raises ``RecursionError`` past about a thousand
levels, which DRF's ``JSONParser`` (it turns only ``ValueError`` into a 400)
let through as a 500; a body just under that depth parsed, and the code
that walks it afterwards could recurse as deep."""

from __future__ import annotations

import json

import pytest

from annotation.models import Study
from annotation.parsers import MAX_JSON_DEPTH
from tests.annotation.test_api import api_as

pytestmark = pytest.mark.django_db


def nested(depth: int, leaf: str = "1") -> str:
    """A JSON array ``depth`` levels deep around ``leaf``."""
    return "[" * depth + leaf + "]" * depth


def _send(client, method: str, url: str, body: str):
    return getattr(client, method)(url, body, content_type="application/json")


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_a_body_nested_thousands_deep_is_refused_with_400_on_every_kind_of_endpoint(study, researcher, depth):
    client = api_as(researcher)
    before = Study.objects.values().get(pk=study.pk)
    cases = {
        "settings": ("patch", f"/api/v1/studies/{study.slug}/", '{"settings": {"aspects": ' + nested(depth) + "}}"),
        "inline import": (
            "post",
            f"/api/v1/studies/{study.slug}/imports/",
            '{"records": [{"prompt": "p", "candidates": ["a"], "metadata": ' + nested(depth) + "}]}",
        ),
        "judgment": ("post", f"/api/v1/studies/{study.slug}/judgments/", '{"ranking": ' + nested(depth) + "}"),
        "new study": ("post", "/api/v1/studies/", '{"name": "Deep", "settings": {"x": ' + nested(depth) + "}}"),
    }
    for name, (method, url, body) in cases.items():
        response = _send(client, method, url, body)
        assert response.status_code == 400, (name, response.status_code, response.content[:300])
        assert "nested" in response.json()["detail"], name
    assert Study.objects.values().get(pk=study.pk) == before
    assert not Study.objects.filter(name="Deep").exists()


def test_the_depth_limit_counts_objects_and_arrays_and_leaves_ordinary_bodies_alone(study, researcher):
    client = api_as(researcher)
    url = f"/api/v1/studies/{study.slug}/"
    too_deep = '{"settings": {"strategy_params": ' + '{"a": ' * (MAX_JSON_DEPTH - 1) + "1" + "}" * (MAX_JSON_DEPTH - 1)
    refused = _send(client, "patch", url, too_deep + "}}")
    assert refused.status_code == 400 and "nested" in refused.json()["detail"]
    at_limit = '{"settings": {"guidelines": ' + json.dumps("[" * 5000) + "}}"  # brackets in a string are text
    accepted = _send(client, "patch", url, at_limit)
    assert accepted.status_code == 200, accepted.content[:300]
    assert accepted.json()["guidelines"] == "[" * 5000


def test_a_username_longer_than_any_account_is_refused_before_the_sign_in_lockout_records_it():
    """django-axes records a failed sign-in's username in 255 characters; a
    longer one was a server error on PostgreSQL (schemathesis found it)."""
    from axes.models import AccessAttempt
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/auth/token/", {"username": "u" * 300, "password": "x"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["username"]
    assert not AccessAttempt.objects.exists()
