"""Columns several record kinds share, each group beside the function that fills it."""

from __future__ import annotations

from typing import Any

from annotation.exports.rows import CandidateText, ChosenBy, JudgmentRow, PromptText
from annotation.exports.schema import BOOL, FLOAT64, INT32, INT64, JSON, STRING, Column, list_of, struct_of
from annotation.models import Study

# The fields that open a judgment's and a ranking's record.
ANSWER_COLUMNS: tuple[Column, ...] = (
    ("judgment_id", INT64),
    ("study", STRING),
    ("comparison_id", INT64),
    ("annotator", STRING),
    ("annotator_kind", STRING),  # "person", or "model" for an AI judge
    ("choice", STRING),
    # A prompt-optimisation study's comparison: the input both instructions answered ("" otherwise).
    ("task_input", STRING),
)


def answer_fields(study: Study, row: JudgmentRow) -> dict[str, Any]:
    """The values of ``ANSWER_COLUMNS``."""
    return {
        "judgment_id": row.id,
        "study": study.slug,
        "comparison_id": row.comparison_id,
        "annotator": row.annotator,
        "annotator_kind": row.annotator_kind,
        "choice": row.choice,
        "task_input": row.task_input,
    }


PROMPT_COLUMNS: tuple[Column, ...] = (
    ("prompt_id", INT64),
    ("prompt_external_id", STRING),
    ("prompt_format", STRING),
    ("prompt", STRING),  # a conversation stays its JSON text; prompt_format says so
)


def prompt_fields(prompt: PromptText | None) -> dict[str, Any]:
    """The values of ``PROMPT_COLUMNS`` (empty for a comparison without a prompt)."""
    return {
        "prompt_id": prompt.id if prompt else None,
        "prompt_external_id": prompt.external_id if prompt else "",
        "prompt_format": prompt.format if prompt else "",
        "prompt": prompt.text if prompt else "",
    }


# How the comparison came to be asked.
CHOSEN_COLUMNS: tuple[Column, ...] = (
    ("strategy", STRING),
    ("model_version", INT64),
    ("score", FLOAT64),
    ("propensity", FLOAT64),
    ("is_gold", BOOL),
    ("gold_answer", JSON),
)


def chosen_fields(chosen: ChosenBy) -> dict[str, Any]:
    """The values of ``CHOSEN_COLUMNS``."""
    return {
        "strategy": chosen.strategy,
        "model_version": chosen.model_version,
        "score": chosen.score,
        "propensity": chosen.propensity,
        "is_gold": chosen.is_gold,
        "gold_answer": chosen.gold_answer,
    }


# The candidates in the order the annotator saw them (``shown_position`` 0 = first, "A").
CANDIDATES = list_of(
    struct_of(
        ("id", INT64),
        ("shown_position", INT32),
        ("source", STRING),
        ("text", STRING),
        ("metadata", JSON),
    )
)


def candidate_list(ids: list[int], shown: list[int], candidates: dict[int, CandidateText]) -> list[dict[str, Any]]:
    """The value of a ``CANDIDATES`` column for the candidates ``ids``."""
    position = {cid: k for k, cid in enumerate(shown)}
    # Shown order when it was recorded; never the ranking's order, which would leak the answer.
    ordered = shown if shown else sorted(ids)
    return [
        {
            "id": cid,
            "shown_position": position.get(cid),
            "source": candidates[cid].source if cid in candidates else "",
            "text": candidates[cid].text if cid in candidates else "",
            "metadata": candidates[cid].metadata if cid in candidates else {},
        }
        for cid in ordered
    ]
