"""The upload forms: a file is required, the name is optional, the format is
detected from the file unless chosen, and only known files are accepted."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.forms import FORMAT_AUTO, ImportUploadForm, StudyImportForm
from annotation.imports.jsonl import parse_jsonl
from tests.annotation.imports.samples import GOOD_RECORDS, jsonl


def test_import_form_requires_a_file_and_leaves_name_optional() -> None:
    upload = SimpleUploadedFile("prompts.jsonl", jsonl(GOOD_RECORDS[0]), content_type="application/jsonl")

    form = StudyImportForm(data={}, files={"file": upload})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["name"] == ""
    assert parse_jsonl(form.cleaned_data["file"])[0].external_id == "p1"

    assert not StudyImportForm(data={"name": "x"}, files={}).is_valid()


def test_the_format_is_detected_unless_chosen_and_the_file_is_left_at_its_start() -> None:
    hh = b'{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: yo", "rejected": "\\n\\nHuman: hi\\n\\nAssistant: no"}\n'
    detected = ImportUploadForm(data={"format": FORMAT_AUTO}, files={"file": SimpleUploadedFile("a.jsonl", hh)})
    assert detected.is_valid(), detected.errors
    assert detected.cleaned_data["format"] == "hh_rlhf"
    assert detected.cleaned_data["file"].read() == hh

    chosen = ImportUploadForm(data={"format": "jsonl"}, files={"file": SimpleUploadedFile("a.jsonl", hh)})
    assert chosen.is_valid() and chosen.cleaned_data["format"] == "jsonl"


def test_an_unknown_file_type_is_named_on_the_file_field() -> None:
    form = ImportUploadForm(data={}, files={"file": SimpleUploadedFile("notes.txt", b"hello")})
    assert not form.is_valid()
    assert form.errors["file"] == [
        "cannot tell the format of 'notes.txt': expected .jsonl, .jsonl.gz, .csv, .parquet "
        "or .zip (a Hugging Face dataset saved with save_to_disk)"
    ]


def test_the_forms_describe_every_format() -> None:
    form = ImportUploadForm()
    help_text = form.fields["file"].help_text
    for described in ("JSONL (.jsonl", "HH-RLHF JSONL", "CSV with a header row", "Parquet", "save_to_disk"):
        assert described in help_text
    assert help_text.endswith("the field (unless invalid rows are skipped and reported).")
    assert "compressed (.gz, .bz2, .xz)" in help_text
    assert [key for key, _ in form.fields["format"].choices] == [
        FORMAT_AUTO,
        "jsonl",
        "csv",
        "hh_rlhf",
        "parquet",
        "hf_disk",
    ]
    assert "(.jsonl, .jsonl.gz, .csv, .parquet, .zip)" in form.fields["format"].help_text
