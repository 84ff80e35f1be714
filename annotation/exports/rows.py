"""The study's judgments and skipped leases, read chunk by chunk with their texts.

Judgments (or skips) are read in keyset-paginated chunks (``id > last ORDER BY
id LIMIT CHUNK_SIZE``) and the prompts and candidates a chunk refers to are
looked up for that chunk alone: three queries per chunk of judgments (a fourth
for skips, whose order on screen may come from the comparison's items), so
memory stays flat however large the study is, and the number of queries grows
with the number of chunks, never with the number of rows in one. Keyset pages
(rather than one server-side cursor) hold no cursor or transaction open while a
slow client downloads; an answer submitted during an export may or may not be
in it, an undone one is left out if the export had not reached it yet.

Annotators are named by username, or with ``pseudonymise`` by a keyed hash
(:func:`annotator_pseudonym`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.utils.crypto import salted_hmac

from annotation.models import Assignment, Candidate, ComparisonItem, Judgment, Prompt, Study, in_display_order

# Judgments (or skips) per query. A chunk of a listwise study looks up at most
# 8 candidates per judgment, well under SQLite's limit on query parameters.
CHUNK_SIZE = 1000


def annotator_pseudonym(*, study_id: int, user_id: int) -> str:
    """An annotator's id in pseudonymised exports of one study.

    HMAC-SHA256 keyed by ``SECRET_KEY`` with the study id in the salt: the same
    person keeps one id within a study (so agreement and per-annotator effects
    can be studied) but gets unrelated ids in different studies, and nobody
    without the key can recompute or reverse it. 64 bits: no collisions among
    any realistic number of annotators.
    """
    # The salt still names the module this lived in before: changing it would
    # change every pseudonym researchers have already published.
    digest = salted_hmac(f"prefloop.exporting.annotator.study-{study_id}", str(user_id), algorithm="sha256")
    return f"anon-{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class PromptText:
    """A prompt as exports show it."""

    id: int
    text: str
    format: str
    external_id: str
    metadata: dict


@dataclass(frozen=True)
class CandidateText:
    """A candidate response as exports show it."""

    id: int
    text: str
    source: str
    metadata: dict
    prompt_id: int | None


@dataclass(frozen=True)
class ChosenBy:
    """How a comparison came to be asked."""

    strategy: str
    model_version: int | None
    score: float | None
    propensity: float | None
    is_gold: bool
    gold_answer: Any


@dataclass(frozen=True)
class JudgmentRow:
    """One judgment with what its records need: ``groups`` is the stored ranking
    as places, best first (a tied place holds two or more ids); ``candidates``
    holds the texts of the whole chunk, keyed by id."""

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
    chosen_by: ChosenBy
    prompt: PromptText | None
    candidates: dict[int, CandidateText] = field(repr=False)
    # "person", or "model" for an AI judge's answer (annotation.models.AIJudge).
    annotator_kind: str = "person"
    # A prompt-optimisation comparison's task input (the candidates are instructions); "" otherwise.
    task_input: str = ""
    # A reviewer's verdict (annotation.services.review): "", confirmed, overturned or excluded,
    # and for an overturned judgment the label the reviewer gave (choice as the annotator saw it).
    review_state: str = ""
    adjudicated_choice: str = ""
    adjudicated_groups: list[list[int]] | None = None
    # Richer feedback: issue tags {candidate id: [tag, …]}, tagged spans, and the
    # candidate made from the better response written with the answer.
    response_tags: dict = field(default_factory=dict)
    spans: list = field(default_factory=list)
    rewrite_id: int | None = None


@dataclass(frozen=True)
class SkipRow:
    """One skipped lease, with the candidates in the order the annotator saw them."""

    id: int
    comparison_id: int
    annotator: str
    reason: str
    note: str
    leased_at: datetime
    shown_order: list[int]
    chosen_by: ChosenBy
    prompt: PromptText | None
    candidates: dict[int, CandidateText] = field(repr=False)


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


def _lookup(candidate_ids: set[int], prompt_ids: set[int]) -> tuple[dict[int, CandidateText], dict[int, PromptText]]:
    """Texts of one chunk's candidates and prompts: two queries per chunk."""
    candidates = {
        row[0]: CandidateText(*row)
        for row in Candidate.objects.filter(id__in=candidate_ids).values_list(
            "id", "text", "source", "metadata", "prompt_id"
        )
    }
    # A comparison without a prompt (older data) takes its candidates' prompt.
    prompt_ids = prompt_ids | {c.prompt_id for c in candidates.values() if c.prompt_id is not None}
    prompts = {
        row[0]: PromptText(*row)
        for row in Prompt.objects.filter(id__in=prompt_ids).values_list(
            "id", "text", "format", "external_id", "metadata"
        )
    }
    return candidates, prompts


def _prompt_of(prompt_id: int | None, ids: Iterable[int], candidates: dict, prompts: dict) -> PromptText | None:
    if prompt_id is None:
        prompt_id = next((candidates[i].prompt_id for i in ids if i in candidates and candidates[i].prompt_id), None)
    return prompts.get(prompt_id) if prompt_id is not None else None


def id_chunks(rows: QuerySet, fields: tuple[str, ...]) -> Iterator[list[tuple]]:
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


def judgment_chunks(
    study: Study, *, pseudonymise: bool, adjudicated: bool = False, prompt_ids: list[int] | None = None
) -> Iterator[list[JudgmentRow]]:
    """The study's judgments in id order, CHUNK_SIZE at a time, with their texts.

    With ``adjudicated`` (the training-data exports), each judgment's answer is
    the label the reward model learns: a reviewer's where they overturned it,
    and judgments a reviewer excluded are left out. ``prompt_ids`` keeps the
    judgments of those prompts only (the data browser's selection)."""
    name = _annotator_namer(study, pseudonymise=pseudonymise)
    username = _username_field(pseudonymise)
    judgments = Judgment.objects.filter(study_id=study.id)
    if prompt_ids is not None:
        judgments = judgments.filter(prompt_id__in=prompt_ids)
    if adjudicated:
        judgments = judgments.exclude(review_state=Judgment.ReviewState.EXCLUDED)
    fields = (
        "id", "comparison_id", "annotator_id", username, "choice", "ranking", "strength", "rationale",
        "aspect_ratings", "shown_order", "time_on_task_ms", "client_info", "created_at", *_CHOSEN_FIELDS,
        "annotator__ai_judge__id", "comparison__task_input__text", "review_state", "adjudicated_choice",
        "adjudicated_ranking", "response_tags", "spans", "rewrite_id",
    )  # fmt: skip
    for rows in id_chunks(judgments, fields):
        if adjudicated:
            rows = [
                (*row[:4], row[23], row[24], *row[6:]) if row[22] == Judgment.ReviewState.OVERTURNED else row
                for row in rows
            ]
        groups = [_groups(row[5]) for row in rows]
        ids = {i for g in groups for place in g for i in place} | {int(i) for row in rows for i in row[9] or []}
        candidates, prompts = _lookup(ids, {row[19] for row in rows if row[19] is not None})
        chunk = []
        for row, places in zip(rows, groups, strict=True):
            shown = [int(i) for i in row[9] or []]
            chunk.append(
                JudgmentRow(
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
                    chosen_by=ChosenBy(*row[13:19]),
                    prompt=_prompt_of(row[19], [i for p in places for i in p], candidates, prompts),
                    candidates=candidates,
                    annotator_kind="person" if row[20] is None else "model",
                    task_input=row[21] or "",
                    review_state=row[22] or "",
                    adjudicated_choice=row[23] or "",
                    adjudicated_groups=_groups(row[24]) if row[24] is not None else None,
                    response_tags=row[25] or {},
                    spans=row[26] or [],
                    rewrite_id=row[27],
                )
            )
        yield chunk


def skip_chunks(study: Study, *, pseudonymise: bool) -> Iterator[list[SkipRow]]:
    """The study's skipped leases in id order, CHUNK_SIZE at a time, with their texts."""
    name = _annotator_namer(study, pseudonymise=pseudonymise)
    username = _username_field(pseudonymise)
    skips = Assignment.objects.filter(study_id=study.id, status=Assignment.Status.SKIPPED)
    fields = (
        "id", "comparison_id", "annotator_id", username, "skip_reason", "skip_note", "leased_at", "display_order",
        *_CHOSEN_FIELDS,
    )  # fmt: skip
    for rows in id_chunks(skips, fields):
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
            SkipRow(
                id=row[0],
                comparison_id=row[1],
                annotator=name(row[2], row[3]),
                reason=row[4],
                note=row[5],
                leased_at=row[6],
                shown_order=order,
                chosen_by=ChosenBy(*row[8:14]),
                prompt=_prompt_of(row[14], order, candidates, prompts),
                candidates=candidates,
            )
            for row, order in zip(rows, shown, strict=True)
        ]
