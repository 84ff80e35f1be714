"""Checkpoints in an S3-compatible object store (``PREFLOOP_STORAGE=s3``),
against a real S3 server: moto's server mode on 127.0.0.1, speaking HTTP.

A worker on one host publishes; a web host with an empty cache serves the
download and a refill loads the weights; pruning deletes the objects; nothing
is written to the local checkpoint folder.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse

from activelearn import features, refill, services
from annotation import checkpoints
from annotation.models import Membership, RewardModelVersion
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def s3(s3_bucket, settings, tmp_path):
    """The ``checkpoints`` storage on a fresh bucket (``s3_bucket``, tests/conftest.py),
    as the s3 settings configure it."""
    settings.PREFLOOP_CHECKPOINT_DIR = tmp_path / "local-checkpoints"
    settings.PREFLOOP_VAR_DIR = tmp_path / "var"
    settings.STORAGES = {**settings.STORAGES, "checkpoints": s3_bucket.storage("checkpoints")}
    return s3_bucket


@pytest.mark.django_db
def test_a_version_published_to_s3_is_served_and_loaded_by_a_host_without_it(
    s3, make_study, annotators, member, settings, client_for, judge
):
    study = make_study()
    member(study)
    researcher = UserFactory()
    Membership.objects.create(user=researcher, study=study, role=Membership.Role.RESEARCHER)
    refill.queue_refill(study_id=study.id, seed=0)
    judge(study, annotators[0], 6)

    version = services.reward_model_fit(study_id=study.id)
    assert version is not None and version.checkpoint_path.startswith("checkpoints:study-")
    name = version.checkpoint_path.removeprefix("checkpoints:")
    assert s3.object_keys() == {f"checkpoints/{name}/config.json", f"checkpoints/{name}/model.safetensors"}
    assert not any(Path(settings.PREFLOOP_CHECKPOINT_DIR).rglob("*.safetensors")), "nothing in the local folder"

    # Another host: no cached copy. Loading fetches the weights; the scores are the fitted model's.
    shutil.rmtree(Path(settings.PREFLOOP_VAR_DIR) / "checkpoint-cache", ignore_errors=True)
    embedded = features.study_features(study_id=study.id).features
    loaded = services.reward_model_load(version)
    assert np.isfinite(loaded.scores(embedded)).all()
    again = services.reward_model_load(version)
    np.testing.assert_allclose(again.scores(embedded), loaded.scores(embedded))

    # The web host serves the download from the store.
    shutil.rmtree(Path(settings.PREFLOOP_VAR_DIR) / "checkpoint-cache", ignore_errors=True)
    response = client_for(researcher).get(reverse("model_checkpoint", args=[study.slug, version.version]))
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == [
        f"model-v{version.version}/config.json",
        f"model-v{version.version}/model.safetensors",
    ]

    # A refill on that host uses the stored model.
    assert refill.queue_refill(study_id=study.id, seed=1) >= 0
    assert study.comparisons.filter(model_version=version).exists()


@pytest.mark.django_db
def test_pruning_deletes_the_objects_and_a_pruned_version_says_so(s3, make_study, annotators, member, settings, judge):
    settings.PREFLOOP_CHECKPOINTS_KEEP = 1
    study = make_study()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    judge(study, annotators[0], 5)
    first = services.reward_model_fit(study_id=study.id)
    judge(study, annotators[1], 5)
    second = services.reward_model_fit(study_id=study.id)
    assert first is not None and second is not None
    first.refresh_from_db()
    kept = {second.checkpoint_path.removeprefix("checkpoints:")}
    if first.pruned_at is None:  # kept as the best by held-out log-loss
        kept.add(first.checkpoint_path.removeprefix("checkpoints:"))
    assert {key.split("/")[1] + "/" + key.split("/")[2] for key in s3.object_keys()} == kept
    if first.pruned_at is not None:
        with pytest.raises(services.CheckpointPruned):
            services.reward_model_load(first)


@pytest.mark.django_db
def test_a_failed_upload_leaves_no_version_and_no_objects(s3, make_study, annotators, member, monkeypatch, judge):
    study = make_study()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    judge(study, annotators[0], 6)
    real_save = checkpoints.object_storage().__class__.save
    calls = []

    def fail_second(self, name, content, max_length=None):
        calls.append(name)
        if len(calls) == 2:
            raise ConnectionError("the object store went away")
        return real_save(self, name, content, max_length=max_length)

    monkeypatch.setattr(checkpoints.object_storage().__class__, "save", fail_second)
    with pytest.raises(ConnectionError):
        services.reward_model_fit(study_id=study.id)
    assert not RewardModelVersion.objects.filter(study=study).exists()
    assert s3.object_keys() == set(), "the first file's upload was removed"


@pytest.mark.django_db
def test_references_outside_the_store_or_folder_are_refused(s3, settings):
    for reference in ("checkpoints:../etc/passwd", "checkpoints:study-1/../../x", "/etc", "checkpoints:x"):
        with pytest.raises(checkpoints.CheckpointMissing):
            checkpoints.local_folder(reference)
    settings.STORAGES = {k: v for k, v in settings.STORAGES.items() if k != "checkpoints"}
    with pytest.raises(checkpoints.CheckpointMissing, match="does not configure"):
        checkpoints.local_folder("checkpoints:study-1/abc")


def _settings_in_subprocess(**env: str) -> subprocess.CompletedProcess:
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        "print(json.dumps({alias: settings.STORAGES.get(alias) for alias in ('checkpoints', 'imports')}))"
    )
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("PREFLOOP_STORAGE", "PREFLOOP_CHECKPOINT_STORAGE")},
        "DEBUG": "true",
        "SECRET_KEY": "x",
        **env,
    }
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, cwd=ROOT)


def _storages(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


S3_ENV = {"PREFLOOP_S3_BUCKET": "models", "PREFLOOP_S3_ENDPOINT_URL": "http://minio:9000"}


def test_the_s3_setting_puts_checkpoints_and_import_uploads_in_the_bucket():
    storages = _storages(_settings_in_subprocess(PREFLOOP_STORAGE="s3", **S3_ENV))
    for alias, location in (("checkpoints", "checkpoints"), ("imports", "")):
        assert storages[alias]["BACKEND"] == "storages.backends.s3.S3Storage"
        options = storages[alias]["OPTIONS"]
        assert (options["bucket_name"], options["endpoint_url"]) == ("models", "http://minio:9000")
        assert options["location"] == location  # uploads are named imports/<random>/<name>
        assert options["max_memory_size"] > 0  # a file read back spools to disk past that


def test_local_storage_is_the_default_with_uploads_under_media_root():
    for env in ({}, {"PREFLOOP_STORAGE": "local"}, {"PREFLOOP_STORAGE": "local", "PREFLOOP_CHECKPOINT_STORAGE": "s3"}):
        storages = _storages(_settings_in_subprocess(**env, **S3_ENV))
        assert storages["checkpoints"] is None
        # No location: FileSystemStorage follows MEDIA_ROOT (and tests that change it).
        assert storages["imports"] == {"BACKEND": "django.core.files.storage.FileSystemStorage"}


def test_the_old_checkpoint_storage_name_still_works_when_the_new_one_is_unset():
    storages = _storages(_settings_in_subprocess(PREFLOOP_CHECKPOINT_STORAGE="s3", **S3_ENV))
    assert storages["checkpoints"]["BACKEND"] == storages["imports"]["BACKEND"] == "storages.backends.s3.S3Storage"
    local = _storages(_settings_in_subprocess(PREFLOOP_CHECKPOINT_STORAGE="local"))
    assert local["checkpoints"] is None


@pytest.mark.parametrize("name", ["PREFLOOP_STORAGE", "PREFLOOP_CHECKPOINT_STORAGE"])
def test_an_unknown_storage_is_refused_by_the_name_that_was_set(name):
    wrong = _settings_in_subprocess(**{name: "ftp"})
    assert wrong.returncode != 0 and f"{name} must be local or s3" in wrong.stderr
