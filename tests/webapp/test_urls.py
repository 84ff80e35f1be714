"""Addresses a new user tries first: the API's root and the browser's favicon."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_the_api_root_links_to_the_schema_and_every_endpoint():
    response = APIClient().get("/api/v1/")
    assert response.status_code == 200
    index = response.json()
    assert index["schema"] == "http://testserver/api/schema/"
    assert APIClient().get("/api/schema/").status_code == 200
    endpoints = index["endpoints"]
    assert endpoints["studies"] == "http://testserver/api/v1/studies/"
    assert endpoints["leaderboard"] == "http://testserver/api/v1/studies/{slug}/leaderboard/"
    assert endpoints["checkpoint"] == "http://testserver/api/v1/studies/{slug}/model-versions/{version}/checkpoint/"
    assert endpoints["export"] == "http://testserver/api/v1/studies/{slug}/exports/{fmt}/"
    assert "dpo.jsonl" in index["export_formats"]


def test_favicon_ico_leads_to_the_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("favicon.svg")
    assert finders.find("favicon.svg")
