"""Researcher exports of a study: judgments, preference pairs, rankings and skips.

Every export streams. Judgments are read in keyset-paginated chunks
(``id > last ORDER BY id LIMIT CHUNK_SIZE``) and the prompts and candidates a
chunk refers to are looked up for that chunk alone, so memory stays bounded
however large the study is, and the number of queries grows with the number of
chunks, never with the number of rows in one. Keyset pages (rather than one
server-side cursor) hold no cursor or transaction open while a slow client
downloads; an answer submitted during an export may or may not be in it, an
undone one is left out if the export had not reached it yet.

Formats (``EXPORT_FORMATS``):

``judgments.jsonl`` / ``judgments.csv``
    One record per judgment: the answer (``choice``; ``ranking`` as candidate
    ids best first, always a list of groups, a tied group holding two or more
    ids), strength, rationale, aspect ratings ``{candidate id: {aspect: 1..5}}``,
    the order the annotator saw the candidates (``shown_order``, and
    ``shown_position`` on each candidate, 0 = first shown, "A"), time on task,
    client info, when, and how the comparison was chosen (strategy, reward-model
    version, score, selection propensity, gold flag and answer). In CSV, lists
    and objects are JSON text in their cell; cells are written verbatim, so
    open files with annotators' free text through an import dialog rather than
    by double-clicking them in a spreadsheet.
``dpo.jsonl`` / ``dpo.csv``
    Preference pairs with the string columns ``prompt``, ``chosen`` and
    ``rejected`` that TRL's ``DPOTrainer`` reads, plus ids and metadata. A pair
    answer (A or B) gives one pair. Ties and "both bad" give none: there is no
    preferred response. A ranking gives every strict pair it implies: each
    response against every response in a lower place (tied responses are not
    paired with each other), so a strict ranking of K gives K(K-1)/2 pairs;
    ``n_pairs_in_judgment`` lets a trainer weight them 1/n per judgment.
    ``chosen_rank``/``rejected_rank`` are the 1-based places. A conversation
    prompt stays its JSON text (``prompt_format`` says so).
``rankings.jsonl``
    Listwise: one record per judgment with ``responses`` best first, each place
    a list of ``{id, text, source}`` (tied responses share a place). Pairs are
    rankings too: A/B gives two places, a tie or "both bad" one shared place.
``skips.jsonl`` / ``skips.csv``
    Skipped leases, kept apart from judgments because they are no answer:
    reason, note, when the comparison was leased, the prompt and the
    candidates in the order the annotator saw them.
``dpo.parquet`` / ``judgments.parquet`` / ``*-dataset.zip``
    Hugging Face datasets (:func:`export_hf_dataset`): a parquet file, or a
    zipped ``Dataset.save_to_disk`` folder.

Annotators are named by username, or with ``pseudonymise`` by a keyed hash
(HMAC-SHA256 under ``SECRET_KEY``, salted with the study id): stable within a
study, unlinkable across studies and without the key.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.utils.crypto import salted_hmac

from annotation.models import (
    Assignment,
    Candidate,
    ComparisonItem,
    Judgment,
    Prompt,
    RewardModelVersion,
    Study,
    in_display_order,
)

# Judgments (or skips) per query. A chunk of a listwise study looks up at most
# 8 candidates per judgment, well under SQLite's limit on query parameters.
CHUNK_SIZE = 1000
# Rows per parquet row group: large enough for good compression, small
# enough that the buffered rows stay a few tens of megabytes.
PARQUET_ROWS_PER_GROUP = 8192
FILE_BLOCK = 1 << 20


class ExportError(Exception):
    """An export that cannot be made; the message says why."""


@dataclass(frozen=True)
class ExportFormat:
    """One download: ``key`` is its name in the URL, ``filename`` a pattern
    with ``{slug}`` and ``{variant}`` (empty, or ``-pseudonymised``)."""

    key: str
    label: str
    filename: str
    content_type: str
    # "stream": export_stream writes it; "hf": export_hf_dataset builds it first.
    kind: Literal["stream", "hf"] = "stream"
    hf_kind: str = ""
    hf_layout: str = ""

    def file_name(self, *, slug: str, pseudonymise: bool = False) -> str:
        return self.filename.format(slug=slug, variant="-pseudonymised" if pseudonymise else "")


_JSONL = "application/x-ndjson; charset=utf-8"
_CSV = "text/csv; charset=utf-8"
EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.key: f
    for f in (
        ExportFormat("judgments.jsonl", "All judgments (JSON lines)", "{slug}-judgments{variant}.jsonl", _JSONL),
        ExportFormat("judgments.csv", "All judgments (CSV)", "{slug}-judgments{variant}.csv", _CSV),
        ExportFormat("dpo.jsonl", "DPO pairs (JSON lines)", "{slug}-dpo{variant}.jsonl", _JSONL),
        ExportFormat("dpo.csv", "DPO pairs (CSV)", "{slug}-dpo{variant}.csv", _CSV),
        ExportFormat("rankings.jsonl", "Listwise rankings (JSON lines)", "{slug}-rankings{variant}.jsonl", _JSONL),
        ExportFormat("skips.jsonl", "Skipped comparisons (JSON lines)", "{slug}-skips{variant}.jsonl", _JSONL),
        ExportFormat("skips.csv", "Skipped comparisons (CSV)", "{slug}-skips{variant}.csv", _CSV),
        ExportFormat(
            "dpo.parquet", "DPO pairs (Hugging Face parquet)", "{slug}-dpo{variant}.parquet",
            "application/vnd.apache.parquet", "hf", "dpo", "parquet",
        ),
        ExportFormat(
            "judgments.parquet", "All judgments (Hugging Face parquet)", "{slug}-judgments{variant}.parquet",
            "application/vnd.apache.parquet", "hf", "judgments", "parquet",
        ),
        ExportFormat(
            "dpo-dataset.zip", "DPO pairs (datasets save_to_disk folder, zipped)", "{slug}-dpo{variant}-dataset.zip",
            "application/zip", "hf", "dpo", "save_to_disk",
        ),
        ExportFormat(
            "judgments-dataset.zip", "All judgments (datasets save_to_disk folder, zipped)",
            "{slug}-judgments{variant}-dataset.zip", "application/zip", "hf", "judgments", "save_to_disk",
        ),
    )
}  # fmt: skip


def annotator_pseudonym(*, study_id: int, user_id: int) -> str:
    """An annotator's id in pseudonymised exports of one study.

    HMAC-SHA256 keyed by ``SECRET_KEY`` with the study id in the salt: the same
    person keeps one id within a study (so agreement and per-annotator effects
    can be studied) but gets unrelated ids in different studies, and nobody
    without the key can recompute or reverse it. 64 bits: no collisions among
    any realistic number of annotators.
    """
    digest = salted_hmac(f"prefloop.exporting.annotator.study-{study_id}", str(user_id), algorithm="sha256")
    return f"anon-{digest.hexdigest()[:16]}"


# --- reading, chunk by chunk ----------------------------------------------------


@dataclass(frozen=True)
class _Prompt:
    id: int
    text: str
    format: str
    external_id: str
    metadata: dict


@dataclass(frozen=True)
class _Candidate:
    id: int
    text: str
    source: str
    metadata: dict
    prompt_id: int | None


@dataclass(frozen=True)
class _Chosen:
    """How a comparison came to be asked."""

    strategy: str
    model_version: int | None
    score: float | None
    propensity: float | None
    is_gold: bool
    gold_answer: Any


@dataclass(frozen=True)
class _JudgmentRow:
    id: int
    comparison_id: int
    annotator: str
    choice: str
    groups: list[list[int]]
    strength: str
    rationale: str
    aspect_ratings: dict
    shown_order: list[int]
    time_on_task_ms: int | None
    client_info: dict
    created_at: datetime
    chosen_by: _Chosen
    prompt: _Prompt | None
    candidates: dict[int, _Candidate] = field(repr=False)


@dataclass(frozen=True)
class _SkipRow:
    id: int
    comparison_id: int
    annotator: str
    reason: str
    note: str
    leased_at: datetime
    shown_order: list[int]
    chosen_by: _Chosen
    prompt: _Prompt | None
    candidates: dict[int, _Candidate] = field(repr=False)


_CHOSEN_FIELDS = (
    "comparison__strategy",
    "comparison__model_version__version",
    "comparison__score",
    "comparison__propensity",
    "comparison__is_gold",
    "comparison__gold_answer",
    "comparison__prompt_id",
)


def _annotator_namer(study: Study, *, pseudonymise: bool) -> Callable[[int, str], str]:
    if pseudonymise:
        cache: dict[int, str] = {}  # one entry per annotator, not per judgment

        def pseudonym(user_id: int, _username: str) -> str:
            if user_id not in cache:
                cache[user_id] = annotator_pseudonym(study_id=study.id, user_id=user_id)
            return cache[user_id]

        return pseudonym
    return lambda _user_id, username: username


def _username_field(pseudonymise: bool) -> str:
    """The column with the annotator's name: none is read (the user table is not
    joined) when it would be replaced by a pseudonym anyway."""
    return "annotator_id" if pseudonymise else f"annotator__{get_user_model().USERNAME_FIELD}"


def _groups(ranking: list) -> list[list[int]]:
    """The stored ranking as places, best first, each a list of candidate ids."""
    return [[int(x) for x in place] if isinstance(place, list) else [int(place)] for place in ranking or []]


def _lookup(candidate_ids: set[int], prompt_ids: set[int]) -> tuple[dict[int, _Candidate], dict[int, _Prompt]]:
    """Texts of one chunk's candidates and prompts: two queries per chunk."""
    candidates = {
        row[0]: _Candidate(*row)
        for row in Candidate.objects.filter(id__in=candidate_ids).values_list(
            "id", "text", "source", "metadata", "prompt_id"
        )
    }
    # A comparison without a prompt (older data) takes its candidates' prompt.
    prompt_ids = prompt_ids | {c.prompt_id for c in candidates.values() if c.prompt_id is not None}
    prompts = {
        row[0]: _Prompt(*row)
        for row in Prompt.objects.filter(id__in=prompt_ids).values_list(
            "id", "text", "format", "external_id", "metadata"
        )
    }
    return candidates, prompts


def _prompt_of(prompt_id: int | None, ids: Iterable[int], candidates: dict, prompts: dict) -> _Prompt | None:
    if prompt_id is None:
        prompt_id = next((candidates[i].prompt_id for i in ids if i in candidates and candidates[i].prompt_id), None)
    return prompts.get(prompt_id) if prompt_id is not None else None


def _id_chunks(rows: QuerySet, fields: tuple[str, ...]) -> Iterator[list[tuple]]:
    """``fields`` of ``rows`` (the first being ``id``) in id order, CHUNK_SIZE at
    a time, by keyset pagination: each chunk is one indexed query, and memory
    stays flat whatever the size of the study."""
    last = 0
    while True:
        chunk = list(rows.filter(id__gt=last).order_by("id").values_list(*fields)[:CHUNK_SIZE])
        if chunk:
            yield chunk
        if len(chunk) < CHUNK_SIZE:
            return
        last = chunk[-1][0]


def _judgment_chunks(study: Study, *, pseudonymise: bool) -> Iterator[list[_JudgmentRow]]:
    """The study's judgments in id order, CHUNK_SIZE at a time, with their texts."""
    name = _annotator_namer(study, pseudonymise=pseudonymise)
    username = _username_field(pseudonymise)
    judgments = Judgment.objects.filter(study_id=study.id)
    fields = (
        "id", "comparison_id", "annotator_id", username, "choice", "ranking", "strength", "rationale",
        "aspect_ratings", "shown_order", "time_on_task_ms", "client_info", "created_at", *_CHOSEN_FIELDS,
    )  # fmt: skip
    for rows in _id_chunks(judgments, fields):
        groups = [_groups(row[5]) for row in rows]
        ids = {i for g in groups for place in g for i in place} | {int(i) for row in rows for i in row[9] or []}
        candidates, prompts = _lookup(ids, {row[19] for row in rows if row[19] is not None})
        chunk = []
        for row, places in zip(rows, groups, strict=True):
            shown = [int(i) for i in row[9] or []]
            chunk.append(
                _JudgmentRow(
                    id=row[0],
                    comparison_id=row[1],
                    annotator=name(row[2], row[3]),
                    choice=row[4],
                    groups=places,
                    strength=row[6],
                    rationale=row[7],
                    aspect_ratings=row[8] or {},
                    shown_order=shown,
                    time_on_task_ms=row[10],
                    client_info=row[11] or {},
                    created_at=row[12],
                    chosen_by=_Chosen(*row[13:19]),
                    prompt=_prompt_of(row[19], [i for p in places for i in p], candidates, prompts),
                    candidates=candidates,
                )
            )
        yield chunk


def _skip_chunks(study: Study, *, pseudonymise: bool) -> Iterator[list[_SkipRow]]:
    """The study's skipped leases in id order, CHUNK_SIZE at a time, with their texts."""
    name = _annotator_namer(study, pseudonymise=pseudonymise)
    username = _username_field(pseudonymise)
    skips = Assignment.objects.filter(study_id=study.id, status=Assignment.Status.SKIPPED)
    fields = (
        "id", "comparison_id", "annotator_id", username, "skip_reason", "skip_note", "leased_at", "display_order",
        *_CHOSEN_FIELDS,
    )  # fmt: skip
    for rows in _id_chunks(skips, fields):
        # A lease records its display order; the items give it for leases made before that.
        items: dict[int, list[int]] = {}
        for comparison_id, candidate_id in (
            ComparisonItem.objects.filter(comparison_id__in={row[1] for row in rows})
            .order_by("comparison_id", "position")
            .values_list("comparison_id", "candidate_id")
        ):
            items.setdefault(comparison_id, []).append(candidate_id)
        shown = [in_display_order(items.get(row[1], []), [int(i) for i in row[7] or []]) for row in rows]
        candidates, prompts = _lookup({i for s in shown for i in s}, {row[14] for row in rows if row[14] is not None})
        yield [
            _SkipRow(
                id=row[0],
                comparison_id=row[1],
                annotator=name(row[2], row[3]),
                reason=row[4],
                note=row[5],
                leased_at=row[6],
                shown_order=order,
                chosen_by=_Chosen(*row[8:14]),
                prompt=_prompt_of(row[14], order, candidates, prompts),
                candidates=candidates,
            )
            for row, order in zip(rows, shown, strict=True)
        ]


# --- records --------------------------------------------------------------------


def _prompt_fields(prompt: _Prompt | None) -> dict[str, Any]:
    return {
        "prompt_id": prompt.id if prompt else None,
        "prompt_external_id": prompt.external_id if prompt else "",
        "prompt_format": prompt.format if prompt else "",
        "prompt": prompt.text if prompt else "",
    }


def _chosen_fields(chosen: _Chosen) -> dict[str, Any]:
    return {
        "strategy": chosen.strategy,
        "model_version": chosen.model_version,
        "score": chosen.score,
        "propensity": chosen.propensity,
        "is_gold": chosen.is_gold,
        "gold_answer": chosen.gold_answer,
    }


def _candidate_list(ids: list[int], shown: list[int], candidates: dict[int, _Candidate]) -> list[dict[str, Any]]:
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


def _answer_fields(study: Study, row: _JudgmentRow) -> dict[str, Any]:
    """The fields that open a judgment's and a ranking's record."""
    return {
        "judgment_id": row.id,
        "study": study.slug,
        "comparison_id": row.comparison_id,
        "annotator": row.annotator,
        "choice": row.choice,
    }


def _judgment_record(study: Study, row: _JudgmentRow) -> dict[str, Any]:
    ids = [i for place in row.groups for i in place]
    return {
        **_answer_fields(study, row),
        "ranking": row.groups,
        "strength": row.strength,
        "rationale": row.rationale,
        "aspect_ratings": row.aspect_ratings,
        "shown_order": row.shown_order,
        "time_on_task_ms": row.time_on_task_ms,
        "client_info": row.client_info,
        "created_at": row.created_at,
        **_prompt_fields(row.prompt),
        "candidates": _candidate_list(ids, row.shown_order, row.candidates),
        **_chosen_fields(row.chosen_by),
    }


def _dpo_records(study: Study, row: _JudgmentRow) -> list[dict[str, Any]]:
    """Every strict pair the answer implies (see the module docstring)."""
    if row.choice in (Judgment.Choice.TIE, Judgment.Choice.BOTH_BAD):
        return []
    pairs = [
        (better, worse, upper + 1, lower + 1)
        for upper, high in enumerate(row.groups)
        for lower in range(upper + 1, len(row.groups))
        for better in high
        for worse in row.groups[lower]
    ]
    prompt = _prompt_fields(row.prompt)
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


def _ranking_record(study: Study, row: _JudgmentRow) -> dict[str, Any]:
    def response(cid: int) -> dict[str, Any]:
        candidate = row.candidates.get(cid)
        return {"id": cid, "text": candidate.text if candidate else "", "source": candidate.source if candidate else ""}

    return {
        **_answer_fields(study, row),
        **_prompt_fields(row.prompt),
        "responses": [[response(cid) for cid in place] for place in row.groups],
        "ranking": row.groups,
        "shown_order": row.shown_order,
        "strategy": row.chosen_by.strategy,
        "model_version": row.chosen_by.model_version,
        "propensity": row.chosen_by.propensity,
        "is_gold": row.chosen_by.is_gold,
        "created_at": row.created_at,
    }


def _skip_record(study: Study, row: _SkipRow) -> dict[str, Any]:
    return {
        "assignment_id": row.id,
        "study": study.slug,
        "comparison_id": row.comparison_id,
        "annotator": row.annotator,
        "skip_reason": row.reason,
        "skip_note": row.note,
        "leased_at": row.leased_at,
        **_prompt_fields(row.prompt),
        "shown_order": row.shown_order,
        "candidates": _candidate_list(row.shown_order, row.shown_order, row.candidates),
        **_chosen_fields(row.chosen_by),
    }


RecordKind = Literal["judgments", "dpo", "rankings", "skips"]


def export_records(*, study: Study, kind: RecordKind, pseudonymise: bool = False) -> Iterator[list[dict[str, Any]]]:
    """The records of one export kind, a chunk (a list of dicts) at a time.

    Values are plain Python (datetimes stay datetimes); the writers below turn
    them into JSON lines, CSV or parquet.
    """
    if kind == "skips":
        for skips in _skip_chunks(study, pseudonymise=pseudonymise):
            yield [_skip_record(study, row) for row in skips]
        return
    for chunk in _judgment_chunks(study, pseudonymise=pseudonymise):
        if kind == "judgments":
            yield [_judgment_record(study, row) for row in chunk]
        elif kind == "dpo":
            yield [record for row in chunk for record in _dpo_records(study, row)]
        elif kind == "rankings":
            yield [_ranking_record(study, row) for row in chunk]
        else:
            raise ExportError(f"Unknown export kind {kind!r}.")


# --- writers --------------------------------------------------------------------

CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "judgments": (
        "judgment_id", "study", "comparison_id", "annotator", "choice", "ranking", "strength", "rationale",
        "aspect_ratings", "shown_order", "time_on_task_ms", "client_info", "created_at", "prompt_id",
        "prompt_external_id", "prompt_format", "prompt", "candidates", "strategy", "model_version", "score",
        "propensity", "is_gold", "gold_answer",
    ),
    "dpo": (
        "prompt", "chosen", "rejected", "prompt_format", "prompt_id", "prompt_external_id", "chosen_id",
        "rejected_id", "chosen_source", "rejected_source", "chosen_rank", "rejected_rank", "n_pairs_in_judgment",
        "judgment_id", "comparison_id", "study", "annotator", "choice", "strength", "is_gold", "strategy",
        "model_version", "score", "propensity", "created_at",
    ),
    "skips": (
        "assignment_id", "study", "comparison_id", "annotator", "skip_reason", "skip_note", "leased_at", "prompt_id",
        "prompt_external_id", "prompt_format", "prompt", "shown_order", "candidates", "strategy", "model_version",
        "score", "propensity", "is_gold", "gold_answer",
    ),
}  # fmt: skip


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"Cannot export a value of type {type(value).__name__}.")


def _jsonl(chunks: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default)
    for chunk in chunks:
        if chunk:
            yield "".join(encoder.encode(record) + "\n" for record in chunk).encode("utf-8")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def _csv(chunks: Iterable[list[dict[str, Any]]], columns: tuple[str, ...]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for chunk in chunks:
        for record in chunk:
            writer.writerow([_csv_cell(record[c]) for c in columns])
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # the header of an empty export
        yield buffer.getvalue().encode("utf-8")


def export_stream(*, study: Study, fmt: str, pseudonymise: bool = False) -> Iterator[bytes]:
    """The export ``fmt`` (a key of ``EXPORT_FORMATS`` of kind "stream") as a
    stream of byte blocks, one per chunk of judgments.

    Raises ExportError at once for an unknown or non-streaming format; nothing
    is read until the stream is consumed. Memory is bounded by one chunk.
    """
    spec = EXPORT_FORMATS.get(fmt)
    if spec is None or spec.kind != "stream":
        streamable = ", ".join(k for k, f in EXPORT_FORMATS.items() if f.kind == "stream")
        raise ExportError(f"Unknown streaming export {fmt!r}; expected one of: {streamable}.")
    kind, _, suffix = fmt.partition(".")
    chunks = export_records(study=study, kind=kind, pseudonymise=pseudonymise)  # type: ignore[arg-type]
    return _jsonl(chunks) if suffix == "jsonl" else _csv(chunks, CSV_COLUMNS[kind])


# --- Hugging Face datasets ---------------------------------------------------------


def _hf_schema(kind: str):
    """Arrow schemas of the HF exports. Objects with free-form keys (aspect
    ratings, client info, metadata, gold answers) are JSON text columns, as
    their keys differ from study to study."""
    import pyarrow as pa

    when = pa.timestamp("us", tz="UTC")
    if kind == "dpo":
        return pa.schema(
            [
                ("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()),
                ("prompt_format", pa.string()), ("prompt_id", pa.int64()), ("prompt_external_id", pa.string()),
                ("chosen_id", pa.int64()), ("rejected_id", pa.int64()), ("chosen_source", pa.string()),
                ("rejected_source", pa.string()), ("chosen_rank", pa.int32()), ("rejected_rank", pa.int32()),
                ("n_pairs_in_judgment", pa.int32()), ("judgment_id", pa.int64()), ("comparison_id", pa.int64()),
                ("study", pa.string()), ("annotator", pa.string()), ("choice", pa.string()), ("strength", pa.string()),
                ("is_gold", pa.bool_()), ("strategy", pa.string()), ("model_version", pa.int64()),
                ("score", pa.float64()), ("propensity", pa.float64()), ("created_at", when),
            ]
        )  # fmt: skip
    if kind == "judgments":
        candidate = pa.struct(
            [("id", pa.int64()), ("shown_position", pa.int32()), ("source", pa.string()), ("text", pa.string()),
             ("metadata", pa.string())]
        )  # fmt: skip
        return pa.schema(
            [
                ("judgment_id", pa.int64()), ("study", pa.string()), ("comparison_id", pa.int64()),
                ("annotator", pa.string()), ("choice", pa.string()), ("ranking", pa.list_(pa.list_(pa.int64()))),
                ("strength", pa.string()), ("rationale", pa.string()), ("aspect_ratings", pa.string()),
                ("shown_order", pa.list_(pa.int64())), ("time_on_task_ms", pa.int64()), ("client_info", pa.string()),
                ("created_at", when), ("prompt_id", pa.int64()), ("prompt_external_id", pa.string()),
                ("prompt_format", pa.string()), ("prompt", pa.string()), ("candidates", pa.list_(candidate)),
                ("strategy", pa.string()), ("model_version", pa.int64()), ("score", pa.float64()),
                ("propensity", pa.float64()), ("is_gold", pa.bool_()), ("gold_answer", pa.string()),
            ]
        )  # fmt: skip
    raise ExportError(f"Unknown dataset kind {kind!r}; expected dpo or judgments.")


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _hf_row(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    if kind != "judgments":
        return record
    return {
        **record,
        "aspect_ratings": _json_text(record["aspect_ratings"]),
        "client_info": _json_text(record["client_info"]),
        "gold_answer": _json_text(record["gold_answer"]),
        "candidates": [{**c, "metadata": _json_text(c["metadata"])} for c in record["candidates"]],
    }


def _parquet_row_groups(*, study: Study, kind: str, pseudonymise: bool) -> Iterator[Any]:
    """The records as pyarrow tables of ``PARQUET_ROWS_PER_GROUP`` rows (the
    last one shorter), one per row group: memory holds one."""
    import pyarrow as pa

    schema = _hf_schema(kind)
    size = PARQUET_ROWS_PER_GROUP
    buffer: list[dict[str, Any]] = []
    for chunk in export_records(study=study, kind=kind, pseudonymise=pseudonymise):  # type: ignore[arg-type]
        buffer.extend(_hf_row(kind, record) for record in chunk)
        while len(buffer) >= size:
            yield pa.Table.from_pylist(buffer[:size], schema=schema)
            del buffer[:size]
    if buffer:
        yield pa.Table.from_pylist(buffer, schema=schema)
    # An empty export is a file with the columns and no row group: an empty row
    # group would be valid parquet that the ``datasets`` reader refuses.


def _write_parquet(*, study: Study, kind: str, pseudonymise: bool, path: Path) -> int:
    """Write the records to one parquet file a row group at a time; the row count."""
    import pyarrow.parquet as pq

    written = 0
    with pq.ParquetWriter(path, _hf_schema(kind), compression="zstd") as writer:
        for table in _parquet_row_groups(study=study, kind=kind, pseudonymise=pseudonymise):
            writer.write_table(table)
            written += table.num_rows
    return written


def parquet_stream(*, study: Study, kind: Literal["dpo", "judgments"], pseudonymise: bool = False) -> Iterator[bytes]:
    """The same parquet file as ``export_hf_dataset(layout="parquet")``, as its
    bytes are written: a download starts with the first row group instead of
    after the whole file, and memory holds one row group. (Parquet puts its
    index in a footer written last, so nothing needs to seek back.)"""
    import pyarrow.parquet as pq

    if kind not in ("dpo", "judgments"):
        raise ExportError(f"Unknown dataset kind {kind!r}; expected dpo or judgments.")
    sink = _Sink()
    with pq.ParquetWriter(sink, _hf_schema(kind), compression="zstd") as writer:
        for table in _parquet_row_groups(study=study, kind=kind, pseudonymise=pseudonymise):
            writer.write_table(table)
            if block := sink.drain():
                yield block
    if block := sink.drain():
        yield block


def export_hf_dataset(
    *,
    study: Study,
    kind: Literal["dpo", "judgments"],
    layout: Literal["parquet", "save_to_disk"],
    dest: Path,
    pseudonymise: bool = False,
) -> Path:
    """Write a Hugging Face dataset of the study into the folder ``dest``; its path.

    ``layout="parquet"``: one file ``<slug>-<kind>.parquet``, written in row
    groups as the judgments stream in (load it with
    ``load_dataset("parquet", data_files=...)``). ``layout="save_to_disk"``: a
    folder ``<slug>-<kind>`` for ``datasets.load_from_disk``, made from that
    parquet file through a private cache that is removed afterwards (the
    ``datasets`` cache is keyed by fingerprints, and a shared one could hand
    back an older export of the same study); ExportError when there are no rows,
    since ``datasets`` cannot save an empty dataset (an empty parquet file, with
    the columns, is fine). The DPO dataset has the string
    columns ``prompt``, ``chosen`` and ``rejected`` that TRL's DPOTrainer
    expects. Memory is bounded by one row group.
    """
    if kind not in ("dpo", "judgments"):
        raise ExportError(f"Unknown dataset kind {kind!r}; expected dpo or judgments.")
    if layout not in ("parquet", "save_to_disk"):
        raise ExportError(f"Unknown dataset layout {layout!r}; expected parquet or save_to_disk.")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = f"{study.slug}-{kind}"
    if layout == "parquet":
        path = dest / f"{name}.parquet"
        _write_parquet(study=study, kind=kind, pseudonymise=pseudonymise, path=path)
        return path

    import datasets

    folder = dest / name
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=dest))
    bars_were_disabled = datasets.are_progress_bars_disabled()
    try:
        parquet = work / f"{name}.parquet"
        written = _write_parquet(study=study, kind=kind, pseudonymise=pseudonymise, path=parquet)
        datasets.disable_progress_bars()  # a web worker has no terminal to draw them on
        if not written:
            # datasets 5.2 can neither read a data file without rows ("corresponds
            # to no data") nor save an empty dataset (no shards to write).
            what = "preference pairs" if kind == "dpo" else "judgments"
            raise ExportError(f"The study has no {what} yet; a save_to_disk dataset cannot be empty.")
        dataset = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(work / "cache"))
        dataset.save_to_disk(str(folder))
        del dataset
    finally:
        if not bars_were_disabled:
            datasets.enable_progress_bars()
        shutil.rmtree(work, ignore_errors=True)
    return folder


# --- files and archives ------------------------------------------------------------


class _Sink:
    """A write-only file that keeps what was written until it is drained, so a
    zip archive or a parquet file can be produced block by block without a
    seekable file."""

    closed = False  # pyarrow checks it before writing

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def file_stream(path: Path) -> Iterator[bytes]:
    """A file's bytes in blocks of a megabyte."""
    with Path(path).open("rb") as handle:
        while block := handle.read(FILE_BLOCK):
            yield block


def zip_folder_stream(folder: Path, *, root: str) -> Iterator[bytes]:
    """The files under ``folder`` as a zip archive (entries under ``root/``),
    streamed a block at a time: memory holds one block, never the archive.

    Symbolic links are left out, so an archive never reaches outside the folder.
    """
    folder = Path(folder)
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for base, dirs, files in os.walk(folder, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                path = Path(base) / name
                if path.is_symlink() or not path.is_file():
                    continue
                arcname = f"{root}/{path.relative_to(folder).as_posix()}"
                with path.open("rb") as src, archive.open(arcname, "w", force_zip64=True) as dst:
                    while block := src.read(FILE_BLOCK):
                        dst.write(block)
                        if data := sink.drain():
                            yield data
                if data := sink.drain():
                    yield data
    if data := sink.drain():  # the central directory, written on close
        yield data


def checkpoint_archive(*, version: RewardModelVersion) -> Iterator[bytes]:
    """A reward-model version's checkpoint folder (safetensors + config.json) as
    a streamed zip, entries under ``model-v<version>/``.

    Checked before anything streams: ExportError when the folder is gone or
    lies outside ``PREFLOOP_CHECKPOINT_DIR`` (the path is data, and a download
    must not become a way to read other folders of the server).
    """
    root = Path(settings.PREFLOOP_CHECKPOINT_DIR).resolve()
    folder = Path(version.checkpoint_path).resolve()
    if not folder.is_relative_to(root):
        raise ExportError(f"The checkpoint of version {version.version} is not in the checkpoint folder.")
    if not folder.is_dir():
        raise ExportError(f"The checkpoint of version {version.version} is no longer on disk.")
    return zip_folder_stream(folder, root=f"model-v{version.version}")
