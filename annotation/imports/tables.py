"""Binary table formats: Parquet files and Hugging Face datasets saved with
``save_to_disk`` (uploaded as a zip of the folder).

Both hold the columns of ``annotation.imports.columns``, where a cell may also
be a list (of responses, or of messages). They are read in batches from the
stored upload, so they are always imported by the worker. ``pyarrow`` and
``datasets`` are imported inside the functions that read them: they are heavy,
and the web process only needs this module for the registry.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from annotation.imports.columns import parse_table
from annotation.imports.records import (
    PROGRESS_EVERY,
    READ_ERRORS,
    ImportFileError,
    Options,
    Progress,
    PromptRecord,
    SkippedRows,
    record_preference,
)

# The most a zipped dataset may unpack to.
UNZIPPED_MAX_BYTES = 20 * 1024**3
# How the upload forms describe the formats.
PARQUET_HELP = "Parquet with the same columns as CSV (or prompt + responses list)"
DATASET_HELP = "a zipped Hugging Face save_to_disk folder with the columns of Parquet"


# --- Parquet ---------------------------------------------------------------------------


def parse_parquet(
    path: Path, *, options: Options, on_progress: Progress | None = None, skipped: SkippedRows | None = None
) -> list[PromptRecord]:
    """Check the rows of a stored Parquet file and return their records."""
    parquet = _parquet_file(path)
    batches = _read_safely(
        (batch.to_pylist() for batch in parquet.iter_batches(batch_size=PROGRESS_EVERY)), "the Parquet file is damaged"
    )
    return parse_table(
        batches,
        columns=parquet.schema_arrow.names,
        record_preference=record_preference(options),
        on_progress=on_progress,
        skipped=skipped,
    )


def count_parquet_rows(path: Path, *, options: Options) -> int | None:
    """Rows of a Parquet file, from its footer; None if it cannot be read."""
    try:
        return _parquet_file(path).metadata.num_rows
    except ImportFileError:
        return None  # the parser reports it


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ImportFileError(f"not a readable Parquet file: {exc}") from None


# --- Hugging Face datasets ----------------------------------------------------------------


def dataset_unpack(archive: Path) -> Path:
    """The dataset folder of a stored zip: unpacked beside it on the first call
    (a job run again finds it there)."""
    folder = archive.parent / "dataset"
    if not folder.exists():
        unzip_dataset(archive, folder)
    return folder


def parse_dataset(
    path: Path, *, options: Options, on_progress: Progress | None = None, skipped: SkippedRows | None = None
) -> list[PromptRecord]:
    """Check the rows of an unpacked dataset (options ``split`` and
    ``record_preference``) and return their records."""
    dataset = hf_dataset_load(path, split=options.get("split") or "")
    batches = _read_safely(
        (_rows_of(batch) for batch in dataset.iter(batch_size=PROGRESS_EVERY)),
        "not a dataset saved with save_to_disk: its data is damaged",
    )
    return parse_table(
        batches,
        columns=dataset.column_names,
        record_preference=record_preference(options),
        on_progress=on_progress,
        skipped=skipped,
    )


def count_dataset_rows(path: Path, *, options: Options) -> int | None:
    """Rows of the dataset's split; None if it cannot be loaded."""
    try:
        return len(hf_dataset_load(path, split=options.get("split") or ""))
    except ImportFileError:
        return None  # the parser reports it


def _read_safely(batches: Iterator[list[dict[str, Any]]], damaged: str) -> Iterator[list[dict[str, Any]]]:
    """``batches`` with any error reading them (pyarrow raises several types
    for damaged data, and a text column may not be UTF-8) turned into
    ``ImportFileError(damaged: …)``; errors of the consumer pass untouched."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # a damaged file: whatever the reader raised
            raise ImportFileError(f"{damaged}: {_reason(exc)}") from None
        yield batch


def _reason(exc: BaseException) -> str:
    """An exception as a short reason: its message, else its type's name."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _rows_of(batch: dict[str, list[Any]]) -> list[dict[str, Any]]:
    columns = list(batch)
    return [dict(zip(columns, values, strict=True)) for values in zip(*batch.values(), strict=True)]


def hf_dataset_load(path: Path, *, split: str = "") -> Any:
    """A Hugging Face dataset saved with ``save_to_disk`` (a ``Dataset``, or one
    split of a ``DatasetDict``: ``split``, or the only one there is)."""
    import datasets

    root = _dataset_root(path)
    try:
        loaded = datasets.load_from_disk(str(root))
    except Exception as exc:  # garbage metadata or tables: datasets raises many types
        raise ImportFileError(f"not a dataset saved with save_to_disk: {_reason(exc)}") from None
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if split:
            if split not in loaded:
                raise ImportFileError(f"no split {split!r}; the dataset has: {', '.join(names)}", field="split")
            return loaded[split]
        if len(names) != 1:
            raise ImportFileError(f"the dataset has several splits ({', '.join(names)}); name one", field="split")
        return loaded[names[0]]
    if split:
        raise ImportFileError("the dataset has no splits; leave the split empty", field="split")
    return loaded


def _dataset_root(path: Path) -> Path:
    """The folder ``save_to_disk`` wrote: ``path`` or one level below it (a zip
    usually holds the folder itself)."""
    markers = ("dataset_info.json", "dataset_dict.json", "state.json")
    if any((path / m).exists() for m in markers):
        return path
    inner = (
        [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(("__MACOSX", "."))] if path.is_dir() else []
    )
    if len(inner) == 1 and any((inner[0] / m).exists() for m in markers):
        return inner[0]
    raise ImportFileError("no dataset found: zip the folder that Dataset.save_to_disk wrote")


def unzip_dataset(archive: Path, into: Path) -> Path:
    """Unpack a zipped dataset folder, refusing members that would land outside
    ``into`` (absolute paths, "..") and archives that unpack to over 20 GB."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            if not members:
                raise ImportFileError("the zip archive is empty")
            if sum(m.file_size for m in members) > UNZIPPED_MAX_BYTES:
                raise ImportFileError("the archive unpacks to more than 20 GB")
            root = into.resolve()
            for member in members:
                target = (root / member.filename).resolve()
                if not target.is_relative_to(root):
                    raise ImportFileError(f"unsafe path in the archive: {member.filename!r}")
            zipped.extractall(root)
    except ImportFileError:
        shutil.rmtree(into, ignore_errors=True)
        raise
    except zipfile.BadZipFile:
        shutil.rmtree(into, ignore_errors=True)
        raise ImportFileError("not a readable zip archive") from None
    except (*READ_ERRORS, NotImplementedError, RuntimeError, ValueError) as exc:
        # A damaged member (zlib, truncation), an unsupported compression or an
        # encrypted one; what was unpacked so far goes.
        shutil.rmtree(into, ignore_errors=True)
        raise ImportFileError(f"not a readable zip archive: {_reason(exc)}") from None
    return into
