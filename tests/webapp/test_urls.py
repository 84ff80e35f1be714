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


def test_a_fresh_production_host_can_migrate_before_collecting_static_files(tmp_path):
    """Loading the URLs must not need the static files' manifest: ``migrate``
    runs the system checks, which load them, and on a fresh host it may run
    before ``collectstatic`` (it failed so while the favicon's address was
    looked up at import time)."""
    import os
    import secrets
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "STATIC_ROOT": str(tmp_path / "static"),  # empty: no manifest yet
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PREFLOOP_VAR_DIR": str(tmp_path / "var"),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
