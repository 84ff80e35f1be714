"""The upload service: a small text file is imported now, anything larger,
compressed or binary becomes a job; either way a bad file writes nothing."""

from __future__ import annotations

import gzip
import json
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.imports import upload
from annotation.imports.records import ImportFileError, ImportResult
from annotation.imports.upload import import_upload, study_create_from_upload
from annotation.models import ImportJob, Membership, Study
from tests.annotation.imports.samples import HH_LINE, counts, parquet_bytes, stored_upload

pytestmark = pytest.mark.django_db


def jsonl_lines(n: int) -> bytes:
    return "".join(
        json.dumps({"prompt": f"Prompt {i}", "candidates": [f"x{i}", f"y{i}"]}) + "\n" for i in range(n)
    ).encode()


def test_a_small_text_file_is_imported_now(study, researcher):
    before = counts(study)
    outcome = import_upload(
        study=study, upload=SimpleUploadedFile("small.jsonl", jsonl_lines(3)), format=None, options={}, by=researcher
    )
    assert outcome.job is None and outcome.study == study
    assert outcome.result == ImportResult(
        prompts_created=3, prompts_existing=0, candidates_created=6, duplicates_skipped=0
    )
    assert counts(study) == (before[0] + 3, before[1] + 6)
    assert not ImportJob.objects.exists()


def test_a_bad_small_file_raises_and_writes_nothing(study, researcher):
    before = counts(study)
    content = jsonl_lines(2) + b'{"prompt": "bad", "candidates": [""]}\n'
    with pytest.raises(ImportFileError, match=r'^line 3, field "candidates\[0\]": must be a non-empty string$'):
        import_upload(study=study, upload=SimpleUploadedFile("bad.jsonl", content), format=None, options={}, by=None)
    assert counts(study) == before


def test_a_large_file_becomes_a_queued_job_and_its_task_starts_on_commit(
    study, researcher, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 100)
    started: list[int] = []
    monkeypatch.setattr(upload.tasks, "import_job_run", SimpleNamespace(delay=started.append))
    before = counts(study)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = import_upload(
            study=study,
            upload=SimpleUploadedFile("big.jsonl", jsonl_lines(20)),
            format="jsonl",
            options={"record_preference": False},
            by=researcher,
        )
    job = outcome.job
    assert outcome.result is None and job is not None
    assert (job.status, job.format, job.original_name, job.created_by) == ("queued", "jsonl", "big.jsonl", researcher)
    assert job.options == {}  # JSONL reads no options
    assert stored_upload(job).read_bytes() == jsonl_lines(20)
    assert started == [job.pk]
    assert counts(study) == before  # the worker imports it


@pytest.mark.parametrize(
    ("name", "content", "format", "options"),
    [
        (
            "table.parquet",
            parquet_bytes([{"prompt": "P", "responses": ["a", "b"]}]),
            "parquet",
            {"record_preference": True},
        ),
        (
            "pairs.jsonl.gz",
            gzip.compress((json.dumps(HH_LINE) + "\n").encode()),
            "hh_rlhf",
            {"record_preference": False},
        ),
    ],
)
def test_binary_and_compressed_files_go_to_the_worker_however_small(study, researcher, name, content, format, options):
    outcome = import_upload(
        study=study,
        upload=SimpleUploadedFile(name, content),
        format=None,
        options={"record_preference": options["record_preference"], "split": "train"},
        by=researcher,
    )
    assert outcome.result is None
    assert (outcome.job.format, outcome.job.options) == (format, options)  # "split" is not theirs


def test_a_compressed_file_is_imported_by_the_job(study, researcher, eager_tasks, django_capture_on_commit_callbacks):
    """A small .jsonl.gz used to be parsed in the request as if it were text."""
    content = gzip.compress((json.dumps(HH_LINE) + "\n").encode())
    with django_capture_on_commit_callbacks(execute=True):
        outcome = import_upload(
            study=study, upload=SimpleUploadedFile("hh.jsonl.gz", content), format=None, options={}, by=researcher
        )
    job = ImportJob.objects.get(pk=outcome.job.pk)
    assert job.status == ImportJob.Status.DONE, job.error
    assert job.result["candidates_created"] == 2


def test_creating_a_study_from_a_bad_small_file_creates_nothing(researcher):
    with pytest.raises(ImportFileError):
        study_create_from_upload(
            name="Broken", upload=SimpleUploadedFile("b.jsonl", b"not json\n"), format=None, options={}, by=researcher
        )
    assert not Study.objects.filter(name="Broken").exists()


def test_creating_a_study_from_a_small_file_makes_an_active_study_with_its_data(researcher):
    outcome = study_create_from_upload(
        name="Small", upload=SimpleUploadedFile("s.jsonl", jsonl_lines(2)), format=None, options={}, by=researcher
    )
    assert outcome.job is None and outcome.result.candidates_created == 4
    assert outcome.study.status == Study.Status.ACTIVE
    assert Membership.objects.get(study=outcome.study, user=researcher).role == Membership.Role.RESEARCHER


def test_creating_a_study_from_a_binary_file_makes_a_draft_and_a_job(researcher):
    outcome = study_create_from_upload(
        name="Tables",
        upload=SimpleUploadedFile("t.parquet", parquet_bytes([{"prompt": "P", "response": "a"}])),
        format=None,
        options={},
        by=researcher,
    )
    assert outcome.result is None and outcome.job.study == outcome.study
    assert outcome.study.status == Study.Status.DRAFT


def test_a_job_that_cannot_be_recorded_leaves_no_file_behind(study, researcher, monkeypatch, media_root):
    def refuse(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(upload, "import_job_create", refuse)
    with pytest.raises(RuntimeError):
        import_upload(
            study=study,
            upload=SimpleUploadedFile("t.parquet", parquet_bytes([{"prompt": "P", "response": "a"}])),
            format=None,
            options={},
            by=researcher,
        )
    assert not any(path.is_file() for path in media_root.rglob("*"))


def test_an_unknown_file_type_is_refused_before_anything_is_stored(study, researcher, media_root):
    with pytest.raises(ImportFileError, match=r"cannot tell the format of 'notes\.txt'"):
        import_upload(
            study=study, upload=SimpleUploadedFile("notes.txt", b"hi"), format=None, options={}, by=researcher
        )
    assert not media_root.exists() and not ImportJob.objects.exists()
