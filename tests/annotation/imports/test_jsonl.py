"""Parsing JSONL: every problem named by its line and field, blank lines skipped."""

from __future__ import annotations

import pytest

from annotation.imports.jsonl import parse_jsonl
from annotation.imports.records import ImportFileError, SkippedRows


@pytest.mark.parametrize(
    ("lines", "line", "field", "message"),
    [
        (['{"prompt": "a", "candidates": ["x"]}', '{"prompt": "b", "candidates": ["x"'], 2, None, "invalid JSON at "),
        (['["not", "an", "object"]'], 1, None, "expected a JSON object, got a list"),
        (['{"candidates": ["x"]}'], 1, "prompt", "is required"),
        (['{"prompt": "a"}'], 1, "candidates", "is required"),
        (['{"prompt": "a", "candidates": []}'], 1, "candidates", "at least one candidate"),
        (['{"prompt": "a", "candidates": "x"}'], 1, "candidates", "must be a list, got a string"),
        (['{"prompt": "   ", "candidates": ["x"]}'], 1, "prompt", "non-empty"),
        (['{"prompt": 7, "candidates": ["x"]}'], 1, "prompt", "got a number"),
        (['{"prompt": "a", "format": "html", "candidates": ["x"]}'], 1, "format", 'got "html"'),
        (['{"prompt": "a", "format": "conversation", "candidates": ["x"]}'], 1, "prompt", "list of"),
        (['{"prompt": [{"role": "user", "content": "hi"}], "format": "text", "candidates": ["x"]}'], 1, "format", ""),
        (['{"prompt": [{"role": "bot", "content": "hi"}], "candidates": ["x"]}'], 1, "prompt[0].role", 'got "bot"'),
        (['{"prompt": [{"role": "user", "content": ""}], "candidates": ["x"]}'], 1, "prompt[0].content", "non-empty"),
        (['{"prompt": [], "candidates": ["x"]}'], 1, "prompt", "at least one message"),
        (['{"prompt": "a", "candidates": ["x", {"text": 5}]}'], 1, "candidates[1].text", "must be a string"),
        (['{"prompt": "a", "candidates": ["x", {"source": "m"}]}'], 1, "candidates[1].text", "got null"),
        (['{"prompt": "a", "candidates": [{"text": "x", "source": 3}]}'], 1, "candidates[0].source", "string"),
        (['{"prompt": "a", "candidates": [{"text": "x", "score": 3}]}'], 1, "candidates[0].score", "unknown"),
        (['{"prompt": "a", "candidates": [null]}'], 1, "candidates[0]", "got null"),
        (['{"prompt": "a", "metadata": [1], "candidates": ["x"]}'], 1, "metadata", "must be an object"),
        (['{"prompt": "a", "id": {"x": 1}, "candidates": ["x"]}'], 1, "id", "must be a string"),
        (['{"prompt": "a", "candidate": ["x"]}'], 1, "candidate", "unknown field"),
        (
            [b'{"prompt": "a", "candidates": ["x"]}\n', b'{"prompt": "caf\xe9", "candidates": ["x"]}\n'],
            2,
            None,
            "UTF-8",
        ),
        (["", "   \n", "\n"], None, None, "no records found"),
        ([], None, None, "no records found"),
    ],
)
def test_parse_errors_name_the_line_and_field(lines: list, line: int | None, field: str | None, message: str) -> None:
    with pytest.raises(ImportFileError) as excinfo:
        parse_jsonl(lines)

    error = excinfo.value
    assert (error.line, error.field) == (line, field)
    assert message in str(error)
    if line is not None:
        assert str(error).startswith(f"line {line}")


def test_blank_lines_are_skipped_and_line_numbers_count_them() -> None:
    """Line numbers are physical lines, so an error message points at the right place in an editor."""
    lines = ['\ufeff{"prompt": "a", "candidates": ["x"]}\n', "\n", "  \n", '{"prompt": "b", "candidates": ["y"]}']

    records = parse_jsonl(lines)

    assert [(r.text, r.line) for r in records] == [("a", 1), ("b", 4)]


def test_broken_json_names_its_line_once() -> None:
    """json's own message ends in "line 1 column 35 (char 34)": a second line number, always 1, that
    contradicted the real one. The message names the file's line once, and the character."""
    with pytest.raises(ImportFileError) as excinfo:
        parse_jsonl(['{"prompt": "a", "candidates": ["x"]}', '{"prompt": "b", "candidates": ["x"'])

    assert str(excinfo.value) == "line 2: invalid JSON at character 35: Expecting ',' delimiter"
    assert str(excinfo.value).count("line") == 1


def test_an_empty_candidate_is_an_empty_response() -> None:
    """Saying nothing is a reply too: "" (or {"text": ""}) imports as an empty response."""
    (record,) = parse_jsonl(['{"prompt": "a", "candidates": ["", {"text": "", "source": "m"}, "x"]}'])

    assert [c.text for c in record.candidates] == ["", "", "x"]


def test_skipping_invalid_lines_records_each_with_its_line_field_and_raw_text() -> None:
    lines = [
        '{"prompt": "a", "candidates": ["x"]}',
        '{"prompt": "b", "candidates": ["x"',
        '{"prompt": "c", "candidates": [7]}',
        b'{"prompt": "caf\xe9", "candidates": ["x"]}\n',
        '{"prompt": "d", "candidates": ["y"]}',
    ]
    skipped = SkippedRows()

    records = parse_jsonl(lines, skipped=skipped)

    assert [r.text for r in records] == ["a", "d"]
    assert skipped.count == 3
    assert [(row.line, row.field) for row in skipped.rows] == [(2, None), (3, "candidates[0]"), (4, None)]
    assert skipped.rows[1].raw == '{"prompt": "c", "candidates": [7]}'
    assert "UTF-8" in skipped.rows[2].message and skipped.rows[2].raw.startswith('{"prompt": "caf')


def test_skipping_every_line_still_fails_and_says_how_many() -> None:
    with pytest.raises(ImportFileError, match=r"no valid rows: all 2 rows are invalid \(the first: line 1: "):
        parse_jsonl(["[1]", "[2]"], skipped=SkippedRows())
