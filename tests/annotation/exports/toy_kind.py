"""A record kind that exists only in tests: one module, as a new export kind is.

Registered with one line (``registry.registered(Export(KIND, CSV))``) it proves
the registry is the one place a download is named: the page, the API and the
study's list of links serve it with nothing else changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from annotation.exports.rows import judgment_chunks
from annotation.exports.schema import INT64, STRING, TIMESTAMP, RecordKind, Schema
from annotation.models import Study

SCHEMA = Schema(("judgment_id", INT64), ("annotator", STRING), ("choice", STRING), ("answered_at", TIMESTAMP))


def records(*, study: Study, pseudonymise: bool) -> Iterator[list[dict[str, Any]]]:
    """Who chose what, and when."""
    for chunk in judgment_chunks(study, pseudonymise=pseudonymise):
        yield [
            {"judgment_id": row.id, "annotator": row.annotator, "choice": row.choice, "answered_at": row.created_at}
            for row in chunk
        ]


KIND = RecordKind(name="choices", title="Choices only", noun="choices", schema=SCHEMA, read=records)
