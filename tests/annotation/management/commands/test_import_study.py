"""``manage.py import_study``: creates the study and imports, or writes nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotation.models import Membership, Prompt, Study
from tests.annotation.imports.samples import GOOD_RECORDS, jsonl


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
    assert "Imported 4 prompts (0 existing), 8 candidates, 0 duplicates skipped" in out.getvalue()
    assert "(summaries-v1)" in out.getvalue()

    out = io.StringIO()
    call_command("import_study", str(data), "--study", "summaries-v1", stdout=out)

    assert Study.objects.count() == 1
    assert study.candidates.count() == 8
    assert "Imported 0 prompts (4 existing), 0 candidates, 8 duplicates skipped" in out.getvalue()


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
    data.write_bytes(jsonl(GOOD_RECORDS[0], GOOD_RECORDS[1]) + b'{"prompt": "x", "candidates": [""]}\n')

    with pytest.raises(CommandError, match=r'line 3, field "candidates\[0\]": must be a non-empty string'):
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
