"""What every import format produces, and the few things all parsers share.

A format's parser turns a file into ``PromptRecord``s (a prompt with its
candidate responses, and the line or row it came from) or raises
``ImportFileError`` naming the line and field at fault; ``writer`` then writes
the records, all or nothing. Prompts and candidates are identified by content
hashes, so importing the same data twice adds nothing.

The parsing side of the package (this module, the format modules and the
registry) neither touches the database nor imports ``annotation.models``: the
models read the catalogue of formats from it (``ImportJob.format``'s choices),
so it sits below them. That is why the prompt formats and column lengths the
parsers check are spelled out here rather than read from the models; a test
checks that they agree.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import unicodedata
import zlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from annotation.imports.storable import printable

# ``Prompt.format``'s values, in its order (error messages list them).
TEXT = "text"
MARKDOWN = "markdown"
CONVERSATION = "conversation"
PROMPT_FORMATS = (TEXT, MARKDOWN, CONVERSATION)
# ``Prompt.external_id`` and ``Candidate.source`` lengths.
EXTERNAL_ID_MAX = 200
SOURCE_MAX = 200

# Rows between two progress reports while a file is checked.
PROGRESS_EVERY = 1000

Progress = Callable[[int], None]
# Format options as stored with an import job, e.g. {"record_preference": true}.
Options = Mapping[str, Any]


class ImportFileError(ValueError):
    """A file that cannot be imported, with the line (or row) and field at fault.

    ``line`` is 1-based; ``field`` is a path into the record such as
    ``candidates[2].text``. Either is ``None`` when the error is not about one
    line (an empty file) or not about one field (a line that is not JSON).
    The message and field may quote the file, so they are made ``printable``:
    a NUL or lone surrogate in them would make the error itself unstorable
    (a job's failure, a report of skipped rows, a message in the session).
    """

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None, unit: str = "line") -> None:
        # ``unit`` names what ``line`` counts: "line" for JSONL, "row" for tables.
        message = printable(message)
        field = printable(field, limit=200) if field is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = []
        if line is not None:
            where.append(f"{unit} {line}")
        if field is not None:
            where.append(f'field "{field}"')
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


@dataclass(frozen=True)
class CandidateRecord:
    """One candidate response as parsed: its text, the model it came from, metadata."""

    text: str
    source: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class PromptRecord:
    """One prompt as parsed, with its candidates and the line or row it came from."""

    external_id: str
    text: str
    format: str
    metadata: dict[str, Any]
    candidates: tuple[CandidateRecord, ...]
    line: int
    # A known answer: (index of the better candidate, index of the worse, kind).
    gold: tuple[int, int, str] | None = None
    # Set on a row that is a judged pair (chosen/rejected): the row is its own
    # prompt item, not merged with other rows of the same prompt text, so the
    # queue only compares the two replies that were compared (see
    # ``record_prompt_hash``). Empty: rows of the same prompt text merge.
    group: str = ""


@dataclass(frozen=True)
class ImportResult:
    """What an import did.

    ``prompts_existing`` counts distinct prompts in the file that the study already
    had; a prompt repeated on several lines of one file is created (or found) once.
    ``duplicates_skipped`` counts candidates whose hash the study already had or
    that appeared earlier in the same file.
    """

    prompts_created: int
    prompts_existing: int
    candidates_created: int
    duplicates_skipped: int
    # Invalid rows left out by an import that skips them (never set otherwise).
    rows_skipped: int = 0


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 prompt"``, ``"2 prompts"``: a count with its noun."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def import_summary(result: Mapping[str, int]) -> str:
    """What an import did, in one sentence, for the pages, the CLI and a job
    (``result`` is ``ImportResult`` as a dict, as a job stores it)."""
    get = result.get
    text = (
        f"Imported {plural(get('prompts_created', 0), 'new prompt')} "
        f"({get('prompts_existing', 0)} already there) and {plural(get('candidates_created', 0), 'candidate')}; "
        f"{plural(get('duplicates_skipped', 0), 'duplicate')} skipped."
    )
    if get("rows_skipped"):
        text += f" {plural(get('rows_skipped', 0), 'invalid row')} left out."
    return text


@dataclass(frozen=True)
class SkippedRow:
    """A row left out by an import that skips invalid rows: where, why, and the row."""

    line: int | None
    field: str | None
    message: str
    raw: str


@dataclass
class SkippedRows:
    """Collects the invalid rows of an import run with "skip invalid rows".

    A parser given one calls ``add`` for a bad row and goes on; without one,
    the first bad row raises (all or nothing). ``count`` counts every skipped
    row; ``rows`` keeps the first ``keep`` of them, each raw row cut to
    ``RAW_MAX`` characters, so a file of millions of bad rows cannot fill the
    job's row.
    """

    keep: int = 10_000
    count: int = 0
    rows: list[SkippedRow] = field(default_factory=list)

    def add(self, error: ImportFileError, *, raw: Any) -> None:
        self.count += 1
        if len(self.rows) < self.keep:
            text = raw if isinstance(raw, str) else _raw_text(raw)
            row = SkippedRow(
                line=error.line, field=error.field, message=error.reason, raw=printable(text, limit=RAW_MAX)
            )
            self.rows.append(row)

    def as_json(self) -> list[dict[str, Any]]:
        return [{"line": row.line, "field": row.field, "error": row.message, "raw": row.raw} for row in self.rows]


# The longest raw row kept in a skipped-rows report.
RAW_MAX = 100_000


def _raw_text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")
    try:
        return json.dumps(raw, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(raw)


def keep_or_raise(error: ImportFileError, *, raw: Any, skipped: SkippedRows | None) -> None:
    """In all-or-nothing mode (``skipped`` is None) raise ``error``; else record the row."""
    if skipped is None:
        raise error
    skipped.add(error, raw=raw)


def no_records(skipped: SkippedRows | None, message: str) -> ImportFileError:
    """The error for a file with nothing to import, saying how many rows were invalid."""
    if skipped is not None and skipped.count:
        first = skipped.rows[0] if skipped.rows else None
        where = f"line {first.line}: " if first is not None and first.line is not None else ""
        detail = f" (the first: {where}{first.message})" if first is not None else ""
        return ImportFileError(f"no valid rows: all {plural(skipped.count, 'row')} are invalid{detail}")
    return ImportFileError(message)


# --- hashing ---------------------------------------------------------------


def normalise(text: str) -> str:
    """Text as compared for duplicates: NFC normalised and stripped."""
    return unicodedata.normalize("NFC", text).strip()


def prompt_content_hash(text: str) -> str:
    """SHA-256 hex of the prompt text after NFC normalisation and stripping.

    For conversations, ``text`` is the stored JSON dump of the message list.
    """
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def record_prompt_hash(record: PromptRecord) -> str:
    """The content hash a record's prompt is stored under.

    A record without a ``group`` is its prompt text's hash, so rows with the
    same prompt gather their candidates on one prompt (one response per row,
    or more responses added later). A judged pair (``group`` set) hashes the
    text with its group, so two chosen/rejected rows of the same prompt are
    two prompt items, each with its own two replies: the queue compares
    candidates of one prompt, and never a chosen of one row with a rejected
    of another that no one compared. Re-importing the same rows finds them.
    """
    if not record.group:
        return prompt_content_hash(record.text)
    payload = f"{normalise(record.text)}\x00{record.group}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def pair_group(*texts: str) -> str:
    """The ``group`` of a judged pair: its replies' hashes, in order (chosen first)."""
    return ":".join(hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:32] for text in texts)


def candidate_content_hash(*, prompt_hash: str, text: str) -> str:
    """SHA-256 hex of (prompt hash, normalised candidate text).

    The same response to the same prompt is a duplicate; the same response to a
    different prompt is not. A candidate without a prompt passes ``prompt_hash=""``.
    """
    # A NUL separator keeps ("ab", "c") and ("a", "bc") apart; a hex digest never
    # contains one.
    payload = f"{prompt_hash}\x00{normalise(text)}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# --- shared by the parsers ----------------------------------------------------------


def record_preference(options: Options) -> bool:
    """The ``record_preference`` option (on unless turned off): keep chosen > rejected
    in the metadata of chosen/rejected data."""
    return bool(options.get("record_preference", True))


def tick(on_progress: Progress | None, count: int) -> None:
    """Report ``count`` rows checked, every ``PROGRESS_EVERY`` rows."""
    if on_progress is not None and count % PROGRESS_EVERY == 0:
        on_progress(count)


def type_name(value: Any) -> str:
    """How a JSON value's type is named in error messages ("a list", "null", …)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# What reading a damaged or truncated compressed file raises (zlib and lzma
# have their own error types; gzip's and bz2's are OSError or EOFError).
READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)

# The first bytes of each compressed container a text file may come in.
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"))
# File-name endings of those containers (stripped to tell the format inside).
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")


def compression_of(head: bytes) -> str | None:
    """``"gzip"``, ``"bz2"`` or ``"xz"`` from a file's first bytes, else None."""
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def decompress_head(head: bytes) -> bytes:
    """As much of a compressed file's start as its first bytes decompress to
    (the head itself when it is not compressed)."""
    kind = compression_of(head)
    if kind is None:
        return head
    factory = {"gzip": lambda: zlib.decompressobj(zlib.MAX_WBITS | 16), "bz2": bz2.BZ2Decompressor}.get(
        kind, lzma.LZMADecompressor
    )
    try:
        return factory().decompress(head)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
        return b""


def decompressed_head(fileobj: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes of a seekable file's content, decompressed when it
    is gzip, bzip2 or xz; the file is left at its start."""
    try:
        with decompressing(fileobj) as stream:
            head = stream.read(size)
    except READ_ERRORS:
        head = b""  # damaged: the parser says so
    fileobj.seek(0)
    return head


def decompressing(fileobj: IO[bytes]) -> AbstractContextManager[IO[bytes]]:
    """A seekable binary file as a stream of its content, decompressed when
    its first bytes say gzip, bzip2 or xz (read errors are ``READ_ERRORS``).
    Closing the stream leaves ``fileobj`` open; it must be at its start."""
    start = fileobj.read(6)
    fileobj.seek(0)
    kind = compression_of(start)
    if kind is None:
        return _Unclosed(fileobj)
    opener = {"gzip": lambda f: gzip.GzipFile(fileobj=f, mode="rb"), "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}
    return opener[kind](fileobj)  # type: ignore[no-any-return]


class _Unclosed(AbstractContextManager):
    """A file whose ``with`` block does not close it (the caller's upload)."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._file = fileobj

    def __enter__(self) -> IO[bytes]:
        return self._file

    def __exit__(self, *exc: object) -> None:
        return None


def open_stored(path: Path) -> IO[bytes]:
    """A stored text file opened for reading bytes, decompressed when it is gzip,
    bzip2 or xz (told by its first bytes, whatever its name): the one way the
    pages, the CLI and the API open a text file."""
    with path.open("rb") as probe:
        kind = compression_of(probe.read(6))
    if kind == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "bz2":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if kind == "xz":
        return lzma.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")
