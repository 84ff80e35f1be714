"""Background import jobs: progress while checking and writing, idempotence,
a draft study made from a large file, and who may see a job."""

from __future__ import annotations

import gzip
import io
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from annotation.imports import jobs, records, upload
from annotation.models import Candidate, ImportJob, Prompt, Study
from tests.annotation.imports.samples import HTMX, counts, parquet_bytes
from tests.factories import study_with_queue


def test_large_upload_goes_to_a_job_with_a_polled_progress_bar(
    client_for, researcher, study, monkeypatch, eager_tasks, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 100)
    monkeypatch.setattr(records, "PROGRESS_EVERY", 10)
    monkeypatch.setattr(jobs, "CHECK_PROGRESS_SECONDS", 0)  # every report reaches the row
    lines = "".join(json.dumps({"prompt": f"Prompt {i}", "candidates": [f"x{i}", f"y{i}"]}) + "\n" for i in range(50))
    client = client_for(researcher)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            reverse("study_import", args=[study.slug]), {"file": SimpleUploadedFile("big.jsonl", lines.encode())}
        )
    job = ImportJob.objects.get(study=study)
    assert (job.status, job.format) == ("queued", "jsonl")
    progress_url = reverse("import_job_progress", args=[study.slug, job.pk])
    queued = client.get(progress_url, **HTMX)
    assert 'hx-trigger="every 1s"' in queued.content.decode() and "Waiting for the worker" in queued.content.decode()
    assert client.get(progress_url)["Location"] == response["Location"]  # plain GET: the page
    page = client.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' in page  # the no-JavaScript fallback

    # What a poller sees while the rows are checked: the job row after each report.
    observed: list[int] = []
    checking_progress = jobs._checking_progress

    def report_and_look(job_id: int):
        report = checking_progress(job_id)

        def look(count: int) -> None:
            report(count)
            observed.append(ImportJob.objects.get(pk=job.pk).processed)

        return look

    monkeypatch.setattr(jobs, "_checking_progress", report_and_look)
    for callback in callbacks:
        callback()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE and job.result["candidates_created"] == 100
    assert observed == [10, 20, 30, 40, 50]
    done = client.get(progress_url, **HTMX).content.decode()
    assert "hx-trigger" not in done and "Imported 50 new prompts" in done


def test_a_job_delivered_twice_imports_once(researcher, study, settings):
    content = b'{"prompt": "once", "candidates": ["a", "b"]}\n'
    stored = jobs.import_upload_store(upload=SimpleUploadedFile("once.jsonl", content))
    job = jobs.import_job_create(study=study, stored=stored, format="jsonl", options={}, created_by=researcher)
    first = jobs.import_job_run(job_id=job.pk)
    assert first.status == ImportJob.Status.DONE
    finished_at = first.finished_at
    again = jobs.import_job_run(job_id=job.pk)
    assert again.status == ImportJob.Status.DONE and again.finished_at == finished_at
    assert Candidate.objects.filter(study=study, prompt__text="once").count() == 2


def test_create_study_from_a_large_file_makes_a_draft_and_a_job(
    client_for, researcher, eager_tasks, django_capture_on_commit_callbacks
):
    rows = [{"prompt": f"P{i}", "response_1": "a", "response_2": f"b{i}"} for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(researcher).post(
            reverse("study_create_from_file"),
            {"name": "From parquet", "file": SimpleUploadedFile("d.parquet", parquet_bytes(rows))},
        )
    study = Study.objects.get(name="From parquet")
    assert study.status == Study.Status.DRAFT
    job = ImportJob.objects.get(study=study)
    assert response["Location"] == reverse("import_job_detail", args=[study.slug, job.pk])
    assert job.status == ImportJob.Status.DONE and counts(study) == (3, 6)


@pytest.mark.parametrize("who", ["annotator", "outsider"])
def test_import_jobs_are_hidden_from_annotators_and_strangers(request, client_for, researcher, study, who):
    job = ImportJob.objects.create(study=study, created_by=researcher, format="csv", file_path="imports/x/y.csv")
    client = client_for(request.getfixturevalue(who))
    assert client.get(reverse("import_job_detail", args=[study.slug, job.pk])).status_code == 404
    assert client.get(reverse("import_job_progress", args=[study.slug, job.pk]), **HTMX).status_code == 404
    response = client.post(
        reverse("study_import", args=[study.slug]), {"file": SimpleUploadedFile("a.csv", b"prompt,response\nq,a\n")}
    )
    assert response.status_code == 404
    assert not Prompt.objects.filter(study=study, text="q").exists()


def test_a_job_of_another_study_is_not_found(client_for, researcher, study):
    other = study_with_queue(n_prompts=1, n_candidates=2)
    job = ImportJob.objects.create(study=other, format="csv", file_path="imports/x/y.csv")
    assert client_for(researcher).get(reverse("import_job_detail", args=[study.slug, job.pk])).status_code == 404


def test_uploads_no_job_needs_are_pruned_after_each_job_and_by_the_command(
    study, media_root, monkeypatch, eager_tasks, django_capture_on_commit_callbacks
):
    """Failed jobs used to keep their files (232 MB after a fuzz run); what they left goes."""
    imports = media_root / "imports"
    two_hours_ago = (timezone.now() - timedelta(hours=2)).timestamp()

    def stored(name: str, *, old: bool) -> Path:
        path = imports / name / "x.jsonl"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"{}\n")
        if old:
            for touched in (path, path.parent):
                os.utime(touched, (two_hours_ago, two_hours_ago))
        return path.parent

    left_by_a_failed_job = stored("failed", old=True)
    being_stored_now = stored("fresh", old=False)
    waiting_for_the_worker = stored("queued", old=True)
    ImportJob.objects.create(study=study, format="jsonl", file_path="imports/queued/x.jsonl", original_name="x.jsonl")

    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 10)
    content = b'{"prompt": "p", "candidates": ["a", "b"]}\n'
    with django_capture_on_commit_callbacks(execute=True):
        done = upload.import_upload(
            study=study, upload=SimpleUploadedFile("ok.jsonl", content), format=None, options={}, by=None
        )
    assert ImportJob.objects.get(pk=done.job.pk).status == ImportJob.Status.DONE
    assert not left_by_a_failed_job.exists()
    assert being_stored_now.exists() and waiting_for_the_worker.exists()
    assert sorted(p.name for p in imports.iterdir()) == ["fresh", "queued"]  # the job's own upload went too

    out = io.StringIO()
    call_command("prune_imports", "--older-than-minutes", "0", stdout=out)
    assert out.getvalue().strip() == "Removed 1 stored upload."
    assert not being_stored_now.exists() and waiting_for_the_worker.exists()


def test_checking_a_file_of_millions_of_blank_lines_writes_its_progress_a_few_times(
    researcher, study, django_assert_max_num_queries
):
    """A few KB of gzip can hold millions of lines: progress went to the job
    row every 1,000 of them (thousands of writes, minutes on SQLite); now at
    most every half second."""
    content = gzip.compress(b"\n" * 200_000 + b'{"prompt": "p", "candidates": ["a"]}\n')
    stored = jobs.import_upload_store(upload=SimpleUploadedFile("blank.jsonl.gz", content))
    job = jobs.import_job_create(study=study, stored=stored, format="jsonl", options={}, created_by=researcher)
    with django_assert_max_num_queries(40):  # claim, count, progress, write, finish; 200 reports before
        finished = jobs.import_job_run(job_id=job.pk)
    assert finished.status == ImportJob.Status.DONE and finished.result["candidates_created"] == 1
