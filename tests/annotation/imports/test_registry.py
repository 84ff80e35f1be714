"""The catalogue of import formats: detection from the file name and first bytes,
and a format added to it alone is detected, offered and described by the forms,
valid on an import job and imported, now or by the worker."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import IO

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.forms import ImportUploadForm
from annotation.imports import registry, upload
from annotation.imports.records import CandidateRecord, ImportFileError, Options, Progress, PromptRecord
from annotation.imports.registry import ImportFormat, detect_format
from annotation.models import Candidate, ImportJob
from tests.annotation.imports.samples import HH_LINE, post_upload


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("data.JSONL", "jsonl"),
        ("data.ndjson", "jsonl"),
        ("data.jsonl.gz", "jsonl"),
        ("pairs.csv", "csv"),
        ("table.parquet", "parquet"),
        ("saved.zip", "hf_disk"),
    ],
)
def test_formats_are_told_by_the_file_name(name, key):
    assert detect_format(name, b'{"prompt": "p", "candidates": ["a"]}\n') == key


def test_hh_rlhf_is_told_from_the_first_record_also_when_gzipped_or_cut_short():
    line = (json.dumps(HH_LINE) + "\n").encode()
    assert detect_format("train.jsonl", line) == "hh_rlhf"
    assert detect_format("train.jsonl.gz", gzip.compress(line * 200)) == "hh_rlhf"
    assert detect_format("train.jsonl.gz", gzip.compress(line * 2000)[:300]) == "hh_rlhf"
    assert detect_format("train.jsonl", b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n') == "jsonl"
    assert detect_format("train.jsonl", line[:20]) == "jsonl"  # a partial line: the parser will say what is wrong


def test_an_unknown_file_type_names_what_is_expected():
    with pytest.raises(ImportFileError) as caught:
        detect_format("notes.txt", b"hello")
    assert str(caught.value) == (
        "cannot tell the format of 'notes.txt': expected .jsonl, .jsonl.gz, .csv, .parquet "
        "or .zip (a Hugging Face dataset saved with save_to_disk)"
    )


def test_a_format_is_registered_once_with_a_key_a_job_can_store_and_a_reader():
    spec = registry.get("csv")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(spec)
    with pytest.raises(ValueError, match="1 to 16 characters"):
        ImportFormat("a_very_long_format_key", "Long", suffixes=(".x",), read_file=parse_tsv, count_rows=count_tsv)
    with pytest.raises(ValueError, match="read_file or read_path"):
        ImportFormat("x", "X", suffixes=(".x",), count_rows=count_tsv)
    with pytest.raises(ImportFileError, match="unknown import format 'xml'"):
        registry.get("xml")


# --- a format that exists only here ----------------------------------------------


def parse_tsv(fileobj: IO[bytes], *, options: Options, on_progress: Progress | None = None) -> list[PromptRecord]:
    """A prompt and its responses per line, separated by tabs."""
    records = []
    for number, raw in enumerate(fileobj, start=1):
        prompt, *responses = raw.decode().rstrip("\n").split("\t")
        if not responses:
            raise ImportFileError("has no response", line=number)
        candidates = tuple(CandidateRecord(text=text, source="", metadata={}) for text in responses)
        records.append(
            PromptRecord(external_id="", text=prompt, format="text", metadata={}, candidates=candidates, line=number)
        )
    return records


def count_tsv(path: Path, *, options: Options) -> int | None:
    return sum(1 for _ in path.open("rb"))


TSV = ImportFormat(
    "tsv",
    "Tab-separated (prompt, responses…)",
    suffixes=(".tsv",),
    read_file=parse_tsv,
    count_rows=count_tsv,
    extensions=(".tsv",),
    help="TSV (.tsv, a prompt and its responses per line)",
)


@pytest.fixture
def tsv():
    with registry.registered(TSV) as spec:
        yield spec


def test_a_registered_format_is_detected_offered_and_described_by_the_form(tsv):
    assert detect_format("answers.TSV") == "tsv"
    form = ImportUploadForm()
    assert ("tsv", "Tab-separated (prompt, responses…)") in form.fields["format"].choices
    assert "TSV (.tsv, a prompt and its responses per line)" in form.fields["file"].help_text
    assert ".tsv" in form.fields["format"].help_text
    with pytest.raises(
        ImportFileError, match=r"\.parquet, \.zip \(a Hugging Face dataset saved with save_to_disk\) or \.tsv"
    ):
        detect_format("notes.txt")

    bound = ImportUploadForm(data={}, files={"file": SimpleUploadedFile("a.tsv", b"Hi?\tHello\tHey\n")})
    assert bound.is_valid(), bound.errors
    assert bound.cleaned_data["format"] == "tsv"


def test_a_format_is_valid_on_an_import_job_only_while_registered(study):
    job = ImportJob(study=study, format="tsv", file_path="imports/x/a.tsv")
    with pytest.raises(ValidationError) as caught:
        job.full_clean()
    assert "format" in caught.value.message_dict
    with registry.registered(TSV):
        job.full_clean()
        assert job.get_format_display() == "Tab-separated (prompt, responses…)"


def test_a_registered_format_is_imported_from_the_page(tsv, client_for, researcher, study):
    response = post_upload(client_for(researcher), study, "answers.tsv", b"Hi?\tHello\tHey\nBye?\tCiao\n")
    assert "Imported 2 new prompts" in response.content.decode()
    assert set(Candidate.objects.filter(study=study, prompt__text="Hi?").values_list("text", flat=True)) == {
        "Hello",
        "Hey",
    }


def test_a_registered_format_is_imported_by_the_worker_from_the_stored_file(
    tsv, study, researcher, monkeypatch, eager_tasks, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 10)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = upload.import_upload(
            study=study,
            upload=SimpleUploadedFile("answers.tsv", b"Hi?\tHello\tHey\nBye?\tCiao\n"),
            format=None,
            options={},
            by=researcher,
        )
    job = ImportJob.objects.get(pk=outcome.job.pk)
    assert (job.status, job.total, job.result["candidates_created"]) == ("done", 2, 3), job.error
