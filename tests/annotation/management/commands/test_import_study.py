"""``manage.py import_study``: creates the study and imports, or writes nothing."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotation.models import ImportJob, Membership, Prompt, Study
from tests.annotation.imports.samples import GOOD_RECORDS, jsonl
from tests.shared_data import REAL_HH


@pytest.mark.django_db
def test_import_study_command_creates_the_study_and_imports(tmp_path: Path) -> None:
    researcher = get_user_model().objects.create_user(username="res", password="x")
    data = tmp_path / "summaries.jsonl"
    data.write_bytes(jsonl(*GOOD_RECORDS))
    guidelines = tmp_path / "guide.md"
    guidelines.write_text("- Prefer **correct** answers.\n", encoding="utf-8")
    out = io.StringIO()

    call_command(
        "import_study", str(data), "--name", "Summaries v1", "--researcher", "res",
        "--guidelines-file", str(guidelines), stdout=out,
    )  # fmt: skip

    study = Study.objects.get(slug="summaries-v1")
    assert study.name == "Summaries v1"
    assert study.guidelines == "- Prefer **correct** answers.\n"
    assert study.created_by == researcher
    assert Membership.objects.get(study=study, user=researcher).role == Membership.Role.RESEARCHER
    assert (study.prompts.count(), study.candidates.count()) == (4, 8)
    assert "Imported 4 new prompts (0 already there) and 8 candidates; 0 duplicates skipped." in out.getvalue()
    assert "(summaries-v1)" in out.getvalue()

    out = io.StringIO()
    call_command("import_study", str(data), "--study", "summaries-v1", stdout=out)

    assert Study.objects.count() == 1
    assert study.candidates.count() == 8
    assert "Imported 0 new prompts (4 already there) and 0 candidates; 8 duplicates skipped." in out.getvalue()


@pytest.mark.django_db
def test_import_study_command_names_study_after_file_by_default(tmp_path: Path) -> None:
    data = tmp_path / "helpfulness-batch.jsonl"
    data.write_bytes(jsonl(GOOD_RECORDS[1]))

    call_command("import_study", str(data), stdout=io.StringIO())

    study = Study.objects.get()
    assert (study.name, study.slug) == ("helpfulness-batch", "helpfulness-batch")
    assert study.candidates.count() == 2


@pytest.mark.django_db
def test_import_study_command_on_bad_file_writes_nothing_not_even_the_study(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_bytes(jsonl(GOOD_RECORDS[0], GOOD_RECORDS[1]) + b'{"prompt": "x", "candidates": [null]}\n')

    with pytest.raises(
        CommandError, match=r'line 3, field "candidates\[0\]": must be a string or an object with "text", got null'
    ):
        call_command("import_study", str(data), "--study", "fresh", stdout=io.StringIO())

    assert not Study.objects.exists()
    assert not Prompt.objects.exists()


@pytest.mark.django_db
def test_import_study_command_rejects_unknown_researcher(tmp_path: Path) -> None:
    data = tmp_path / "ok.jsonl"
    data.write_bytes(jsonl(GOOD_RECORDS[0]))

    with pytest.raises(CommandError, match="nobody"):
        call_command("import_study", str(data), "--researcher", "nobody", stdout=io.StringIO())

    assert not Study.objects.exists()


# --- every format, compressed or not, through the one reader ------------------------------


def _hh_lines(*pairs: tuple[str, str], prompt: str = "How do I boil an egg?") -> bytes:
    lines = [
        {"chosen": f"\n\nHuman: {prompt}\n\nAssistant: {good}", "rejected": f"\n\nHuman: {prompt}\n\nAssistant: {bad}"}
        for good, bad in pairs
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "pack"),
    [
        ("pairs.jsonl", lambda data: data),
        ("pairs.jsonl.gz", gzip.compress),
        ("pairs.jsonl.bz2", bz2.compress),
        ("pairs.jsonl.xz", lzma.compress),
    ],
)
def test_an_hh_rlhf_file_plain_or_compressed_is_detected_and_imported(tmp_path: Path, name, pack) -> None:
    """It answered a .jsonl.gz with "not valid UTF-8 (byte 2)" and the plain file with
    'field "chosen": unknown field': the command read JSONL only, uncompressed."""
    data = tmp_path / name
    data.write_bytes(pack(_hh_lines(("Six minutes.", "Microwave it."), ("", "Boil it."), prompt="Eggs?")))
    out = io.StringIO()

    call_command("import_study", str(data), "--study", "hh", stdout=out)

    study = Study.objects.get(slug="hh")
    assert (study.prompts.count(), study.candidates.count()) == (2, 4)
    assert study.candidates.filter(text="").count() == 1  # an empty chosen reply is an empty response
    assert "Imported 2 new prompts (0 already there) and 4 candidates" in out.getvalue()
    assert study.name == "pairs"


@pytest.mark.django_db
def test_the_format_option_overrides_detection(tmp_path: Path) -> None:
    data = tmp_path / "pairs.txt"
    data.write_bytes(gzip.compress(_hh_lines(("a", "b"))))

    call_command("import_study", str(data), "--study", "t", "--format", "hh_rlhf", stdout=io.StringIO())

    assert Study.objects.get(slug="t").candidates.count() == 2


@pytest.mark.django_db
def test_skip_invalid_imports_the_valid_rows_and_keeps_a_report(tmp_path: Path) -> None:
    data = tmp_path / "mixed.jsonl"
    data.write_bytes(
        jsonl(GOOD_RECORDS[0]) + b'{"prompt": "x", "candidates": [null]}\n' + b"not json\n" + jsonl(GOOD_RECORDS[1])
    )
    out = io.StringIO()

    call_command("import_study", str(data), "--study", "mixed", "--skip-invalid", stdout=out)

    study = Study.objects.get(slug="mixed")
    assert (study.prompts.count(), study.candidates.count()) == (2, 5)
    job = ImportJob.objects.get(study=study)
    assert (job.status, job.skip_invalid, job.skipped_count) == (ImportJob.Status.DONE, True, 2)
    assert [(row["line"], row["field"]) for row in job.skipped_rows] == [(2, "candidates[0]"), (3, None)]
    assert job.skipped_rows[1]["raw"] == "not json"
    text = out.getvalue()
    assert "2 invalid rows left out." in text
    assert 'line 2, field "candidates[0]": must be a string' in text
    assert f"/s/mixed/imports/{job.pk}/skipped/" in text


@pytest.mark.django_db
def test_background_queues_a_job_for_the_worker(tmp_path: Path, settings, django_capture_on_commit_callbacks) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    data = tmp_path / "pairs.jsonl.gz"
    data.write_bytes(gzip.compress(_hh_lines(("a", "b"))))
    out = io.StringIO()

    with (
        mock.patch("annotation.tasks.import_job_run.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        call_command("import_study", str(data), "--study", "bg", "--background", "--skip-invalid", stdout=out)

    job = ImportJob.objects.get()
    assert (job.status, job.format, job.skip_invalid) == (ImportJob.Status.QUEUED, "hh_rlhf", True)
    delay.assert_called_once_with(job.pk)
    assert Prompt.objects.count() == 0  # the worker imports it
    assert f"Queued import job {job.pk}" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.skipif(not REAL_HH.exists(), reason=f"the public HH-RLHF test split is not at {REAL_HH}")
@pytest.mark.parametrize("plain", [False, True])
def test_the_real_hh_rlhf_test_split_imports_fully(tmp_path: Path, plain: bool) -> None:
    """All 2,312 rows, the four with an empty chosen reply (lines 87, 517, 926, 1104) included;
    each row its own prompt with its two replies (two pairs of rows share their prompt text: they
    used to merge into two prompts of four candidates, 2,310 prompts in all)."""
    path = REAL_HH
    if plain:
        path = tmp_path / "harmless-base-test.jsonl"
        path.write_bytes(gzip.decompress(REAL_HH.read_bytes()))

    call_command("import_study", str(path), "--study", "hh", stdout=io.StringIO())

    study = Study.objects.get(slug="hh")
    assert study.prompts.count() == 2312
    assert study.candidates.count() == 2312 * 2
    assert study.candidates.filter(text="").count() == 4
