"""The catalogue of import formats: the one place a format is named.

Everything else is derived from :data:`FORMATS`: ``ImportJob.format``'s
choices (a callable, so a new format needs no migration), the format choices
and help of the upload forms, detection from a file's name and first bytes,
and how an upload is read, during the request or by the worker. Adding a
format is one module (a function from an open file or a stored path to
``PromptRecord``s, and one that counts its rows) plus one entry here.

Nothing here imports ``annotation.models`` (the models import this module).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from annotation.imports import csv, hh_rlhf, jsonl, tables
from annotation.imports.records import (
    COMPRESSED_SUFFIXES,
    READ_ERRORS,
    ImportFileError,
    Options,
    Progress,
    PromptRecord,
    SkippedRows,
    compression_of,
    decompress_head,
    decompressed_head,
    open_stored,
)
from models_runtime.catalogue import Catalogue

__all__ = [
    "FORMATS",
    "ImportFormat",
    "choices",
    "detect_format",
    "detect_path",
    "detect_upload",
    "formats",
    "get",
    "register",
    "registered",
]

# The longest key ``ImportJob.format`` can store.
KEY_MAX = 16
# Bytes of an upload read to tell its format.
HEAD_BYTES = 64 * 1024


class ReadFile(Protocol):
    def __call__(
        self,
        fileobj: IO[bytes],
        *,
        options: Options,
        on_progress: Progress | None = None,
        skipped: SkippedRows | None = None,
    ) -> list[PromptRecord]: ...


class ReadPath(Protocol):
    def __call__(
        self, path: Path, *, options: Options, on_progress: Progress | None = None, skipped: SkippedRows | None = None
    ) -> list[PromptRecord]: ...


class CountRows(Protocol):
    def __call__(self, path: Path, *, options: Options) -> int | None: ...


@dataclass(frozen=True)
class ImportFormat:
    """One import format.

    ``key`` is stored on import jobs; researchers choose the format by ``label``.
    A file whose name ends in one of ``suffixes`` may be in this format;
    ``sniff``, given its first bytes (gunzipped), tells it apart from another
    format with the same endings. ``read_file`` parses an open binary file, and
    a format that has one may be imported during the request (small uploads);
    ``read_path`` parses a stored upload (after ``prepare``, e.g. unzipping),
    by default by opening it (gunzipped) for ``read_file``. ``count_rows``
    gives the progress bar its total. ``options`` names the options the format
    reads. ``extensions`` (with ``extension_note``) is how its files are named
    to people, ``help`` how the upload forms describe its content.
    """

    key: str
    label: str
    suffixes: tuple[str, ...]
    count_rows: CountRows
    read_file: ReadFile | None = None
    read_path: ReadPath | None = None
    prepare: Callable[[Path], Path] | None = None
    sniff: Callable[[bytes], bool] | None = None
    options: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    extension_note: str = ""
    help: str = ""

    def __post_init__(self) -> None:
        if not 0 < len(self.key) <= KEY_MAX:
            raise ValueError(f"a format key has 1 to {KEY_MAX} characters, got {self.key!r}")
        if self.read_file is None and self.read_path is None:
            raise ValueError(f"format {self.key!r} needs read_file or read_path")

    @property
    def in_request(self) -> bool:
        """Whether a (small) upload of this format may be imported during the request."""
        return self.read_file is not None

    def parse_stored(
        self,
        path: Path,
        *,
        options: Options,
        on_progress: Progress | None = None,
        skipped: SkippedRows | None = None,
    ) -> list[PromptRecord]:
        """Check a stored file (already ``prepare``d) and return its records: the
        one reader the worker and the CLI share. A text format's file is
        decompressed when it is gzip, bzip2 or xz (told by its first bytes).
        With ``skipped``, invalid rows are recorded there and left out."""
        extra = _skipping(skipped)
        if self.read_path is not None:
            return self.read_path(path, options=options, on_progress=on_progress, **extra)
        assert self.read_file is not None  # __post_init__ saw to it
        try:
            with open_stored(path) as handle:
                return self.read_file(handle, options=options, on_progress=on_progress, **extra)
        except READ_ERRORS as exc:  # a damaged or truncated compressed file
            raise ImportFileError(f"cannot read the file: {exc}") from None


def _skipping(skipped: SkippedRows | None) -> dict[str, Any]:
    """``skipped`` as a keyword only when rows are to be skipped, so a plug-in
    format written before skipping existed still reads files all or nothing."""
    return {} if skipped is None else {"skipped": skipped}


_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".json.gz")

FORMATS: tuple[ImportFormat, ...] = (
    ImportFormat(
        "jsonl",
        "JSONL (prompt + candidates per line)",
        suffixes=_JSONL_SUFFIXES,
        read_file=jsonl.parse_file,
        count_rows=jsonl.count_rows,
        extensions=(".jsonl", ".jsonl.gz"),
        help=jsonl.HELP,
    ),
    ImportFormat(
        "csv",
        "CSV",
        suffixes=(".csv",),
        read_file=csv.parse_file,
        count_rows=csv.count_rows,
        options=("record_preference",),
        extensions=(".csv",),
        help=csv.HELP,
    ),
    ImportFormat(
        "hh_rlhf",
        "HH-RLHF JSONL (chosen / rejected transcripts)",
        suffixes=_JSONL_SUFFIXES,
        sniff=hh_rlhf.sniff,
        read_file=hh_rlhf.parse_file,
        count_rows=jsonl.count_rows,
        options=("record_preference",),
        help=hh_rlhf.HELP,
    ),
    ImportFormat(
        "parquet",
        "Parquet",
        suffixes=(".parquet",),
        read_path=tables.parse_parquet,
        count_rows=tables.count_parquet_rows,
        options=("record_preference",),
        extensions=(".parquet",),
        help=tables.PARQUET_HELP,
    ),
    ImportFormat(
        "hf_disk",
        "Hugging Face dataset (save_to_disk folder, zipped)",
        suffixes=(".zip",),
        prepare=tables.dataset_unpack,
        read_path=tables.parse_dataset,
        count_rows=tables.count_dataset_rows,
        options=("record_preference", "split"),
        extensions=(".zip",),
        extension_note="a Hugging Face dataset saved with save_to_disk",
        help=tables.DATASET_HELP,
    ),
)

_CATALOGUE = Catalogue(
    FORMATS,
    key=lambda spec: spec.key,
    called="an import format",
    missing=lambda key, known: ImportFileError(f"unknown import format {key!r}; known formats: {', '.join(known)}"),
)
# Add a format at run time (a plug-in, or a test): ``register(spec)``, or
# ``with registered(spec):`` for the length of a block.
register = _CATALOGUE.register
registered = _CATALOGUE.registered
# The format called ``key``; ``ImportFileError`` listing the known ones otherwise.
get = _CATALOGUE.get
# Every format, in the order the forms offer them.
formats = _CATALOGUE.entries


def choices() -> list[tuple[str, str]]:
    """``(key, label)`` of every format, for ``ImportJob.format`` and the forms."""
    return [(spec.key, spec.label) for spec in formats()]


def extensions() -> list[str]:
    """Every file-name ending people are told about, e.g. ``[".jsonl", ".csv", …]``."""
    return [extension for spec in formats() for extension in spec.extensions]


def detect_format(name: str, head: bytes = b"") -> str:
    """The key of an upload's format, from its name and first bytes.

    Among the formats whose suffixes the name ends with, one whose ``sniff``
    recognises the head wins (a JSONL file whose first record has ``chosen``
    and ``rejected`` but no ``prompt`` is HH-RLHF), else the first without a
    sniff. A text format's file may be compressed (gzip, bzip2, xz: ``.gz``,
    ``.bz2``, ``.xz`` after its own ending); the head is decompressed before
    it is sniffed. Raises ``ImportFileError`` for other file types.
    """
    lower = name.lower()
    inner = next((lower.removesuffix(end) for end in COMPRESSED_SUFFIXES if lower.endswith(end)), lower)
    matching = [
        spec
        for spec in formats()
        if lower.endswith(spec.suffixes) or (spec.read_file is not None and inner.endswith(spec.suffixes))
    ]
    if not matching:
        raise ImportFileError(f"cannot tell the format of {name!r}: expected {_expected()}")
    head = decompress_head(head)
    sniffed = [spec for spec in matching if spec.sniff is not None and spec.sniff(head)]
    plain = [spec for spec in matching if spec.sniff is None]
    return (sniffed or plain or matching)[0].key


def detect_path(path: Path) -> str:
    """The key of a file's format on disk (``detect_format`` on its name and first bytes)."""
    try:
        with path.open("rb") as handle:
            head = decompressed_head(handle, HEAD_BYTES)
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return detect_format(path.name, head)


def is_compressed(head: bytes) -> bool:
    """Whether a file's first bytes are gzip, bzip2 or xz (it may hold many times its size)."""
    return compression_of(head) is not None


def detect_upload(upload: Any) -> str:
    """The key of an uploaded file's format (``detect_format`` on its name and
    first bytes); the file is left at its start."""
    upload.seek(0)
    return detect_format(upload.name or "", decompressed_head(upload, HEAD_BYTES))


def _expected() -> str:
    """The file names the formats take, for a message: ".jsonl, .csv or .zip (…)"."""
    named = [
        ", ".join(spec.extensions) + (f" ({spec.extension_note})" if spec.extension_note else "")
        for spec in formats()
        if spec.extensions
    ]
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"
