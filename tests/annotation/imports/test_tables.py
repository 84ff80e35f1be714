"""Parquet files and Hugging Face datasets, imported in the background."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.imports.registry import detect_format
from annotation.models import Candidate, ImportJob
from tests.annotation.imports.samples import counts, parquet_bytes, stored_upload


def test_parquet_with_message_lists_imports_in_the_background(
    client_for, researcher, study, eager_tasks, django_capture_on_commit_callbacks
):
    rows = [
        {
            "prompt": f"Question {i}?",
            "chosen": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Good {i}"}],
            "rejected": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Bad {i}"}],
            "score": i,
        }
        for i in range(30)
    ]
    before = counts(study)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(researcher).post(
            reverse("study_import", args=[study.slug]),
            {"file": SimpleUploadedFile("prefs.parquet", parquet_bytes(rows))},
        )
    job = ImportJob.objects.get(study=study)
    assert response["Location"] == reverse("import_job_detail", args=[study.slug, job.pk])
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE, job.error
    assert (job.format, job.total, job.processed, job.percent) == ("parquet", 30, 30, 100)
    assert job.result["candidates_created"] == 60
    assert counts(study) == (before[0] + 30, before[1] + 60)
    good = Candidate.objects.get(study=study, text="Good 7")
    assert good.metadata == {"score": 7, "preference": "chosen"}
    assert good.prompt.metadata == {"known_preference": ["chosen", "rejected"]}
    assert not stored_upload(job).exists()  # the upload is removed once imported


def test_bad_parquet_row_fails_the_job_and_imports_nothing(
    client_for, researcher, study, eager_tasks, django_capture_on_commit_callbacks
):
    rows = [{"prompt": f"P{i}", "responses": [f"a{i}", f"b{i}"]} for i in range(5)]
    rows[3]["prompt"] = " "
    before = counts(study)
    with django_capture_on_commit_callbacks(execute=True):
        client_for(researcher).post(
            reverse("study_import", args=[study.slug]), {"file": SimpleUploadedFile("x.parquet", parquet_bytes(rows))}
        )
    job = ImportJob.objects.get(study=study)
    assert job.status == ImportJob.Status.FAILED
    assert "row 4" in job.error and 'field "prompt"' in job.error
    assert counts(study) == before
    assert not stored_upload(job).exists()  # a failed job removes its upload too
    page = client_for(researcher).get(reverse("import_job_detail", args=[study.slug, job.pk])).content.decode()
    assert "row 4" in page and 'data-status="failed"' in page


def zipped_dataset(tmp_path: Path, dataset) -> bytes:
    folder = tmp_path / "saved"
    dataset.save_to_disk(str(folder))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.rglob("*"):
            archive.write(path, Path("my_dataset") / path.relative_to(folder))
    return buffer.getvalue()


def test_hugging_face_dataset_saved_to_disk(
    tmp_path, client_for, researcher, study, eager_tasks, django_capture_on_commit_callbacks
):
    import datasets

    data = datasets.Dataset.from_dict(
        {"prompt": ["Tell a joke", "Name a tree"], "responses": [["A", "B", "C"], ["Oak", "Elm"]]}
    )
    splits = datasets.DatasetDict({"train": data, "test": data.select([0])})
    content = zipped_dataset(tmp_path, splits)
    assert detect_format("ds.zip") == "hf_disk"
    client = client_for(researcher)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("study_import", args=[study.slug]), {"file": SimpleUploadedFile("ds.zip", content)})
    failed = ImportJob.objects.get(study=study)
    assert failed.status == ImportJob.Status.FAILED and "several splits" in failed.error

    before = counts(study)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("study_import", args=[study.slug]),
            {"file": SimpleUploadedFile("ds.zip", content), "split": "train", "options_shown": "1"},
        )
    job = ImportJob.objects.exclude(pk=failed.pk).get(study=study)
    assert job.status == ImportJob.Status.DONE, job.error
    assert counts(study) == (before[0] + 2, before[1] + 5)
    assert set(Candidate.objects.filter(study=study, prompt__text="Name a tree").values_list("text", flat=True)) == {
        "Oak",
        "Elm",
    }
