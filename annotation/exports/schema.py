"""One column schema per record kind, from which every writer takes its shape.

A :class:`Schema` lists a record's columns in order, each with a type from a
small vocabulary. The CSV header is its names; a JSON-lines record has its
names as keys, in its order (checked on the first record of every chunk: every
record of a kind is built by one function, and checking each one would cost a
few per cent of the export's time); the Arrow schema of the parquet and
Hugging Face exports is its types. Objects whose keys differ from study to
study (aspect ratings, client info, metadata, gold answers) are ``JSON``: an
object in JSON lines, JSON text in CSV cells and Arrow columns, since a fixed
Arrow struct could not hold them.

A :class:`RecordKind` pairs a schema with the function that yields its records.
A kind a researcher can download in more than one shape (DPO pairs as chat
messages or as text) is a :class:`Forms`: one record kind per form, and the
study's default form.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from annotation.exports.errors import ExportError
from annotation.models import Study

__all__ = [
    "BOOL",
    "FLOAT64",
    "INT32",
    "INT64",
    "JSON",
    "STRING",
    "TIMESTAMP",
    "Column",
    "ColumnType",
    "Forms",
    "Json",
    "ListOf",
    "RecordKind",
    "Scalar",
    "Schema",
    "StructOf",
    "json_text",
    "list_of",
    "struct_of",
]


@dataclass(frozen=True)
class Scalar:
    """A plain value: ``arrow`` names its Arrow type (see ``_ARROW_SCALARS``)."""

    arrow: str


@dataclass(frozen=True)
class Json:
    """A free-form object: itself in JSON lines, JSON text in CSV and Arrow."""


@dataclass(frozen=True)
class ListOf:
    """A list of ``item`` values."""

    item: ColumnType


@dataclass(frozen=True)
class StructOf:
    """An object with fixed fields, in order."""

    fields: tuple[Column, ...]


ColumnType = Scalar | Json | ListOf | StructOf
Column = tuple[str, ColumnType]

STRING = Scalar("string")
INT64 = Scalar("int64")
INT32 = Scalar("int32")
FLOAT64 = Scalar("float64")
BOOL = Scalar("bool")
TIMESTAMP = Scalar("timestamp")  # timezone-aware datetimes, in UTC and microseconds in Arrow
JSON = Json()


def list_of(item: ColumnType) -> ListOf:
    """A list column of ``item`` values (``list_of(list_of(INT64))``: a ranking's places)."""
    return ListOf(item)


def struct_of(*fields: Column) -> StructOf:
    """An object column with these fields, in order."""
    return StructOf(fields)


def json_text(value: Any) -> str | None:
    """A free-form object as compact JSON text (None stays None)."""
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Schema:
    """The columns of one record kind, in order.

    ``names`` is the CSV header and the JSON-lines keys; :meth:`arrow_schema`
    the Arrow schema; :meth:`arrow_row` turns a record into the row Arrow reads.
    """

    def __init__(self, *columns: Column) -> None:
        names = tuple(name for name, _ in columns)
        if len(set(names)) != len(names):
            raise ValueError(f"a schema names each column once: {names}")
        self.columns = columns
        self.names = names
        self._to_arrow = tuple((name, convert) for name, kind in columns if (convert := _arrow_converter(kind)))

    def check(self, record: dict[str, Any]) -> None:
        """ValueError unless ``record`` has exactly the schema's columns, in its order."""
        if tuple(record) != self.names:
            raise ValueError(f"a record's keys {tuple(record)} are not the schema's columns {self.names}")

    def arrow_schema(self) -> Any:
        """The ``pyarrow.Schema`` of these columns (every field nullable)."""
        import pyarrow as pa

        return pa.schema([(name, _arrow_type(pa, kind)) for name, kind in self.columns])

    def arrow_row(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with its ``JSON`` values, nested ones too, as JSON text."""
        if not self._to_arrow:
            return record
        return {**record, **{name: convert(record[name]) for name, convert in self._to_arrow}}


_ARROW_SCALARS: dict[str, Callable[[Any], Any]] = {
    "string": lambda pa: pa.string(),
    "int64": lambda pa: pa.int64(),
    "int32": lambda pa: pa.int32(),
    "float64": lambda pa: pa.float64(),
    "bool": lambda pa: pa.bool_(),
    "timestamp": lambda pa: pa.timestamp("us", tz="UTC"),
}


def _arrow_type(pa: Any, kind: ColumnType) -> Any:
    if isinstance(kind, Json):
        return pa.string()
    if isinstance(kind, ListOf):
        return pa.list_(_arrow_type(pa, kind.item))
    if isinstance(kind, StructOf):
        return pa.struct([(name, _arrow_type(pa, field)) for name, field in kind.fields])
    return _ARROW_SCALARS[kind.arrow](pa)


def _arrow_converter(kind: ColumnType) -> Callable[[Any], Any] | None:
    """How a value of this type becomes what Arrow stores; None when it already is."""
    if isinstance(kind, Json):
        return json_text
    if isinstance(kind, ListOf):
        item = _arrow_converter(kind.item)
        if item is None:
            return None
        return lambda values: None if values is None else [item(value) for value in values]
    if isinstance(kind, StructOf):
        fields = tuple((name, convert) for name, field in kind.fields if (convert := _arrow_converter(field)))
        if not fields:
            return None
        return lambda value: None if value is None else {**value, **{name: c(value[name]) for name, c in fields}}
    return None


@dataclass(frozen=True)
class RecordKind:
    """What one export holds: its records and their schema.

    ``name`` starts the download's key and file name (``judgments`` →
    ``judgments.jsonl``, ``<slug>-judgments.csv``), ``title`` its label on the
    study page, ``noun`` says what an empty export lacks ("the study has no
    preference pairs yet"). ``read(study=..., pseudonymise=...)`` yields the
    records, dicts keyed by the schema's names, a chunk (a list) at a time.
    ``form`` names its shape when the kind comes in several (see
    :class:`Forms`); ``about`` says what the file holds in a sentence or two,
    for the study page and the dataset card of a ``datasets`` folder.
    """

    name: str
    title: str
    noun: str
    schema: Schema
    read: Callable[..., Iterator[list[dict[str, Any]]]]
    form: str = ""
    about: str = ""

    @property
    def choices(self) -> tuple[RecordKind, ...]:
        """The forms to choose from: none, for a kind with one shape."""
        return ()

    def pick(self, *, study: Study, form: str | None = None) -> RecordKind:
        """This kind; ExportError when another form than its own is asked for."""
        if form and form != self.form:
            raise ExportError(f"{self.title} come in one form only; leave out form={form!r}.")
        return self

    def records(self, *, study: Study, pseudonymise: bool = False) -> Iterator[list[dict[str, Any]]]:
        """The records, a chunk at a time, each chunk checked against the schema.

        Values are plain Python (datetimes stay datetimes); the writers turn
        them into JSON lines, CSV or parquet. Nothing is read until the first
        chunk is asked for; memory holds one chunk.
        """
        for chunk in self.read(study=study, pseudonymise=pseudonymise):
            if chunk:
                self.schema.check(chunk[0])
            yield chunk


@dataclass(frozen=True)
class Forms:
    """A record kind the researcher downloads in one of several forms, e.g. DPO
    pairs as chat messages or as text: ``choices`` holds one :class:`RecordKind`
    per form (same name, title and noun; each with its ``form`` and
    ``about``), in the order the study page lists them, and
    ``default(study)`` names the form a download without one gets.

    It stands where a record kind does in the registry; :meth:`pick` gives the
    record kind a download writes.
    """

    choices: tuple[RecordKind, ...]
    default: Callable[[Study], str]

    def __post_init__(self) -> None:
        names = {(kind.name, kind.title, kind.noun) for kind in self.choices}
        if len(names) != 1 or any(not kind.form for kind in self.choices):
            raise ValueError("the forms of a kind share its name, title and noun, and each names its form")

    @property
    def name(self) -> str:
        return self.choices[0].name

    @property
    def title(self) -> str:
        return self.choices[0].title

    @property
    def noun(self) -> str:
        return self.choices[0].noun

    def names(self) -> tuple[str, ...]:
        """The forms' names, in the page's order."""
        return tuple(kind.form for kind in self.choices)

    def pick(self, *, study: Study, form: str | None = None) -> RecordKind:
        """The record kind of ``form``, or of the study's default form when
        ``form`` is empty; ExportError for a form the kind does not have."""
        wanted = form or self.default(study)
        for kind in self.choices:
            if kind.form == wanted:
                return kind
        raise ExportError(f"{self.title} come as {' or '.join(self.names())}, not {wanted!r}.")
