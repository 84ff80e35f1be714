"""Hostile files end in a clean refusal on every import path, never a server
error or a job that crashes or runs for ever: text a database cannot store (NUL
characters, lone surrogates), JSON nested a thousand deep, NaN and Infinity,
integers past Python's 4,300-digit limit, corrupt or truncated compressed
files, empty zips, damaged Parquet and datasets with garbage metadata. Each is
refused naming the line (or row) and field where there is one, writes nothing,
and a failed job leaves no file behind. A small compressed text file is
imported during the request like a plain one."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.imports import registry, upload
from annotation.imports.records import ImportFileError
from annotation.imports.upload import import_upload
from annotation.models import ImportJob, Study
from tests.annotation.imports.samples import HH_LINE, counts, parquet_bytes
from tests.annotation.test_api import api_as

pytestmark = pytest.mark.django_db

GOOD_LINE = '{"prompt": "Fine", "candidates": ["a", "b"]}\n'


def jsonl_with(second: str) -> bytes:
    """A good first line, then ``second`` (raw JSON text, escapes as written)."""
    return (GOOD_LINE + second + "\n").encode("utf-8")


DEEP = "[" * 1200 + "]" * 1200
# (JSONL file, the whole message it is refused with)
HOSTILE_JSONL = {
    "nul in the prompt": (
        jsonl_with(r'{"prompt": "a\u0000b", "candidates": ["x"]}'),
        r'line 2, field "prompt": contains a NUL character (\u0000), which cannot be stored',
    ),
    "nul in a candidate": (
        jsonl_with(r'{"prompt": "p", "candidates": ["x", {"text": "y\u0000"}]}'),
        r'line 2, field "candidates[1].text": contains a NUL character (\u0000), which cannot be stored',
    ),
    "nul in a metadata key": (
        jsonl_with(r'{"prompt": "p", "candidates": ["x"], "metadata": {"k\u0000": 1}}'),
        r'line 2, field "metadata": has a key that contains a NUL character (\u0000), which cannot be stored',
    ),
    "lone surrogate": (
        jsonl_with(r'{"prompt": "p", "candidates": ["x", "\ud800"]}'),
        r'line 2, field "candidates[1]": contains a lone surrogate (\ud800), which is not valid Unicode',
    ),
    "lone surrogate in an unknown key": (
        jsonl_with(r'{"prompt": "p", "candidates": ["x"], "\udfff": 1}'),
        r"line 2: has a key that contains a lone surrogate (\udfff), which is not valid Unicode",
    ),
    "nesting a thousand deep": (
        jsonl_with('{"prompt": "p", "candidates": ["x"], "metadata": {"deep": ' + DEEP + "}}"),
        "line 2: nested more than 64 levels deep",
    ),
    "nesting a hundred deep": (
        jsonl_with('{"prompt": "p", "candidates": ["x"], "metadata": {"deep": ' + "[" * 100 + "]" * 100 + "}}"),
        'line 2, field "metadata": nested more than 64 levels deep',
    ),
    "NaN": (
        jsonl_with('{"prompt": "p", "candidates": ["x"], "metadata": {"score": NaN}}'),
        'line 2, field "metadata.score": NaN is not a number that can be stored; use null or a string',
    ),
    "Infinity": (
        jsonl_with('{"prompt": "p", "candidates": [{"text": "x", "metadata": {"t": [1, -Infinity]}}]}'),
        'line 2, field "candidates[0].metadata.t[1]": -Infinity is not a number that can be stored; '
        "use null or a string",
    ),
    "a float too large": (
        jsonl_with('{"prompt": "p", "candidates": ["x"], "metadata": {"big": 1e999}}'),
        'line 2, field "metadata.big": a number too large to store (it reads as infinity)',
    ),
    "a 5,000-digit integer": (
        jsonl_with('{"prompt": "p", "candidates": ["x"], "metadata": {"n": ' + "7" * 5000 + "}}"),
        "line 2: a number with more than 4300 digits",
    ),
    "a 5,000-digit gold index": (
        jsonl_with('{"prompt": "p", "candidates": ["x", "y"], "gold": {"better": ' + "1" * 5000 + ', "worse": 0}}'),
        "line 2: a number with more than 4300 digits",
    ),
}
HH_NUL = (
    (json.dumps(HH_LINE) + "\n" + json.dumps({**HH_LINE, "rejected": HH_LINE["rejected"] + "\0"}) + "\n").encode(),
    r'line 2, field "rejected": contains a NUL character (\u0000), which cannot be stored',
)


def refusal(study: Study, content: bytes, name: str = "hostile.jsonl") -> ImportFileError:
    """The error an in-request import of ``content`` raises."""
    with pytest.raises(ImportFileError) as caught:
        import_upload(study=study, upload=SimpleUploadedFile(name, content), format=None, options={}, by=None)
    return caught.value


@pytest.mark.parametrize("kind", list(HOSTILE_JSONL))
def test_hostile_jsonl_is_refused_in_the_request_naming_the_line_and_field(study, kind):
    content, message = HOSTILE_JSONL[kind]
    before = counts(study)
    assert str(refusal(study, content)) == message
    assert counts(study) == before and not ImportJob.objects.exists()


def test_hostile_hh_rlhf_is_refused_naming_the_line_and_field(study):
    content, message = HH_NUL
    assert str(refusal(study, content, "pairs.jsonl")) == message


def test_a_nul_in_a_csv_cell_is_refused_naming_the_row_and_column(study):
    content = b"prompt,response_1,response_2\nq,a,b\nr,c\0,d\n"
    assert str(refusal(study, content, "t.csv")) == (
        r'row 3, field "response_1": contains a NUL character (\u0000), which cannot be stored'
    )


def test_a_nul_in_a_csv_header_is_refused(study):
    assert "contains a NUL character" in str(refusal(study, b"prompt,resp\0onse\nq,a\n", "t.csv"))


def test_skipping_invalid_rows_skips_the_hostile_ones_and_keeps_a_storable_report(study, researcher):
    hostile = "\n".join(
        [
            r'{"prompt": "p1", "candidates": ["x"], "x\u0000y": 1}',
            r'{"prompt": "p2", "candidates": ["\ud800"]}',
            '{"prompt": "p3", "candidates": ["x"], "metadata": {"s": NaN}}',
            "{\0 not json",
        ]
    )
    outcome = import_upload(
        study=study, upload=SimpleUploadedFile("h.jsonl", jsonl_with(hostile)), format=None, options={},
        by=researcher, skip_invalid=True,
    )  # fmt: skip
    assert outcome.result.rows_skipped == 4 and outcome.result.candidates_created == 2
    job = ImportJob.objects.get(pk=outcome.job.pk)
    assert [row["line"] for row in job.skipped_rows] == [2, 3, 4, 5]
    for row in job.skipped_rows:
        for value in row.values():
            assert not isinstance(value, str) or ("\0" not in value and value.encode("utf-8"))
    assert job.skipped_rows[0]["field"] is None and "NUL" in job.skipped_rows[0]["error"]


# --- what a database cannot store, as the writer sees it (a format that did not check) -----------


def test_the_writer_refuses_records_a_database_cannot_store_from_any_format(study, researcher):
    from annotation.imports.records import CandidateRecord, PromptRecord

    def parse(fileobj, *, options, on_progress=None):
        return [
            PromptRecord(
                external_id="",
                text="p",
                format="text",
                metadata={},
                candidates=(CandidateRecord(text="ok", source="m\0", metadata={}),),
                line=7,
            )
        ]

    spec = registry.ImportFormat("plugin", "Plug-in", suffixes=(".plug",), read_file=parse, count_rows=lambda p, **k: 1)
    before = counts(study)
    with registry.registered(spec), pytest.raises(ImportFileError) as caught:
        import_upload(study=study, upload=SimpleUploadedFile("x.plug", b"x"), format=None, options={}, by=None)
    assert str(caught.value) == (
        r'line 7, field "candidates[0].source": contains a NUL character (\u0000), which cannot be stored'
    )
    assert counts(study) == before


# --- compressed files -----------------------------------------------------------------------------


@pytest.mark.parametrize("pack", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"])
def test_a_small_compressed_text_file_is_decompressed_and_imported_in_the_request(study, researcher, pack):
    outcome = import_upload(
        study=study, upload=SimpleUploadedFile("small.jsonl.gz", pack(jsonl_with(GOOD_LINE.replace("Fine", "Also")))),
        format=None, options={}, by=researcher,
    )  # fmt: skip
    assert outcome.job is None and outcome.result.candidates_created == 4
    assert not ImportJob.objects.exists()


def test_a_compressed_file_that_holds_more_than_the_request_limit_goes_to_the_worker(study, researcher, monkeypatch):
    plain = "".join(json.dumps({"prompt": f"P{i}", "candidates": ["a", "b"]}) + "\n" for i in range(20)).encode()
    packed = gzip.compress(plain)
    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", len(packed))
    outcome = import_upload(
        study=study, upload=SimpleUploadedFile("big.jsonl.gz", packed), format=None, options={}, by=researcher
    )
    assert outcome.result is None and outcome.job.status == ImportJob.Status.QUEUED


CORRUPT_GZIP = gzip.compress(GOOD_LINE.encode() * 50)[:10] + b"\xff" * 40  # a reserved deflate block type
TRUNCATED_GZIP = gzip.compress(GOOD_LINE.encode() * 50)[:-12]
BAD_XZ = lzma.compress(GOOD_LINE.encode())[:20] + b"\x00" * 30


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (CORRUPT_GZIP, "cannot read the file: Error -3 while decompressing data"),
        (TRUNCATED_GZIP, "cannot read the file: Compressed file ended before the end-of-stream marker"),
        (BAD_XZ, "cannot read the file: "),
    ],
    ids=["corrupt gzip", "truncated gzip", "corrupt xz"],
)
def test_a_damaged_compressed_file_is_refused_in_the_request(study, content, reason):
    assert str(refusal(study, content, "c.jsonl.gz")).startswith(reason)


# --- background jobs: a failed state with a readable message, and no file left ---------------------


def empty_zip() -> bytes:
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    return buffer.getvalue()


def damaged_parquet() -> bytes:
    """A Parquet file whose footer is intact but whose first page header is garbage."""
    content = bytearray(parquet_bytes([{"prompt": f"P{i}", "response": f"r{i}"} for i in range(50)]))
    content[4:60] = b"\xfe" * 56
    return bytes(content)


def dataset_zip(tmp_path: Path, spoil: dict[str, bytes]) -> bytes:
    """A zipped ``save_to_disk`` folder with some of its files replaced by ``spoil``."""
    import datasets

    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"prompt": ["p"], "response": ["r"]}).save_to_disk(str(folder))
    for name, content in spoil.items():
        (folder / name).write_bytes(content)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.rglob("*"):
            archive.write(path, Path("ds") / path.relative_to(folder))
    return buffer.getvalue()


def run_job(study, name: str, content: bytes, capture) -> ImportJob:
    with capture(execute=True):
        outcome = import_upload(study=study, upload=SimpleUploadedFile(name, content), format=None, options={}, by=None)
    assert outcome.job is not None, "expected a background job"
    return ImportJob.objects.get(pk=outcome.job.pk)


JOB_CASES = {
    "nul in a large JSONL": (
        "big.jsonl",
        lambda tmp: jsonl_with(r'{"prompt": "a\u0000", "candidates": ["x"]}'),
        r'Nothing imported: line 2, field "prompt": contains a NUL character (\u0000)',
    ),
    "NaN in a large JSONL": (
        "big.jsonl",
        lambda tmp: jsonl_with('{"prompt": "p", "candidates": ["x"], "metadata": {"s": NaN}}'),
        'Nothing imported: line 2, field "metadata.s": NaN is not a number',
    ),
    "deep nesting in a large JSONL": (
        "big.jsonl",
        lambda tmp: jsonl_with('{"prompt": "p", "candidates": ["x"], "metadata": ' + DEEP + "}"),
        "Nothing imported: line 2: nested more than 64 levels deep",
    ),
    "a 5,000-digit integer in a large JSONL": (
        "big.jsonl",
        lambda tmp: jsonl_with('{"prompt": "p", "candidates": ["x"], "metadata": {"n": ' + "7" * 5000 + "}}"),
        "Nothing imported: line 2: a number with more than 4300 digits",
    ),
    "corrupt gzip": ("c.jsonl.gz", lambda tmp: CORRUPT_GZIP, "Nothing imported: cannot read the file: Error -3"),
    "truncated gzip": ("t.jsonl.gz", lambda tmp: TRUNCATED_GZIP, "Nothing imported: cannot read the file: Compressed"),
    "corrupt gzip CSV": ("c.csv.gz", lambda tmp: CORRUPT_GZIP, "Nothing imported: cannot read the file: Error -3"),
    "empty zip": ("e.zip", lambda tmp: empty_zip(), "Nothing imported: the zip archive is empty"),
    "not a zip": ("n.zip", lambda tmp: b"PK\x03\x04garbage", "Nothing imported: not a readable zip archive"),
    "truncated parquet": (
        "t.parquet",
        lambda tmp: parquet_bytes([{"prompt": "p", "response": "r"}])[:-30],
        "Nothing imported: not a readable Parquet file",
    ),
    "damaged parquet": ("d.parquet", lambda tmp: damaged_parquet(), "Nothing imported: the Parquet file is damaged"),
    "nul in a parquet cell": (
        "n.parquet",
        lambda tmp: parquet_bytes([{"prompt": "p", "response": "r"}, {"prompt": "q\0", "response": "s"}]),
        r'Nothing imported: row 2, field "prompt": contains a NUL character (\u0000)',
    ),
    "NaN in a parquet column": (
        "f.parquet",
        lambda tmp: parquet_bytes([{"prompt": "p", "response": "r", "score": float("nan")}]),
        'Nothing imported: row 1, field "score": NaN is not a number that can be stored',
    ),
    "garbage dataset state": (
        "g.zip",
        lambda tmp: dataset_zip(tmp, {"state.json": b'{"_data_files": 7}'}),
        "Nothing imported: not a dataset saved with save_to_disk",
    ),
    "garbage dataset info": (
        "g.zip",
        lambda tmp: dataset_zip(tmp, {"dataset_info.json": b"[1, 2"}),
        "Nothing imported: not a dataset saved with save_to_disk",
    ),
    "garbage dataset table": (
        "g.zip",
        lambda tmp: dataset_zip(tmp, {"data-00000-of-00001.arrow": b"\xff" * 64}),
        "Nothing imported: not a dataset saved with save_to_disk",
    ),
}


@pytest.mark.parametrize("kind", list(JOB_CASES))
def test_a_hostile_file_fails_its_job_with_a_readable_message_and_leaves_no_file(
    study, kind, tmp_path, media_root, monkeypatch, eager_tasks, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 10)
    name, make, start = JOB_CASES[kind]
    before = counts(study)
    job = run_job(study, name, make(tmp_path), django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.FAILED and job.finished_at is not None
    assert job.error.startswith(start), job.error
    assert "\0" not in job.error
    assert counts(study) == before
    assert not any(path.is_file() for path in media_root.rglob("*")), "a failed job removes its upload"


def test_a_job_whose_failure_message_holds_nul_and_surrogates_still_fails_readably(
    study, media_root, monkeypatch, eager_tasks, django_capture_on_commit_callbacks
):
    """The failure used to be unwritable on PostgreSQL, and the page polled for ever."""

    def parse(path, *, options, on_progress=None, skipped=None):
        raise ImportFileError("bad \0 byte and \ud800 half" + " and more" * 2000)

    spec = registry.ImportFormat("nasty", "Nasty", suffixes=(".nasty",), read_path=parse, count_rows=lambda p, **k: 0)
    with registry.registered(spec):
        job = run_job(study, "x.nasty", b"anything", django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.FAILED
    assert job.error.startswith(r"Nothing imported: bad \u0000 byte and \ud800 half and more")
    assert len(job.error) <= 5000
    assert not any(path.is_file() for path in media_root.rglob("*"))


def test_a_job_that_fails_unexpectedly_still_fails_and_removes_its_file(
    study, media_root, monkeypatch, eager_tasks, django_capture_on_commit_callbacks
):
    def parse(path, *, options, on_progress=None, skipped=None):
        raise RuntimeError("a bug")

    spec = registry.ImportFormat("buggy", "Buggy", suffixes=(".buggy",), read_path=parse, count_rows=lambda p, **k: 0)
    with registry.registered(spec), pytest.raises(RuntimeError):
        run_job(study, "x.buggy", b"anything", django_capture_on_commit_callbacks)
    job = ImportJob.objects.get(study=study)
    assert job.status == ImportJob.Status.FAILED and "worker log" in job.error
    assert not any(path.is_file() for path in media_root.rglob("*"))


def test_a_successful_job_removes_its_upload_and_unpacked_dataset_too(
    study, tmp_path, media_root, monkeypatch, eager_tasks, django_capture_on_commit_callbacks
):
    job = run_job(study, "ok.zip", dataset_zip(tmp_path, {}), django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.DONE, job.error
    assert not any(path.exists() for path in media_root.rglob("*") if path.name != "imports")


# --- the page, the API and the command line ------------------------------------------------------


PATH_CASES = ["nul in the prompt", "lone surrogate", "nesting a thousand deep", "NaN", "a 5,000-digit integer"]


@pytest.mark.parametrize("kind", PATH_CASES)
def test_the_upload_page_refuses_hostile_files_with_a_message(client_for, researcher, study, kind):
    content, message = HOSTILE_JSONL[kind]
    response = client_for(researcher).post(
        reverse("study_import", args=[study.slug]), {"file": SimpleUploadedFile("h.jsonl", content)}, follow=True
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [f"Nothing imported: {message}"]


def test_the_upload_page_refuses_a_file_whose_first_line_is_nested_a_thousand_deep(client_for, researcher, study):
    """Telling the format reads the first line, and used to overflow on it (a server error)."""
    content = ('{"chosen": ' + DEEP + "}\n").encode()
    response = client_for(researcher).post(
        reverse("study_import", args=[study.slug]), {"file": SimpleUploadedFile("h.jsonl", content)}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [
        "Nothing imported: line 1: nested more than 64 levels deep"
    ]


def test_the_upload_page_refuses_a_corrupt_gzip_with_a_message(client_for, researcher, study):
    response = client_for(researcher).post(
        reverse("study_import", args=[study.slug]),
        {"file": SimpleUploadedFile("c.jsonl.gz", CORRUPT_GZIP)},
        follow=True,
    )
    assert response.status_code == 200
    (shown,) = (str(m) for m in response.context["messages"])
    assert shown.startswith("Nothing imported: cannot read the file: Error -3")


def test_creating_a_study_from_a_hostile_file_creates_nothing(client_for, researcher):
    content, message = HOSTILE_JSONL["lone surrogate"]
    response = client_for(researcher).post(
        reverse("study_create_from_file"), {"file": SimpleUploadedFile("h.jsonl", content), "name": "H"}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [f"No study created: {message}"]
    assert not Study.objects.filter(name="H").exists()


@pytest.mark.parametrize("kind", PATH_CASES)
def test_the_api_refuses_hostile_files_with_400(researcher, study, kind):
    content, message = HOSTILE_JSONL[kind]
    response = api_as(researcher).post(
        f"/api/v1/studies/{study.slug}/imports/", {"file": SimpleUploadedFile("h.jsonl", content)}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": f"Nothing imported: {message}"}


def test_the_api_refuses_inline_records_with_a_lone_surrogate_with_400(researcher, study):
    body = '{"records": [{"prompt": "p", "candidates": ["ok"]}, {"prompt": "p\\udc00", "candidates": ["x"]}]}'
    before = counts(study)
    response = api_as(researcher).post(f"/api/v1/studies/{study.slug}/imports/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "records": [r'record 2, field "prompt": contains a lone surrogate (\udc00), which is not valid Unicode']
    }
    assert counts(study) == before


def test_the_api_refuses_inline_records_with_a_nul_naming_the_record_and_field(researcher, study):
    body = '{"records": [{"prompt": "p", "candidates": ["ok", "x\\u0000"]}]}'
    response = api_as(researcher).post(f"/api/v1/studies/{study.slug}/imports/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "records": [r'record 1, field "candidates[1]": contains a NUL character (\u0000), which cannot be stored']
    }


CLI_CASES = {
    **{kind: ("h.jsonl", HOSTILE_JSONL[kind][0], HOSTILE_JSONL[kind][1]) for kind in PATH_CASES},
    "corrupt gzip": ("c.jsonl.gz", CORRUPT_GZIP, "cannot read the file: Error -3"),
    "empty zip": ("e.zip", empty_zip(), "the zip archive is empty"),
    "damaged parquet": ("d.parquet", damaged_parquet(), "the Parquet file is damaged"),
}


@pytest.mark.parametrize("kind", list(CLI_CASES))
def test_the_command_line_refuses_hostile_files_with_a_command_error(tmp_path, kind):
    name, content, message = CLI_CASES[kind]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CommandError) as caught:
        call_command("import_study", str(path), "--name", "Hostile", stdout=io.StringIO(), stderr=io.StringIO())
    assert str(caught.value).startswith(f"{path}: nothing imported: {message}"), str(caught.value)
    assert not Study.objects.exists()


def test_the_command_line_refuses_a_study_name_from_a_file_name_that_is_not_utf8(tmp_path):
    path = tmp_path / "caf\udce9.jsonl"  # b"caf\xe9.jsonl" on disk, as Python reads a Latin-1 name
    try:
        path.write_bytes(GOOD_LINE.encode())
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system does not take the name")
    with pytest.raises(CommandError, match=r"lone surrogate \(\\udce9\).*pass --name"):
        call_command("import_study", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    call_command("import_study", str(path), "--name", "Cafe", stdout=io.StringIO(), stderr=io.StringIO())
    assert Study.objects.get().name == "Cafe"
    assert Study.objects.get().prompts.count() == 1


def test_a_file_is_split_into_lines_in_the_request_as_the_worker_and_the_command_line_split_it(study, tmp_path):
    """Django's uploaded file splits lines at a lone carriage return too, the
    worker's and the command line's reader only at a line feed: a file with
    old Mac line endings was imported in the request and refused by the others
    (found by the import fuzz section)."""
    content = b'{"prompt": "a", "candidates": ["x"]}\r{"prompt": "b", "candidates": ["y"]}\r'
    path = tmp_path / "cr.jsonl"
    path.write_bytes(content)
    with pytest.raises(ImportFileError) as by_reader:
        registry.get("jsonl").parse_stored(path, options={})
    before = counts(study)
    assert str(refusal(study, content, "cr.jsonl")) == str(by_reader.value)
    assert "Extra data" in str(by_reader.value) and counts(study) == before
