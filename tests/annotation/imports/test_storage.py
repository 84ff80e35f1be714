"""Where uploads wait for their background job: the ``imports`` storage.

By default a folder under MEDIA_ROOT; with ``PREFLOOP_STORAGE=s3`` an
S3-compatible bucket (here moto's S3 server on 127.0.0.1, ``s3_bucket`` in
tests/conftest.py), so the web host that stores an upload and the worker that
imports it share no folder. A worker on "another host" is simulated by
pointing MEDIA_ROOT and PREFLOOP_VAR_DIR at empty folders before the job runs.
"""

from __future__ import annotations

import io
import json
import os
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from annotation.imports import jobs, upload
from annotation.models import ImportJob, Study
from tests.annotation.imports.samples import counts, jsonl, parquet_bytes


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path) -> Path:
    settings.PREFLOOP_VAR_DIR = tmp_path / "var"
    return settings.PREFLOOP_VAR_DIR


@pytest.fixture
def s3_imports(s3_bucket, settings):
    """The ``imports`` storage in a fresh bucket, as ``PREFLOOP_STORAGE=s3`` configures it."""
    settings.STORAGES = {**settings.STORAGES, "imports": s3_bucket.storage("")}
    return s3_bucket


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """Jobs whose task was enqueued (not run): the web host's side alone."""
    started: list[int] = []
    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 100)
    monkeypatch.setattr(upload.tasks, "import_job_run", SimpleNamespace(delay=started.append))
    return started


def another_host(settings, tmp_path) -> Path:
    """Point this process at a worker host's own, empty folders; its root."""
    root = tmp_path / "worker-host"
    settings.MEDIA_ROOT = root / "media"
    settings.PREFLOOP_VAR_DIR = root / "var"
    return root


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in Path(folder).rglob("*") if path.is_file())


def records(n: int, *, bad_line: int | None = None) -> bytes:
    rows = [{"prompt": f"Prompt {i}", "candidates": [f"a{i}", f"b{i}"]} for i in range(n)]
    if bad_line is not None:
        rows[bad_line - 1]["candidates"] = "not a list"
    return jsonl(*rows)


def test_an_upload_is_stored_in_the_bucket_and_imported_by_a_worker_on_another_host(
    s3_imports, study, researcher, queued, media_root, settings, tmp_path, django_capture_on_commit_callbacks
):
    content = records(40)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = upload.import_upload(
            study=study, upload=SimpleUploadedFile("big.jsonl", content), format=None, options={}, by=researcher
        )
    job = outcome.job
    assert job is not None and queued == [job.pk] and job.status == ImportJob.Status.QUEUED
    folder, name = job.file_path.split("/")[1:]
    assert job.file_path == f"imports/{folder}/big.jsonl" and name == job.original_name == "big.jsonl"
    assert s3_imports.object_keys() == {job.file_path}
    assert s3_imports.client.get_object(Bucket=s3_imports.name, Key=job.file_path)["Body"].read() == content
    assert files_under(media_root) == [], "nothing is written to the web host's MEDIA_ROOT"

    worker = another_host(settings, tmp_path)
    before = counts(study)
    done = jobs.import_job_run(job_id=job.pk)
    assert done.status == ImportJob.Status.DONE, done.error
    assert counts(study) == (before[0] + 40, before[1] + 80)
    assert s3_imports.object_keys() == set(), "the upload is removed once imported"
    assert files_under(worker) == [], "the worker's download is removed"


def test_a_malformed_upload_fails_with_its_line_and_field_and_is_removed_from_the_bucket(
    s3_imports, study, researcher, queued, settings, tmp_path, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = upload.import_upload(
            study=study,
            upload=SimpleUploadedFile("bad.jsonl", records(30, bad_line=17)),
            format=None,
            options={},
            by=researcher,
        ).job
    assert s3_imports.object_keys() == {job.file_path}
    worker = another_host(settings, tmp_path)
    before = counts(study)
    failed = jobs.import_job_run(job_id=job.pk)
    assert failed.status == ImportJob.Status.FAILED
    assert failed.error.startswith("Nothing imported: line 17") and 'field "candidates"' in failed.error
    assert counts(study) == before
    assert s3_imports.object_keys() == set(), "a failed job removes its upload too"
    assert files_under(worker) == []


def test_a_study_made_from_a_parquet_file_through_the_page_imports_from_the_bucket(
    s3_imports, client_for, researcher, media_root, eager_tasks, django_capture_on_commit_callbacks
):
    rows = [{"prompt": f"P{i}", "response_1": "a", "response_2": f"b{i}"} for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        client_for(researcher).post(
            reverse("study_create_from_file"),
            {"name": "From the bucket", "file": SimpleUploadedFile("d.parquet", parquet_bytes(rows))},
        )
    study = Study.objects.get(name="From the bucket")
    job = ImportJob.objects.get(study=study)
    assert job.status == ImportJob.Status.DONE, job.error
    assert counts(study) == (3, 6)
    assert s3_imports.object_keys() == set() and files_under(media_root) == []


def test_a_zipped_dataset_is_unpacked_in_the_workers_private_folder(
    s3_imports, study, researcher, queued, settings, tmp_path, django_capture_on_commit_callbacks
):
    datasets = pytest.importorskip("datasets")
    from tests.annotation.imports.test_tables import zipped_dataset

    rows = {"prompt": ["Q1", "Q2"], "chosen": ["good 1", "good 2"], "rejected": ["bad 1", "bad 2"]}
    archive = zipped_dataset(tmp_path, datasets.Dataset.from_dict(rows))
    with django_capture_on_commit_callbacks(execute=True):
        job = upload.import_upload(
            study=study, upload=SimpleUploadedFile("prefs.zip", archive), format=None, options={}, by=researcher
        ).job
    worker = another_host(settings, tmp_path)
    before = counts(study)
    done = jobs.import_job_run(job_id=job.pk)
    assert done.status == ImportJob.Status.DONE, done.error
    assert counts(study) == (before[0] + 2, before[1] + 4)
    assert s3_imports.object_keys() == set() and files_under(worker) == []


def test_an_upload_gone_from_the_bucket_fails_its_job_cleanly(s3_imports, study, researcher):
    stored = jobs.import_upload_store(upload=SimpleUploadedFile("gone.jsonl", records(2)))
    job = jobs.import_job_create(study=study, stored=stored, format="jsonl", options={}, created_by=researcher)
    s3_imports.client.delete_object(Bucket=s3_imports.name, Key=str(stored))
    failed = jobs.import_job_run(job_id=job.pk)
    assert failed.status == ImportJob.Status.FAILED
    assert failed.error == "Nothing imported: the uploaded file is no longer stored; upload it again."


class WholeReadRefused(io.BytesIO):
    """A file that refuses to be read whole: a store must read it in chunks."""

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and 0 <= size <= 64 << 20, f"read({size}): the whole file at once"
        return super().read(size)


def temporary_upload(content: bytes) -> TemporaryUploadedFile:
    """An upload as Django keeps one past FILE_UPLOAD_MAX_MEMORY_SIZE: in a temporary file."""
    upload = TemporaryUploadedFile("big.parquet", "application/octet-stream", len(content), None)
    upload.write(content)
    upload.seek(0)
    return upload


@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("kind", ["file", "temporary upload"])
def test_an_upload_is_stored_chunk_by_chunk(request, where, kind, media_root):
    if where == "s3":
        request.getfixturevalue("s3_imports")
    content = os.urandom(3 << 20)
    upload = File(WholeReadRefused(content), name="big.parquet") if kind == "file" else temporary_upload(content)
    stored = jobs.import_upload_store(upload=upload)
    upload.close()
    assert stored.parts[0] == "imports" and stored.name == "big.parquet"
    with jobs.import_storage().open(str(stored), "rb") as saved:
        assert saved.read() == content
    jobs.import_upload_discard(stored=stored)
    assert not jobs.import_storage().exists(str(stored))


def test_pruning_the_bucket_keeps_what_jobs_need_and_what_is_recent(s3_imports, study, monkeypatch):
    client, bucket = s3_imports.client, s3_imports.name
    for folder in ("failed", "done", "queued", "running", "lost"):
        client.put_object(Bucket=bucket, Key=f"imports/{folder}/x.jsonl", Body=b"{}\n")
    client.put_object(Bucket=bucket, Key="imports/lost/dataset.zip", Body=b"PK")
    client.put_object(Bucket=bucket, Key="checkpoints/study-1/abc/config.json", Body=b"{}")
    for folder, status in (("done", "done"), ("failed", "failed"), ("queued", "queued"), ("running", "running")):
        ImportJob.objects.create(study=study, format="jsonl", file_path=f"imports/{folder}/x.jsonl", status=status)
    everything = s3_imports.object_keys()

    assert jobs.import_uploads_prune() == 0, "nothing is older than an hour yet"
    assert s3_imports.object_keys() == everything

    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(jobs.timezone, "now", lambda: later)
    assert jobs.import_uploads_prune() == 3
    assert s3_imports.object_keys() == {
        "imports/queued/x.jsonl",
        "imports/running/x.jsonl",
        "checkpoints/study-1/abc/config.json",
    }
    ImportJob.objects.filter(status="queued").update(status="failed")
    out = io.StringIO()
    call_command("prune_imports", "--older-than-minutes", "0", stdout=out)
    assert out.getvalue().strip() == "Removed 1 stored upload."
    assert s3_imports.object_keys() == {"imports/running/x.jsonl", "checkpoints/study-1/abc/config.json"}


def test_locally_the_worker_reads_the_upload_in_place_and_leaves_nothing_behind(
    study, researcher, media_root, var_dir, monkeypatch
):
    stored = jobs.import_upload_store(upload=SimpleUploadedFile("local.jsonl", records(3)))
    assert (media_root / stored).read_bytes() == records(3)
    job = jobs.import_job_create(study=study, stored=stored, format="jsonl", options={}, created_by=researcher)
    seen: list[tuple[Path, Path]] = []
    parse_stored = type(jobs.registry.get("jsonl")).parse_stored

    def look(self, path: Path, **kwargs):
        seen.append((path, path.readlink()))  # a link to the upload, not a copy
        return parse_stored(self, path, **kwargs)

    monkeypatch.setattr(type(jobs.registry.get("jsonl")), "parse_stored", look)
    assert jobs.import_job_run(job_id=job.pk).status == ImportJob.Status.DONE
    [(path, target)] = seen
    assert path.is_relative_to(var_dir / "import-work") and target == media_root / stored
    assert files_under(media_root) == [] and files_under(var_dir) == []
    assert list((media_root / "imports").iterdir()) == [], "the upload's folder goes too"


def test_a_work_folder_left_by_a_dead_worker_is_pruned_unless_its_job_runs(study, var_dir):
    running = ImportJob.objects.create(study=study, format="jsonl", file_path="imports/r/x.jsonl", status="running")
    done = ImportJob.objects.create(study=study, format="jsonl", file_path="imports/d/x.jsonl", status="done")
    work = var_dir / "import-work"
    three_hours_ago = (timezone.now() - timedelta(hours=3)).timestamp()
    folders = {}
    for name, job_id in (("running", running.pk), ("dead", done.pk), ("recent", done.pk)):
        folder = work / f"{job_id}-{name}"
        (folder / "dataset").mkdir(parents=True)
        (folder / "dataset" / "data.arrow").write_bytes(b"x")
        if name != "recent":
            for path in (folder / "dataset" / "data.arrow", folder / "dataset", folder):
                os.utime(path, (three_hours_ago, three_hours_ago))
        folders[name] = folder
    jobs.import_uploads_prune(older_than=timedelta(0))
    assert sorted(path.name for path in work.iterdir()) == sorted([folders["recent"].name, folders["running"].name])


def test_a_stored_upload_keeps_its_name_and_never_leaves_its_folder(media_root):
    for name, kept in (("../../etc/passwd", "passwd"), ("..", "upload"), ("a b (1).jsonl", "a b (1).jsonl")):
        stored = jobs.import_upload_store(upload=File(io.BytesIO(b"{}\n"), name=name))
        assert stored.parts[0] == "imports" and stored.name == kept and len(stored.parts) == 3
        assert (media_root / stored).read_bytes() == b"{}\n"


def test_a_job_whose_path_is_not_a_stored_upload_reads_nothing(study, researcher, tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_bytes(json.dumps({"prompt": "secret", "candidates": ["a", "b"]}).encode() + b"\n")
    job = ImportJob.objects.create(study=study, format="jsonl", file_path=str(secret))
    failed = jobs.import_job_run(job_id=job.pk)
    assert failed.status == ImportJob.Status.FAILED and "no longer stored" in failed.error
    assert secret.exists(), "and deletes nothing"
