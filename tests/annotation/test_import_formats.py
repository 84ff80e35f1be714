"""Import formats (CSV, HH-RLHF, Parquet, Hugging Face datasets) and background
import jobs with progress: round trips, bad rows named, all or nothing, and
who may see a job."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation import importing
from annotation.importing import ImportFileError, detect_format, parse_csv, parse_hh_rlhf
from annotation.models import Candidate, ImportJob, Prompt, Study
from webapp.celery import app as celery_app

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def eager_tasks(monkeypatch):
    """Run Celery tasks in-process when enqueued (on commit), as a worker would."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", True)


def counts(study: Study) -> tuple[int, int]:
    return Prompt.objects.filter(study=study).count(), Candidate.objects.filter(study=study).count()


def upload(client, study: Study, name: str, content: bytes, **data):
    return client.post(
        reverse("study_import", args=[study.slug]),
        {"file": SimpleUploadedFile(name, content), **data},
        follow=True,
    )


# --- CSV ---------------------------------------------------------------------------


def test_csv_wide_rows_round_trip(client_for, researcher, study):
    content = (
        b"prompt,response_1,response_2,source_1,source_2,topic\n"
        b'Name a colour,Red,"Blue, deep",model-a,model-b,art\n'
        b"Say hi,Hello,,model-a,,chat\n"
    )
    before = counts(study)
    response = upload(client_for(researcher), study, "pairs.csv", content)
    assert "Imported 2 new prompts" in response.content.decode()
    assert counts(study) == (before[0] + 2, before[1] + 3)
    blue = Candidate.objects.get(study=study, text="Blue, deep")
    assert blue.source == "model-b" and blue.metadata == {"topic": "art"}
    assert blue.prompt.text == "Name a colour"


def test_csv_long_format_groups_rows_by_prompt_id():
    content = (
        "prompt_id,prompt,response,source\n"
        "p1,What is 2+2?,4,small\n"
        "p1,,Four.,large\n"
        "p2,Capital of France?,Paris,small\n"
    )
    records = parse_csv(io.StringIO(content))
    assert [r.external_id for r in records] == ["p1", "p1", "p2"]
    assert records[1].text == "What is 2+2?"
    assert [c.source for r in records for c in r.candidates] == ["small", "large", "small"]


@pytest.mark.parametrize(
    ("content", "where", "field"),
    [
        ("prompt,response\nok,fine\n,orphan\n", "row 3", "prompt"),
        ("prompt,response\nok,fine\nalso ok,\n", "row 3", None),
        ("prompt_id,prompt,response\np1,First,a\np1,Second,b\n", "row 3", "prompt"),
        ("prompt,response,format\nok,fine,html\n", "row 2", "format"),
        ("question,answer\nq,a\n", None, "prompt"),
        ("prompt,chosen,rejected\nq,good,\n", "row 2", "rejected"),
    ],
)
def test_bad_csv_rows_are_named(content, where, field):
    with pytest.raises(ImportFileError) as caught:
        parse_csv(io.StringIO(content))
    if where:
        assert str(caught.value).startswith(where)
    assert caught.value.field == field


def test_bad_csv_upload_imports_nothing(client_for, researcher, study):
    before = counts(study)
    content = b"prompt,response_1,response_2\nfine,a,b\nalso fine,c,d\n,e,f\n"
    response = upload(client_for(researcher), study, "bad.csv", content)
    html = response.content.decode()
    assert "Nothing imported" in html and "row 4" in html and "prompt" in html
    assert counts(study) == before


# --- HH-RLHF -----------------------------------------------------------------------

HH_PREFIX = "\n\nHuman: How do I boil an egg?\n\nAssistant: Which kind?\n\nHuman: Soft."
HH_LINE = {
    "chosen": HH_PREFIX + "\n\nAssistant: Six minutes.",
    "rejected": HH_PREFIX + "\n\nAssistant: Microwave it.",
}


def test_hh_rlhf_prompt_is_the_shared_transcript_and_candidates_the_last_turns(client_for, researcher, study):
    content = (json.dumps(HH_LINE) + "\n").encode()
    assert detect_format("train.jsonl", content) == ImportJob.Format.HH_RLHF
    response = upload(client_for(researcher), study, "train.jsonl", content)
    assert "Imported 1 new prompts" in response.content.decode()
    prompt = Prompt.objects.get(study=study, text__startswith="Human: How do I boil")
    assert prompt.text.endswith("Human: Soft.")
    assert "Assistant: Which kind?" in prompt.text
    chosen, rejected = prompt.candidates.order_by("id")
    assert (chosen.text, chosen.metadata) == ("Six minutes.", {"preference": "chosen"})
    assert (rejected.text, rejected.metadata) == ("Microwave it.", {"preference": "rejected"})


def test_hh_rlhf_without_recording_the_preference():
    (record,) = parse_hh_rlhf([json.dumps(HH_LINE)], record_preference=False)
    assert record.metadata == {} and all(c.metadata == {} for c in record.candidates)


def test_hh_rlhf_transcripts_that_part_early_keep_what_they_share_as_the_prompt():
    line = {**HH_LINE, "rejected": HH_LINE["rejected"].replace("Soft.", "Hard.")}
    (record,) = parse_hh_rlhf([json.dumps(HH_LINE), json.dumps(line)])[1:]
    assert record.text == "Human: How do I boil an egg?"
    better, worse = record.candidates
    assert better.text == "Which kind?\n\nHuman: Soft.\n\nAssistant: Six minutes."
    assert worse.text == "Which kind?\n\nHuman: Hard.\n\nAssistant: Microwave it."
    assert record.metadata == {"transcripts_diverge_early": True, "known_preference": ["chosen", "rejected"]}
    (usual,) = parse_hh_rlhf([json.dumps(HH_LINE)])
    assert "transcripts_diverge_early" not in usual.metadata


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ({**HH_LINE, "rejected": HH_LINE["rejected"].replace("boil", "fry")}, "rejected", "first"),
        ({**HH_LINE, "chosen": "\n\nHuman: hi"}, "chosen", "Assistant"),
        ({**HH_LINE, "chosen": HH_LINE["chosen"].replace("Six minutes.", "  ")}, "chosen", "empty"),
        ({"chosen": HH_LINE["chosen"]}, "rejected", "required"),
    ],
)
def test_bad_hh_rlhf_lines_are_named(line, field, message):
    good = json.dumps(HH_LINE)
    with pytest.raises(ImportFileError) as caught:
        parse_hh_rlhf([good, good, json.dumps(line)])
    assert caught.value.line == 3 and caught.value.field == field
    assert message in str(caught.value)


# --- Parquet and datasets through background jobs -----------------------------------


def parquet_bytes(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


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
    assert not importing_media(job).exists()  # the upload is removed once imported


def importing_media(job: ImportJob) -> Path:
    from django.conf import settings

    return Path(settings.MEDIA_ROOT) / job.file_path


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
    assert importing_media(job).exists()  # kept for inspection
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
    assert detect_format("ds.zip") == ImportJob.Format.HF_DISK
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


# --- jobs: progress, idempotence, permissions ------------------------------------------


def test_large_upload_goes_to_a_job_with_a_polled_progress_bar(
    client_for, researcher, study, monkeypatch, eager_tasks, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(importing, "SYNC_IMPORT_MAX_BYTES", 100)
    monkeypatch.setattr(importing, "PROGRESS_EVERY", 10)
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

    # What a poller sees while the rows are checked: the job row after each row.
    observed: list[int] = []
    original_tick = importing._tick

    def tick_and_look(callback, count: int) -> None:
        original_tick(callback, count)
        observed.append(ImportJob.objects.get(pk=job.pk).processed)

    monkeypatch.setattr(importing, "_tick", tick_and_look)
    for callback in callbacks:
        callback()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE and job.result["candidates_created"] == 100
    assert sorted(set(observed)) == [0, 10, 20, 30, 40, 50]
    done = client.get(progress_url, **HTMX).content.decode()
    assert "hx-trigger" not in done and "Imported 50 new prompts" in done


def test_a_job_delivered_twice_imports_once(researcher, study, settings):
    content = b'{"prompt": "once", "candidates": ["a", "b"]}\n'
    job = importing.import_job_create(
        study=study,
        upload=SimpleUploadedFile("once.jsonl", content),
        format="jsonl",
        options={},
        created_by=researcher,
    )
    first = importing.import_job_run(job_id=job.pk)
    assert first.status == ImportJob.Status.DONE
    finished_at = first.finished_at
    again = importing.import_job_run(job_id=job.pk)
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


def test_a_job_of_another_study_is_not_found(client_for, researcher, study, make_member):
    from tests.factories import study_with_queue

    other = study_with_queue(n_prompts=1, n_candidates=2)
    job = ImportJob.objects.create(study=other, format="csv", file_path="imports/x/y.csv")
    assert client_for(researcher).get(reverse("import_job_detail", args=[study.slug, job.pk])).status_code == 404


def test_unknown_file_type_is_refused(client_for, researcher, study):
    response = upload(client_for(researcher), study, "notes.txt", b"hello")
    assert "cannot tell the format" in response.content.decode()
    assert not ImportJob.objects.exists()
