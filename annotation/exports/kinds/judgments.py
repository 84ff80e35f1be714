"""All judgments: one record per judgment, with its answer, the order it was shown
in, and how its comparison was chosen.

The answer is ``choice`` and ``ranking`` (candidate ids best first, always a list
of places, a tied place holding two or more ids), with strength, rationale and
aspect ratings ``{candidate id: {aspect: 1..5}}``. ``shown_order`` is the order
the annotator saw the candidates (and ``shown_position`` on each candidate, 0 =
first shown, "A"); then time on task, client info, when, a reviewer's verdict
(``review_state``: confirmed, overturned or excluded, empty when unreviewed; for
an overturned judgment ``adjudicated_choice`` and ``adjudicated_ranking`` are the
reviewer's label, which the reward model learns, while ``choice`` and
``ranking`` stay the annotator's), the prompt, the
candidates, and how the comparison was chosen (strategy, reward-model version,
score, selection propensity, gold flag and answer). Richer feedback, where the
study asks for it: ``response_tags`` ``{candidate id: [tag, …]}``, ``spans``
(each with its candidate id, code-point offsets ``start``/``end`` into that
candidate's text, end exclusive, its tag and the text it covers) and
``rewrite_id``, the candidate made from the better response the annotator wrote
(the *SFT* export holds those responses with their prompts). In CSV, lists and objects
are JSON text in their cell, and free text that a spreadsheet would run as a
formula (a rationale ``=HYPERLINK(...)``) gets a leading quote unless the
download asks for it raw (see ``writers``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from annotation.exports.kinds.shared import (
    ANSWER_COLUMNS,
    CANDIDATES,
    CHOSEN_COLUMNS,
    PROMPT_COLUMNS,
    answer_fields,
    candidate_list,
    chosen_fields,
    prompt_fields,
)
from annotation.exports.rows import JudgmentRow, judgment_chunks
from annotation.exports.schema import INT32, INT64, JSON, STRING, TIMESTAMP, RecordKind, Schema, list_of, struct_of
from annotation.models import Study

SPAN_FIELDS = (("candidate_id", INT64), ("start", INT32), ("end", INT32), ("tag", STRING), ("text", STRING))
SPANS = list_of(struct_of(*SPAN_FIELDS))

SCHEMA = Schema(
    *ANSWER_COLUMNS,
    ("ranking", list_of(list_of(INT64))),
    ("strength", STRING),
    ("rationale", STRING),
    ("aspect_ratings", JSON),
    ("shown_order", list_of(INT64)),
    ("time_on_task_ms", INT64),
    ("client_info", JSON),
    ("created_at", TIMESTAMP),
    ("review_state", STRING),
    ("adjudicated_choice", STRING),
    ("adjudicated_ranking", list_of(list_of(INT64))),
    ("response_tags", JSON),
    ("spans", SPANS),
    ("rewrite_id", INT64),
    *PROMPT_COLUMNS,
    ("candidates", CANDIDATES),
    *CHOSEN_COLUMNS,
)


def judgment_record(study: Study, row: JudgmentRow) -> dict[str, Any]:
    """One judgment's record."""
    ids = [i for place in row.groups for i in place]
    return {
        **answer_fields(study, row),
        "ranking": row.groups,
        "strength": row.strength,
        "rationale": row.rationale,
        "aspect_ratings": row.aspect_ratings,
        "shown_order": row.shown_order,
        "time_on_task_ms": row.time_on_task_ms,
        "client_info": row.client_info,
        "created_at": row.created_at,
        "review_state": row.review_state,
        "adjudicated_choice": row.adjudicated_choice,
        "adjudicated_ranking": row.adjudicated_groups,
        "response_tags": row.response_tags,
        # In the schema's key order (PostgreSQL's jsonb keeps none).
        "spans": [{key: span.get(key) for key, _ in SPAN_FIELDS} for span in row.spans],
        "rewrite_id": row.rewrite_id,
        **prompt_fields(row.prompt),
        "candidates": candidate_list(ids, row.shown_order, row.candidates),
        **chosen_fields(row.chosen_by),
    }


def records(*, study: Study, pseudonymise: bool) -> Iterator[list[dict[str, Any]]]:
    """Every judgment of the study, in id order, a chunk at a time."""
    for chunk in judgment_chunks(study, pseudonymise=pseudonymise):
        yield [judgment_record(study, row) for row in chunk]


KIND = RecordKind(name="judgments", title="All judgments", noun="judgments", schema=SCHEMA, read=records)
