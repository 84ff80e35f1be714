"""The CSV import format: a header row, then one row per prompt or per response.

The columns are those of every table (``annotation.imports.columns``); cells
are text, so a conversation prompt is a JSON message list with format
"conversation". Rows are numbered as in a spreadsheet (the header is row 1).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import IO, Any

from annotation.imports.columns import TableRows
from annotation.imports.records import (
    READ_ERRORS,
    ImportFileError,
    Options,
    Progress,
    PromptRecord,
    SkippedRows,
    keep_or_raise,
    no_records,
    open_stored,
    record_preference,
    tick,
)

# The longest CSV cell accepted (Python's default of 128 KB is too small for long responses).
CSV_FIELD_LIMIT = 16 * 1024 * 1024
# How the upload forms describe the format.
HELP = (
    "CSV with a header row: prompt, then response columns (response_1, response_2, … or chosen, rejected; "
    "or one row per response with prompt_id, prompt, response, source)"
)


def parse_csv(
    fileobj: IO[bytes] | IO[str],
    *,
    record_preference: bool = True,
    on_progress: Progress | None = None,
    skipped: SkippedRows | None = None,
) -> list[PromptRecord]:
    """Check a CSV file with a header row and return its records.

    Rows are numbered as in a spreadsheet (the header is row 1). A bad row
    raises ``ImportFileError`` naming the row and column, and nothing is
    returned; with ``skipped``, bad rows are recorded there and left out (a bad
    header still raises).
    """
    text = io.TextIOWrapper(fileobj, encoding="utf-8-sig", newline="") if _is_binary(fileobj) else fileobj
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(text)
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError("the file is empty; expected a header row with a prompt column") from None
        header = [name.removeprefix("\ufeff").strip().lower() for name in header]
        rows = TableRows(header, unit="row", record_preference=record_preference)
        records = []
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            try:
                if len(cells) > len(header):
                    raise ImportFileError(
                        f"has {len(cells)} cells but the header names {len(header)} columns", line=number, unit="row"
                    )
                row = {name: cells[i] if i < len(cells) else "" for i, name in enumerate(header)}
                records.append(rows.record(row, line=number, from_text=True))
            except ImportFileError as exc:
                keep_or_raise(exc, raw=dict(zip(header, cells, strict=False)), skipped=skipped)
            tick(on_progress, number - 1)
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"not valid UTF-8 (byte {exc.start + 1}); save the file as UTF-8") from None
    except csv.Error as exc:
        raise ImportFileError(f"not readable as CSV: {exc}", line=reader.line_num, unit="row") from None
    finally:
        if text is not fileobj:
            text.detach()  # leave the caller's file open
    if not records:
        raise no_records(skipped, "no rows found under the header")
    return records


def parse_file(
    fileobj: IO[bytes], *, options: Options, on_progress: Progress | None = None, skipped: SkippedRows | None = None
) -> list[PromptRecord]:
    """The registry's entry: an open binary CSV file (option ``record_preference``)."""
    return parse_csv(fileobj, record_preference=record_preference(options), on_progress=on_progress, skipped=skipped)


def count_rows(path: Path, *, options: Options) -> int | None:
    """Rows under the header of a stored CSV file, for the progress bar; None if
    it cannot be read (the parser then says why, with the row)."""
    try:
        with open_stored(path) as handle:
            text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="", errors="replace")
            csv.field_size_limit(CSV_FIELD_LIMIT)
            return max(0, sum(1 for cells in csv.reader(text) if any(c.strip() for c in cells)) - 1)
    except (csv.Error, *READ_ERRORS):
        return None


def _is_binary(fileobj: Any) -> bool:
    # A GzipFile's mode is a number (gzip.READ), not "rb".
    mode = getattr(fileobj, "mode", "b")
    return not isinstance(fileobj, io.TextIOBase) and (not isinstance(mode, str) or "b" in mode)
