"""End to end through a real Celery worker process on the configured broker.

In CI the broker is Redis and the database PostgreSQL (see .ci/run); locally
the defaults are the filesystem broker and SQLite. The web side is the real
view: judgments posted through the annotate endpoint commit, their on-commit
hook enqueues the retrain, the worker fits and publishes a model version and
refills the queue with comparisons the model chose.
"""

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse

from activelearn import refill
from annotation.models import Comparison, Judgment, RewardModelVersion
from annotation.services import assignment_lease_next
from webapp.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def celery_worker_process(tmp_path):
    """A `celery worker` subprocess on the test database; stopped afterwards."""
    with celery_app.connection_for_write() as conn:
        for queue in ("train", "select", "default", "embed"):
            # A queue that was never declared has nothing to purge.
            with contextlib.suppress(Exception):
                conn.default_channel.queue_purge(queue)
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DEBUG": "true",
        "PREFLOOP_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "webapp",
                "worker",
                "-Q",
                "train,select,default,embed",
                "--pool",
                "solo",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while "ready." not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"celery worker did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.3)
        yield log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_judgments_through_the_web_make_the_worker_retrain_and_refill(
    make_study, annotators, member, client, celery_worker_process
):
    study = make_study(queue_target=6, queue_low_water=2)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    assert not Comparison.objects.filter(study=study, model_version__isnull=False).exists()

    user = annotators[0]
    client.force_login(user)
    for choice in ("a", "b", "a"):
        comparison = assignment_lease_next(study=study, annotator=user).assignment.comparison
        response = client.post(
            reverse("annotate_submit", args=[study.slug]),
            {"comparison_id": comparison.id, "choice": choice},
            HTTP_HX_REQUEST="true",
        )
        assert response.status_code == 200
    assert Judgment.objects.filter(study=study).count() == 3

    deadline = time.monotonic() + 240
    chosen = Comparison.objects.none()
    while time.monotonic() < deadline:
        chosen = Comparison.objects.filter(study=study, status=Comparison.Status.QUEUED, model_version__isnull=False)
        if chosen.exists():
            break
        time.sleep(0.5)
    log = celery_worker_process.read_text()
    assert chosen.exists(), f"no model-chosen comparison appeared; worker log:\n{log[-6000:]}"

    version = RewardModelVersion.objects.filter(study=study).latest()
    assert version.n_judgments == 3
    assert Path(version.checkpoint_path).is_dir()
    assert "retrain_study" in log and "refill_queue" in log
    assert set(chosen.values_list("model_version_id", flat=True)) == {version.id}
    assert "uncertainty" in set(chosen.values_list("strategy", flat=True))
