"""CSV imports: wide and long rows, and bad rows named by row and column."""

from __future__ import annotations

import io

import pytest

from annotation.imports.csv import parse_csv
from annotation.imports.records import ImportFileError
from annotation.models import Candidate
from tests.annotation.imports.samples import counts, post_upload


def test_csv_wide_rows_round_trip(client_for, researcher, study):
    content = (
        b"prompt,response_1,response_2,source_1,source_2,topic\n"
        b'Name a colour,Red,"Blue, deep",model-a,model-b,art\n'
        b"Say hi,Hello,,model-a,,chat\n"
    )
    before = counts(study)
    response = post_upload(client_for(researcher), study, "pairs.csv", content)
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
        ("prompt,chosen,rejected\nq,good,bad,worse\n", "row 2", None),
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
    response = post_upload(client_for(researcher), study, "bad.csv", content)
    html = response.content.decode()
    assert "Nothing imported" in html and "row 4" in html and "prompt" in html
    assert counts(study) == before


def test_an_empty_chosen_or_rejected_cell_is_an_empty_response():
    """Saying nothing is a reply too; the row is a judged pair, its own prompt item."""
    (record,) = parse_csv(io.BytesIO(b"prompt,chosen,rejected\nq,good,\n"))

    assert [c.text for c in record.candidates] == ["good", ""]
    assert record.group
