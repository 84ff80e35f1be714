"""Skipped comparisons: skipped leases, kept apart from judgments because they are
no answer.

Each record has the reason and note, when the comparison was leased, the prompt
and the candidates in the order the annotator saw them, and how the comparison
was chosen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from annotation.exports.kinds.shared import (
    CANDIDATES,
    CHOSEN_COLUMNS,
    PROMPT_COLUMNS,
    candidate_list,
    chosen_fields,
    prompt_fields,
)
from annotation.exports.rows import SkipRow, skip_chunks
from annotation.exports.schema import INT64, STRING, TIMESTAMP, RecordKind, Schema, list_of
from annotation.models import Study

SCHEMA = Schema(
    ("assignment_id", INT64),
    ("study", STRING),
    ("comparison_id", INT64),
    ("annotator", STRING),
    ("skip_reason", STRING),
    ("skip_note", STRING),
    ("leased_at", TIMESTAMP),
    *PROMPT_COLUMNS,
    ("shown_order", list_of(INT64)),
    ("candidates", CANDIDATES),
    *CHOSEN_COLUMNS,
)


def skip_record(study: Study, row: SkipRow) -> dict[str, Any]:
    """One skipped lease's record."""
    return {
        "assignment_id": row.id,
        "study": study.slug,
        "comparison_id": row.comparison_id,
        "annotator": row.annotator,
        "skip_reason": row.reason,
        "skip_note": row.note,
        "leased_at": row.leased_at,
        **prompt_fields(row.prompt),
        "shown_order": row.shown_order,
        "candidates": candidate_list(row.shown_order, row.shown_order, row.candidates),
        **chosen_fields(row.chosen_by),
    }


def records(*, study: Study, pseudonymise: bool) -> Iterator[list[dict[str, Any]]]:
    """Every skipped lease of the study, in id order, a chunk at a time."""
    for skips in skip_chunks(study, pseudonymise=pseudonymise):
        yield [skip_record(study, row) for row in skips]


KIND = RecordKind(name="skips", title="Skipped comparisons", noun="skipped comparisons", schema=SCHEMA, read=records)
