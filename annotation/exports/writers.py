"""The file formats an export is written in, one :class:`Writer` each.

Every writer takes a record kind and streams its file: ``JSONL`` and ``CSV`` a
chunk of records at a time, ``PARQUET`` a row group at a time (parquet puts its
index in a footer written last, so nothing needs to seek back). Only
``DATASET_ZIP``, a ``datasets`` ``save_to_disk`` folder, is built before the
first byte is sent, in a temporary folder removed when the response is closed,
so its failures (e.g. nothing to export yet) are an ``ExportError`` for the
caller to report, not a truncated archive. Memory is bounded by one chunk or
one row group whatever the size of the study.

A file says what it holds where its format allows: parquet in its schema's
metadata (key ``prefloop``: kind, form and what the form means), a
``datasets`` folder in a dataset card (``README.md``) and its
``dataset_info.json`` description; a kind with forms also has a ``form``
column, which JSON lines and CSV carry too.

CSV is the one format people open in spreadsheets, which run a cell that starts
with ``=``, ``+``, ``-`` or ``@`` as a formula (``=HYPERLINK(...)`` in a
rationale sends the next cell to a stranger's site). So a CSV writer puts a
single quote before free text that starts like that, or with a tab or carriage
return (OWASP's advice for CSV injection): spreadsheets show the quote-led text
as text. Numbers the export writes itself (a negative score) are numbers, not
text, and stay as they are. ``escape_formulas=False`` (``?formula_escape=off``)
gives the text exactly as it was, for programs that read the file.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from annotation.exports.archives import CleanedUpStream, Sink, zip_folder_stream
from annotation.exports.errors import ExportError
from annotation.exports.schema import Forms, RecordKind
from annotation.models import Study

# Rows per parquet row group: large enough for good compression, small
# enough that the buffered rows stay a few tens of megabytes.
PARQUET_ROWS_PER_GROUP = 8192


@dataclass(frozen=True)
class Writer:
    """A file format: ``suffix`` ends the download's key and file name
    (``.jsonl``, ``-dataset.zip``), ``label`` ends its label on the study page,
    and ``write(kind, study=..., pseudonymise=...)`` gives the file's bytes as an
    iterable of blocks (raising ``ExportError`` before the first block when the
    export cannot be made)."""

    suffix: str
    label: str
    content_type: str
    write: Callable[..., Iterable[bytes]]
    # Whether ``write`` takes ``escape_formulas`` (spreadsheet formats: CSV); the
    # others write typed values, which no spreadsheet runs as a formula.
    escapes_formulas: bool = False


# --- text -------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"Cannot export a value of type {type(value).__name__}.")


def jsonl_encoder() -> json.JSONEncoder:
    """How JSONL downloads write a record (compact, UTF-8, dates as ISO text)."""
    return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default)


def jsonl_stream(kind: RecordKind, *, study: Study, pseudonymise: bool = False) -> Iterator[bytes]:
    """One JSON object per record and line, keys in the schema's order."""
    encoder = jsonl_encoder()
    for chunk in kind.records(study=study, pseudonymise=pseudonymise):
        if chunk:
            yield "".join(encoder.encode(record) + "\n" for record in chunk).encode("utf-8")


# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_escaped(text: str) -> str:
    """``text`` with a single quote in front when a spreadsheet would run it as a
    formula (it starts with one of ``FORMULA_STARTS``), else unchanged."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_cell(value: Any, *, escape_formulas: bool) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))  # starts with [ or {
    if isinstance(value, str) and escape_formulas:
        return formula_escaped(value)
    return value  # numbers stay numbers, a negative score included


def csv_stream(
    kind: RecordKind, *, study: Study, pseudonymise: bool = False, escape_formulas: bool = True
) -> Iterator[bytes]:
    """A header of the schema's names, then one row per record; lists and objects
    are JSON text in their cell, and text that a spreadsheet would run as a
    formula gets a leading quote unless ``escape_formulas`` is False."""
    columns = kind.schema.names
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for chunk in kind.records(study=study, pseudonymise=pseudonymise):
        for record in chunk:
            writer.writerow([_csv_cell(record[c], escape_formulas=escape_formulas) for c in columns])
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # the header of an empty export
        yield buffer.getvalue().encode("utf-8")


# --- parquet and Hugging Face datasets --------------------------------------------


def file_description(kind: RecordKind) -> dict[str, str]:
    """What a file of ``kind`` holds, as parquet metadata and the dataset card say it."""
    return {"kind": kind.name, "title": kind.title, "form": kind.form, "about": kind.about}


def _arrow_schema(kind: RecordKind) -> Any:
    """The kind's Arrow schema with ``file_description`` in its metadata (key ``prefloop``)."""
    return kind.schema.arrow_schema().with_metadata({"prefloop": json.dumps(file_description(kind))})


def dataset_card(kind: RecordKind, *, study: Study, rows: int, folder: str) -> str:
    """The ``README.md`` of a ``datasets`` folder: what it holds, in which form,
    how to load it, and its columns."""
    lines = [
        f"# {study.name}: {kind.title}" + (f" ({kind.form} form)" if kind.form else ""),
        "",
        f"Exported by prefloop from the study `{study.slug}`: {rows} rows.",
    ]
    if kind.form:
        lines += ["", f"Form: **{kind.form}**. {kind.about}"]
    elif kind.about:
        lines += ["", kind.about]
    lines += [
        "",
        "Load it with:",
        "",
        "```python",
        "import datasets",
        f'dataset = datasets.load_from_disk("{folder}")',
        "```",
        "",
        "Columns: " + ", ".join(f"`{name}`" for name in kind.schema.names) + ".",
        "",
    ]
    return "\n".join(lines)


def _parquet_row_groups(kind: RecordKind, *, study: Study, pseudonymise: bool) -> Iterator[Any]:
    """The records as pyarrow tables of ``PARQUET_ROWS_PER_GROUP`` rows (the
    last one shorter), one per row group: memory holds one."""
    import pyarrow as pa

    schema = _arrow_schema(kind)
    size = PARQUET_ROWS_PER_GROUP
    buffer: list[dict[str, Any]] = []
    for chunk in kind.records(study=study, pseudonymise=pseudonymise):
        buffer.extend(kind.schema.arrow_row(record) for record in chunk)
        while len(buffer) >= size:
            yield pa.Table.from_pylist(buffer[:size], schema=schema)
            del buffer[:size]
    if buffer:
        yield pa.Table.from_pylist(buffer, schema=schema)
    # An empty export is a file with the columns and no row group: an empty row
    # group would be valid parquet that the ``datasets`` reader refuses.


def _write_parquet(kind: RecordKind, *, study: Study, pseudonymise: bool, path: Path) -> int:
    """Write the records to one parquet file a row group at a time; the row count."""
    import pyarrow.parquet as pq

    written = 0
    with pq.ParquetWriter(path, _arrow_schema(kind), compression="zstd") as writer:
        for table in _parquet_row_groups(kind, study=study, pseudonymise=pseudonymise):
            writer.write_table(table)
            written += table.num_rows
    return written


def parquet_stream(kind: RecordKind, *, study: Study, pseudonymise: bool = False) -> Iterator[bytes]:
    """The same parquet file as ``export_hf_dataset(layout="parquet")``, as its
    bytes are written: a download starts with the first row group instead of
    after the whole file, and memory holds one row group. Load it with
    ``load_dataset("parquet", data_files=...)``."""
    import pyarrow.parquet as pq

    sink = Sink()
    with pq.ParquetWriter(sink, _arrow_schema(kind), compression="zstd") as writer:
        for table in _parquet_row_groups(kind, study=study, pseudonymise=pseudonymise):
            writer.write_table(table)
            if block := sink.drain():
                yield block
    if block := sink.drain():
        yield block


def export_hf_dataset(
    *,
    study: Study,
    kind: RecordKind | Forms,
    layout: Literal["parquet", "save_to_disk"],
    dest: Path,
    pseudonymise: bool = False,
    form: str | None = None,
) -> Path:
    """Write a Hugging Face dataset of the study into the folder ``dest``; its path.

    A kind with forms is written in ``form`` (the study's default when it is
    None), whose name follows the kind's in the file or folder name.
    ``layout="parquet"``: one file ``<slug>-<kind>.parquet``, written in row
    groups as the judgments stream in (load it with
    ``load_dataset("parquet", data_files=...)``). ``layout="save_to_disk"``: a
    folder ``<slug>-<kind>`` for ``datasets.load_from_disk``, made from that
    parquet file through a private cache that is removed afterwards (the
    ``datasets`` cache is keyed by fingerprints, and a shared one could hand
    back an older export of the same study); ExportError when there are no rows,
    since ``datasets`` cannot save an empty dataset (an empty parquet file, with
    the columns, is fine); the folder holds a dataset card, ``README.md``. The
    DPO dataset has the ``prompt``, ``chosen`` and ``rejected`` columns that
    TRL's DPOTrainer expects. Memory is bounded by one row group.
    """
    if layout not in ("parquet", "save_to_disk"):
        raise ExportError(f"Unknown dataset layout {layout!r}; expected parquet or save_to_disk.")
    kind = kind.pick(study=study, form=form)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = f"{study.slug}-{kind.name}" + (f"-{kind.form}" if kind.form else "")
    if layout == "parquet":
        path = dest / f"{name}.parquet"
        _write_parquet(kind, study=study, pseudonymise=pseudonymise, path=path)
        return path

    import datasets

    folder = dest / name
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=dest))
    bars_were_disabled = datasets.are_progress_bars_disabled()
    try:
        parquet = work / f"{name}.parquet"
        written = _write_parquet(kind, study=study, pseudonymise=pseudonymise, path=parquet)
        datasets.disable_progress_bars()  # a web worker has no terminal to draw them on
        if not written:
            # datasets 5.2 can neither read a data file without rows ("corresponds
            # to no data") nor save an empty dataset (no shards to write).
            raise ExportError(f"The study has no {kind.noun} yet; a save_to_disk dataset cannot be empty.")
        dataset = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(work / "cache"))
        card = dataset_card(kind, study=study, rows=written, folder=folder.name)
        dataset.info.description = card
        dataset.save_to_disk(str(folder))
        (folder / "README.md").write_text(card, encoding="utf-8")
        del dataset
    finally:
        if not bars_were_disabled:
            datasets.enable_progress_bars()
        shutil.rmtree(work, ignore_errors=True)
    return folder


def dataset_zip_stream(kind: RecordKind, *, study: Study, pseudonymise: bool = False) -> CleanedUpStream:
    """A ``save_to_disk`` folder of the records, zipped: built in a temporary
    folder before the first byte (ExportError, and nothing left behind, when it
    cannot be), then streamed; the folder is removed when the stream is closed."""
    work = Path(tempfile.mkdtemp(prefix="prefloop-export-"))
    try:
        folder = export_hf_dataset(study=study, kind=kind, layout="save_to_disk", dest=work, pseudonymise=pseudonymise)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return CleanedUpStream(zip_folder_stream(folder, root=folder.name), lambda: shutil.rmtree(work, ignore_errors=True))


JSONL = Writer(".jsonl", "JSON lines", "application/x-ndjson; charset=utf-8", jsonl_stream)
CSV = Writer(".csv", "CSV", "text/csv; charset=utf-8", csv_stream, escapes_formulas=True)
PARQUET = Writer(".parquet", "Hugging Face parquet", "application/vnd.apache.parquet", parquet_stream)
DATASET_ZIP = Writer("-dataset.zip", "datasets save_to_disk folder, zipped", "application/zip", dataset_zip_stream)
