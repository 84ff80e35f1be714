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

import gzip
import hashlib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
    """

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None, unit: str = "line") -> None:
        # ``unit`` names what ``line`` counts: "line" for JSONL, "row" for tables.
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


# --- hashing ---------------------------------------------------------------


def normalise(text: str) -> str:
    """Text as compared for duplicates: NFC normalised and stripped."""
    return unicodedata.normalize("NFC", text).strip()


def prompt_content_hash(text: str) -> str:
    """SHA-256 hex of the prompt text after NFC normalisation and stripping.

    For conversations, ``text`` is the stored JSON dump of the message list.
    """
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


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


def open_stored(path: Path) -> IO[bytes]:
    """A stored text upload opened for reading bytes, gunzipped when its name ends in .gz."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")
