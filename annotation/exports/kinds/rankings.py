"""Listwise rankings: one record per judgment with ``responses`` best first, each
place a list of ``{id, text, source}`` (tied responses share a place).

Pairs are rankings too: A/B gives two places, a tie or "both bad" one shared place.
Like the DPO pairs, this is training data: each judgment's ranking is the label the
reward model learns (a reviewer's where they overturned it; excluded judgments are
left out).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from annotation.exports.kinds.shared import ANSWER_COLUMNS, PROMPT_COLUMNS, answer_fields, prompt_fields
from annotation.exports.rows import JudgmentRow, judgment_chunks
from annotation.exports.schema import (
    BOOL,
    FLOAT64,
    INT64,
    STRING,
    TIMESTAMP,
    RecordKind,
    Schema,
    list_of,
    struct_of,
)
from annotation.models import Study

RESPONSE = struct_of(("id", INT64), ("text", STRING), ("source", STRING))

SCHEMA = Schema(
    *ANSWER_COLUMNS,
    *PROMPT_COLUMNS,
    ("responses", list_of(list_of(RESPONSE))),
    ("ranking", list_of(list_of(INT64))),
    ("shown_order", list_of(INT64)),
    ("strategy", STRING),
    ("model_version", INT64),
    ("propensity", FLOAT64),
    ("is_gold", BOOL),
    ("created_at", TIMESTAMP),
)


def ranking_record(study: Study, row: JudgmentRow) -> dict[str, Any]:
    """One judgment as a ranking of responses."""

    def response(cid: int) -> dict[str, Any]:
        candidate = row.candidates.get(cid)
        return {"id": cid, "text": candidate.text if candidate else "", "source": candidate.source if candidate else ""}

    return {
        **answer_fields(study, row),
        **prompt_fields(row.prompt),
        "responses": [[response(cid) for cid in place] for place in row.groups],
        "ranking": row.groups,
        "shown_order": row.shown_order,
        "strategy": row.chosen_by.strategy,
        "model_version": row.chosen_by.model_version,
        "propensity": row.chosen_by.propensity,
        "is_gold": row.chosen_by.is_gold,
        "created_at": row.created_at,
    }


def records(*, study: Study, pseudonymise: bool) -> Iterator[list[dict[str, Any]]]:
    """Every judgment of the study as a ranking, in id order, a chunk at a time."""
    for chunk in judgment_chunks(study, pseudonymise=pseudonymise, adjudicated=True):
        yield [ranking_record(study, row) for row in chunk]


KIND = RecordKind(name="rankings", title="Listwise rankings", noun="judgments", schema=SCHEMA, read=records)
