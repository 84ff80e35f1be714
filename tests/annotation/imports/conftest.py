"""Fixtures of the import tests: uploads stored in a temporary MEDIA_ROOT, and
Celery tasks run in-process where a test asks for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.celery import app as celery_app


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def eager_tasks(monkeypatch):
    """Run Celery tasks in-process when enqueued (on commit), as a worker would."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", True)
