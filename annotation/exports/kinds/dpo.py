"""DPO pairs: the preference pairs the judgments imply, with the string columns
``prompt``, ``chosen`` and ``rejected`` that TRL's ``DPOTrainer`` reads, plus ids
and metadata.

A pair answer (A or B) gives one pair. Ties and "both bad" give none: there is
no preferred response. A ranking gives every strict pair it implies: each
response against every response in a lower place (tied responses are not paired
with each other), so a strict ranking of K gives K(K-1)/2 pairs;
``n_pairs_in_judgment`` lets a trainer weight them 1/n per judgment.
``chosen_rank``/``rejected_rank`` are the 1-based places. A conversation prompt
stays its JSON text (``prompt_format`` says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from annotation.exports.kinds.shared import prompt_fields
from annotation.exports.rows import JudgmentRow, judgment_chunks
from annotation.exports.schema import BOOL, FLOAT64, INT32, INT64, STRING, TIMESTAMP, RecordKind, Schema
from annotation.models import Judgment, Study

SCHEMA = Schema(
    ("prompt", STRING),
    ("chosen", STRING),
    ("rejected", STRING),
    ("prompt_format", STRING),
    ("prompt_id", INT64),
    ("prompt_external_id", STRING),
    ("chosen_id", INT64),
    ("rejected_id", INT64),
    ("chosen_source", STRING),
    ("rejected_source", STRING),
    ("chosen_rank", INT32),
    ("rejected_rank", INT32),
    ("n_pairs_in_judgment", INT32),
    ("judgment_id", INT64),
    ("comparison_id", INT64),
    ("study", STRING),
    ("annotator", STRING),
    ("choice", STRING),
    ("strength", STRING),
    ("is_gold", BOOL),
    ("strategy", STRING),
    ("model_version", INT64),
    ("score", FLOAT64),
    ("propensity", FLOAT64),
    ("created_at", TIMESTAMP),
)


def dpo_records(study: Study, row: JudgmentRow) -> list[dict[str, Any]]:
    """Every strict pair one judgment implies (see the module docstring)."""
    if row.choice in (Judgment.Choice.TIE, Judgment.Choice.BOTH_BAD):
        return []
    pairs = [
        (better, worse, upper + 1, lower + 1)
        for upper, high in enumerate(row.groups)
        for lower in range(upper + 1, len(row.groups))
        for better in high
        for worse in row.groups[lower]
    ]
    prompt = prompt_fields(row.prompt)
    records = []
    for better, worse, better_rank, worse_rank in pairs:
        chosen, rejected = row.candidates.get(better), row.candidates.get(worse)
        records.append(
            {
                "prompt": prompt["prompt"],
                "chosen": chosen.text if chosen else "",
                "rejected": rejected.text if rejected else "",
                "prompt_format": prompt["prompt_format"],
                "prompt_id": prompt["prompt_id"],
                "prompt_external_id": prompt["prompt_external_id"],
                "chosen_id": better,
                "rejected_id": worse,
                "chosen_source": chosen.source if chosen else "",
                "rejected_source": rejected.source if rejected else "",
                "chosen_rank": better_rank,
                "rejected_rank": worse_rank,
                "n_pairs_in_judgment": len(pairs),
                "judgment_id": row.id,
                "comparison_id": row.comparison_id,
                "study": study.slug,
                "annotator": row.annotator,
                "choice": row.choice,
                "strength": row.strength,
                "is_gold": row.chosen_by.is_gold,
                "strategy": row.chosen_by.strategy,
                "model_version": row.chosen_by.model_version,
                "score": row.chosen_by.score,
                "propensity": row.chosen_by.propensity,
                "created_at": row.created_at,
            }
        )
    return records


def records(*, study: Study, pseudonymise: bool) -> Iterator[list[dict[str, Any]]]:
    """The pairs of every judgment, in judgment id order, a chunk of judgments at a time."""
    for chunk in judgment_chunks(study, pseudonymise=pseudonymise):
        yield [record for row in chunk for record in dpo_records(study, row)]


KIND = RecordKind(name="dpo", title="DPO pairs", noun="preference pairs", schema=SCHEMA, read=records)
