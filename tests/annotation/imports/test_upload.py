"""The upload service: a small text file (compressed or not) is imported now, anything larger
or binary becomes a job; either way a bad file writes nothing."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.imports import upload
from annotation.imports.records import ImportFileError, ImportResult
from annotation.imports.upload import import_upload, study_create_from_upload
from annotation.models import ImportJob, Membership, Study
from tests.annotation.imports.samples import HH_LINE, counts, parquet_bytes, post_upload, stored_upload
from tests.shared_data import REAL_HH

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
    content = jsonl_lines(2) + b'{"prompt": "bad", "candidates": [null]}\n'
    expected = r'^line 3, field "candidates\[0\]": must be a string or an object with "text", got null$'
    with pytest.raises(ImportFileError, match=expected):
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
            gzip.compress((json.dumps(HH_LINE) + "\n").encode() * 4000),  # 5 KB holding 1.3 MB
            "hh_rlhf",
            {"record_preference": False},
        ),
    ],
)
def test_binary_files_and_compressed_ones_holding_more_than_the_limit_go_to_the_worker_however_small(
    study, researcher, name, content, format, options
):
    assert len(content) < upload.SYNC_IMPORT_MAX_BYTES
    outcome = import_upload(
        study=study,
        upload=SimpleUploadedFile(name, content),
        format=None,
        options={"record_preference": options["record_preference"], "split": "train"},
        by=researcher,
    )
    assert outcome.result is None
    assert (outcome.job.format, outcome.job.options) == (format, options)  # "split" is not theirs


def test_a_compressed_file_is_imported_by_the_job(
    study, researcher, eager_tasks, monkeypatch, django_capture_on_commit_callbacks
):
    """A small .jsonl.gz used to be parsed in the request as if it were text."""
    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 10)
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


# --- compressed files told by their bytes; skip invalid rows; the real HH file -------------


@pytest.mark.parametrize(("name", "pack"), [("pairs.jsonl.bz2", bz2.compress), ("pairs.csv.xz", lzma.compress)])
def test_bzip2_and_xz_files_are_read_by_the_worker(
    study, researcher, eager_tasks, monkeypatch, name, pack, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 10)
    plain = (
        (json.dumps(HH_LINE) + "\n").encode() if name.startswith("pairs.jsonl") else b"prompt,chosen,rejected\nq,a,b\n"
    )
    with django_capture_on_commit_callbacks(execute=True):
        outcome = import_upload(
            study=study, upload=SimpleUploadedFile(name, pack(plain)), format=None, options={}, by=researcher
        )
    job = ImportJob.objects.get(pk=outcome.job.pk)
    assert job.format == ("hh_rlhf" if "jsonl" in name else "csv")
    assert job.status == ImportJob.Status.DONE, job.error
    assert job.result["candidates_created"] == 2


def test_a_compressed_file_is_told_by_its_bytes_not_its_name(study, researcher):
    """A gzip file named .jsonl was parsed as text in the request ("not valid UTF-8 (byte 2)")."""
    outcome = import_upload(
        study=study,
        upload=SimpleUploadedFile("hh.jsonl", gzip.compress((json.dumps(HH_LINE) + "\n").encode())),
        format=None,
        options={},
        by=researcher,
    )
    assert outcome.job is None and outcome.result.candidates_created == 2


BAD_HH = b'{"chosen": "no turns"}\n'


def test_all_or_nothing_writes_nothing_and_names_the_line_and_field(study, researcher):
    content = (json.dumps(HH_LINE) + "\n").encode() + BAD_HH
    before = counts(study)
    with pytest.raises(ImportFileError, match=r'^line 2, field "rejected": is required$'):
        import_upload(study=study, upload=SimpleUploadedFile("p.jsonl", content), format=None, options={}, by=None)
    assert counts(study) == before
    assert not ImportJob.objects.exists()


def test_skip_invalid_in_the_request_writes_the_valid_rows_and_records_the_report(study, researcher):
    content = BAD_HH + (json.dumps(HH_LINE) + "\n").encode() + b"[1]\n"
    before = counts(study)

    outcome = import_upload(
        study=study, upload=SimpleUploadedFile("p.jsonl", content), format=None, options={}, by=researcher,
        skip_invalid=True,
    )  # fmt: skip

    assert outcome.result.rows_skipped == 2 and outcome.result.candidates_created == 2
    assert counts(study) == (before[0] + 1, before[1] + 2)
    job = outcome.job
    assert (job.status, job.skip_invalid, job.skipped_count) == (ImportJob.Status.DONE, True, 2)
    assert [(r["line"], r["field"], r["raw"]) for r in job.skipped_rows] == [
        (1, "rejected", '{"chosen": "no turns"}'),
        (3, None, "[1]"),
    ]


def test_a_background_job_that_skips_invalid_rows_keeps_them(
    study, researcher, eager_tasks, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 10)
    content = (json.dumps(HH_LINE) + "\n").encode() + BAD_HH
    with django_capture_on_commit_callbacks(execute=True):
        outcome = import_upload(
            study=study, upload=SimpleUploadedFile("p.jsonl", content), format=None, options={}, by=researcher,
            skip_invalid=True,
        )  # fmt: skip
    job = ImportJob.objects.get(pk=outcome.job.pk)
    assert job.status == ImportJob.Status.DONE, job.error
    assert (job.result["candidates_created"], job.result["rows_skipped"], job.skipped_count) == (2, 1, 1)
    assert job.skipped_rows[0]["field"] == "rejected"


def test_the_page_offers_skipping_and_shows_and_serves_the_skipped_rows(client_for, researcher, study):
    client = client_for(researcher)
    assert 'name="on_invalid"' in client.get(reverse("study_settings", args=[study.slug])).content.decode()
    content = (json.dumps(HH_LINE) + "\n").encode() + BAD_HH + b"{oops\n"

    stopped = post_upload(client, study, "p.jsonl", content, options_shown="1", on_invalid="stop")
    assert "Nothing imported: line 2, field &quot;rejected&quot;: is required" in stopped.content.decode()
    assert not ImportJob.objects.exists()
    page = post_upload(client, study, "p.jsonl", content, options_shown="1", on_invalid="skip")

    html = page.content.decode()
    job = ImportJob.objects.get(study=study)
    assert page.redirect_chain[-1][0] == reverse("import_job_detail", args=[study.slug, job.pk])
    assert "Imported 1 new prompt (0 already there) and 2 candidates; 0 duplicates skipped." in html
    assert "2 invalid rows left out" in html and "is required" in html
    report = client.get(reverse("import_job_skipped", args=[study.slug, job.pk]) + "?as=csv")
    assert report["Content-Disposition"].endswith('-skipped.csv"')
    lines = report.content.decode().splitlines()
    assert lines[0] == "line,field,error,raw" and lines[1].startswith("2,rejected,is required,")


@pytest.mark.skipif(not REAL_HH.exists(), reason=f"the public HH-RLHF test split is not at {REAL_HH}")
def test_the_real_hh_rlhf_test_split_imports_fully_through_the_page(
    client_for, researcher, study, eager_tasks, django_capture_on_commit_callbacks
):
    """It was refused whole: four rows end in an empty chosen reply."""
    before = counts(study)
    with django_capture_on_commit_callbacks(execute=True):
        post_upload(client_for(researcher), study, REAL_HH.name, REAL_HH.read_bytes())
    page = client_for(researcher).get(reverse("import_job_detail", args=[study.slug, ImportJob.objects.get().pk]))
    job = ImportJob.objects.get(study=study)
    assert job.status == ImportJob.Status.DONE, job.error
    assert counts(study) == (before[0] + 2312, before[1] + 4624)
    assert "Imported 2312 new prompts (0 already there) and 4624 candidates" in page.content.decode()
