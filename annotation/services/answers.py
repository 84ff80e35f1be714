"""Annotators' answers: judgments (pairs and rankings), skips and undo.

Every rule is checked before anything is written, and a refusal's message
says what to fix. On commit the loop is told (``annotation.loop``), so the
next model includes the answer, or leaves an undone one out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext

from annotation import loop
from annotation.models import (
    LIKERT_POINTS,
    Assignment,
    Candidate,
    Comparison,
    ComparisonItem,
    Judgment,
    Study,
    comparison_items_of,
    in_display_order,
)
from annotation.services.errors import InvalidAnswer, NotAssigned
from annotation.services.feedback import Feedback, feedback_validate, rewrite_store
from annotation.services.leasing import comparison_status_refresh
from annotation.services.retry import retry_transaction
from models_runtime.evaluation import evaluation_draw


@dataclass(frozen=True)
class Submission:
    judgment: Judgment
    created: bool
    # Not created, and the answer sent differs from the one kept (say, from a
    # second tab): the annotator must be told theirs was not recorded.
    superseded: bool = False


# An answer given this soon after the comparison appeared cannot have been read:
# it is kept (the annotator may have decided from the first words) but counted
# as too fast on the study page. The annotate page ignores answer keys for its
# first moments (annotate.js, ARM_MS), so a key pressed twice does not answer
# the next comparison unseen; this catches what gets past that.
FAST_ANSWER_MS = 1000


def answer_too_fast(time_on_task_ms: int | None) -> bool:
    """Whether a time on task is implausibly short for reading a comparison."""
    return time_on_task_ms is not None and time_on_task_ms < FAST_ANSWER_MS


_PAIRWISE_CHOICES = {Judgment.Choice.A, Judgment.Choice.B, Judgment.Choice.TIE, Judgment.Choice.BOTH_BAD}
_STRENGTHS = {s.value for s in Judgment.Strength}


@retry_transaction
@transaction.atomic
def judgment_submit(
    *,
    study: Study,
    annotator: AbstractBaseUser,
    comparison_id: int,
    choice: str = "",
    ranking: list[list[int]] | None = None,
    strength: str = "",
    rationale: str = "",
    aspect_ratings: dict[int, dict[str, int]] | None = None,
    time_on_task_ms: int | None = None,
    client_info: dict | None = None,
    feedback: Feedback | None = None,
) -> Submission:
    """Save an annotator's answer to a comparison they were given.

    A pair is answered with ``choice`` (a, b, tie or both_bad, as the study
    allows) and, when the study asks for it, the ``strength`` of a preference
    (slight, clear, strong); a list with ``ranking``: groups of shown positions
    (0 = first shown), best group first, every position exactly once, a group
    of two or more being a tie. ``aspect_ratings`` maps shown positions to
    ``{aspect: 1..5}`` for every aspect of the study; ``rationale`` is checked
    against the study's setting; ``feedback`` (issue tags, tagged spans, a
    better response) against what the study asks for (``services.feedback``),
    a written response becoming a candidate of the prompt. Every rule is checked before anything is
    written, and the message of a refusal says what to fix. Idempotent: a
    second submit for the same comparison returns the first judgment
    unchanged (``created=False``). An answer arriving after the lease expired
    is still kept, because the work was done; an answer to a comparison never
    leased to this annotator is refused. On commit the active-learning loop is
    told (retrain and refill, debounced there).
    """
    found = _answer_target(study_id=study.id, comparison_id=comparison_id, annotator_id=annotator.pk)
    if found is None:
        raise NotAssigned(gettext("That comparison does not belong to this study."))
    item_key, prompt_id, assignment_id, display_order, answered = found
    if answered:
        comparison = Comparison.objects.get(id=comparison_id)
        assignment = Assignment.objects.get(comparison=comparison, annotator=annotator)
        existing = Judgment.objects.get(comparison=comparison, annotator=annotator)
        superseded = _differs(
            study, comparison, existing, assignment, choice=choice, ranking=ranking, strength=strength
        )
        return Submission(judgment=existing, created=False, superseded=superseded)
    if assignment_id is None:
        raise NotAssigned(gettext("That comparison was not assigned to you."))

    # Positions in the answer (A = 0, …) are positions on the annotator's screen.
    item_ids = _shown_item_ids(comparison_id, display_order)
    if ranking is not None:
        choice = Judgment.Choice.RANKED
        stored = _ranking_validate(ranking, item_ids=item_ids, allow_tie=study.allow_tie)
    else:
        stored = _pair_answer_validate(study, choice=choice, item_ids=item_ids)
    strength = _strength_validate(study, choice=choice, strength=strength)
    rationale = _rationale_validate(study, rationale)
    ratings = _aspect_ratings_validate(study, aspect_ratings or {}, item_ids=item_ids)
    checked = feedback_validate(study, feedback, comparison_id=comparison_id, item_ids=item_ids)
    rewrite = rewrite_store(study=study, feedback=checked, author=annotator)
    judgment = _judgment_insert(
        study_id=study.id,
        comparison_id=comparison_id,
        prompt_id=prompt_id,
        annotator_id=annotator.pk,
        choice=choice,
        ranking=stored,
        strength=strength,
        rationale=rationale,
        aspect_ratings=ratings,
        shown_order=item_ids,
        time_on_task_ms=time_on_task_ms,
        client_info=client_info or {},
        evaluation=in_evaluation_set(study_id=study.id, item_key=item_key, rate=study.evaluation_rate),
        response_tags=checked.response_tags,
        spans=checked.spans,
        rewrite_id=rewrite.pk if rewrite is not None else None,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Assignment._meta.db_table} SET status = %s WHERE id = %s",
            [Assignment.Status.SUBMITTED, assignment_id],
        )
    comparison_status_refresh(comparison_ids=[comparison_id])

    study_id, low_water = study.id, study.queue_refill_at
    transaction.on_commit(lambda: loop.get().judgment_changed(study_id=study_id, queue_low_water=low_water))
    return Submission(judgment=judgment, created=True)


def _answer_target(*, study_id: int, comparison_id: int, annotator_id: int) -> tuple | None:
    """``(item_key, prompt id, assignment id, display order, answered)`` of the comparison
    in this study, locked so two answers to it are written one after the other,
    with the annotator's lease of it (None when never leased to them) and
    whether they answered it already; None when the study has no such
    comparison. One statement, written out in SQL: it runs on every answer."""
    comparison, judgment, assignment = (m._meta.db_table for m in (Comparison, Judgment, Assignment))
    lock = " FOR UPDATE OF c" if connection.features.has_select_for_update_of else ""
    sql = f"""
        SELECT c.item_key, c.prompt_id, a.id, a.display_order,
               EXISTS (SELECT 1 FROM {judgment} j WHERE j.comparison_id = c.id AND j.annotator_id = %s)
        FROM {comparison} c
        LEFT JOIN {assignment} a ON a.comparison_id = c.id AND a.annotator_id = %s
        WHERE c.id = %s AND c.study_id = %s{lock}
    """  # table names come from model metadata; every value is a parameter
    with connection.cursor() as cursor:
        cursor.execute(sql, [annotator_id, annotator_id, comparison_id, study_id])
        row = cursor.fetchone()
    if row is None:
        return None
    item_key, prompt_id, assignment_id, display_order, answered = row
    if isinstance(display_order, str):
        display_order = json.loads(display_order)
    return item_key, prompt_id, assignment_id, display_order, bool(answered)


# In the model's field order: ``Model.from_db`` reads the values in that order.
_JUDGMENT_COLUMNS = (
    "study_id", "comparison_id", "prompt_id", "annotator_id", "choice", "ranking", "strength", "rationale",
    "aspect_ratings", "shown_order", "time_on_task_ms", "client_info", "response_tags", "spans", "rewrite_id",
    "evaluation", "created_at",
)  # fmt: skip


def _judgment_insert(**values: Any) -> Judgment:
    """``INSERT … RETURNING id`` of one judgment, the model instance built from
    what was written (``Judgment.objects.create`` compiled the insert afresh on
    every answer)."""
    values["created_at"] = timezone.now()
    fields = {f.attname: f for f in Judgment._meta.concrete_fields}
    params = [fields[name].get_db_prep_save(values[name], connection) for name in _JUDGMENT_COLUMNS]
    columns = ", ".join(_JUDGMENT_COLUMNS)
    marks = ", ".join(["%s"] * len(_JUDGMENT_COLUMNS))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {Judgment._meta.db_table} ({columns}) VALUES ({marks}) RETURNING id", params)
        (judgment_id,) = cursor.fetchone()
    written = (judgment_id, *(values[name] for name in _JUDGMENT_COLUMNS))
    return Judgment.from_db(connection.alias, ("id", *_JUDGMENT_COLUMNS), written)


def _differs(
    study: Study,
    comparison: Comparison,
    existing: Judgment,
    assignment: Assignment,
    *,
    choice: str,
    ranking: list | None,
    strength: str,
) -> bool:
    """Whether an answer to an already answered comparison says something else
    than the kept one (a repeated submit of the same answer does not)."""
    item_ids = _shown_item_ids(comparison.id, assignment.display_order)
    try:
        if ranking is not None:
            stored, choice = _ranking_validate(ranking, item_ids=item_ids, allow_tie=study.allow_tie), "ranked"
        else:
            stored = _pair_answer_validate(study, choice=choice, item_ids=item_ids)
        strength = _strength_validate(study, choice=choice, strength=strength)
    except InvalidAnswer:
        return True
    return (choice, stored, strength) != (existing.choice, existing.ranking, existing.strength)


def in_evaluation_set(*, study_id: int, item_key: str, rate: float) -> bool:
    """Whether a judgment of the items ``item_key`` goes to the study's fixed
    evaluation set. The draw hashes the study and the compared items, so every
    judgment of one pair (overlap, gold items) lands on the same side and the
    model is never scored on a pair it trained on."""
    return evaluation_draw(f"{study_id}\x1f{comparison_items_of(item_key)}") < rate


def judgments_split_assign(*, study_id: int) -> int:
    """Assign the study's judgments that have no side yet (rows not written by
    :func:`judgment_submit`) to the evaluation or the training set, at the
    study's current rate; returns how many. The loop calls it before each fit."""
    rate = Study.objects.values_list("evaluation_rate", flat=True).get(id=study_id)
    rows = Judgment.objects.filter(study_id=study_id, evaluation__isnull=True).values_list("id", "comparison__item_key")
    sides: dict[bool, list[int]] = {True: [], False: []}
    for judgment_id, item_key in rows:
        sides[in_evaluation_set(study_id=study_id, item_key=item_key, rate=rate)].append(judgment_id)
    for value, ids in sides.items():
        if ids:
            Judgment.objects.filter(id__in=ids, evaluation__isnull=True).update(evaluation=value)
    return len(sides[True]) + len(sides[False])


def _pair_answer_validate(study: Study, *, choice: str, item_ids: list[int]) -> list:
    """A pairwise answer the study allows, in the stored form: ``[winner, loser]``,
    or the two ids as one tied group for a tie or "both bad"."""
    if choice not in _PAIRWISE_CHOICES:
        raise InvalidAnswer(gettext("Unknown answer %(choice)r; expected one of: a, b, tie.") % {"choice": choice})
    if choice == Judgment.Choice.TIE and not study.allow_tie:
        raise InvalidAnswer(gettext("This study does not allow ties."))
    if choice == Judgment.Choice.BOTH_BAD and not study.allow_both_bad:
        raise InvalidAnswer(gettext("This study does not offer “Both bad”."))
    if len(item_ids) != 2:
        raise InvalidAnswer(gettext("This comparison shows %(n)d items: rank them all instead.") % {"n": len(item_ids)})
    first, second = item_ids
    return {"a": [first, second], "b": [second, first]}.get(choice, [[first, second]])


def _rationale_validate(study: Study, rationale: str) -> str:
    """The annotator's reason, as the study asks for it (dropped when it does not)."""
    rationale = rationale.strip()
    if study.ask_rationale == Study.RationaleMode.REQUIRED and not rationale:
        raise InvalidAnswer(gettext("Please explain your answer in a sentence: this study asks for a reason."))
    return "" if study.ask_rationale == Study.RationaleMode.OFF else rationale


def _shown_item_ids(comparison_id: int, display_order: list[int] | None) -> list[int]:
    """The comparison's candidate ids in the order this annotator saw them.

    Every lease records that order (written from the items when leased), so
    the items table is read only for leases made before it was recorded."""
    recorded = display_order or []
    if len(recorded) >= 2 and len(set(recorded)) == len(recorded):
        return list(recorded)
    item_ids = list(
        ComparisonItem.objects.filter(comparison_id=comparison_id)
        .order_by("position")
        .values_list("candidate_id", flat=True)
    )
    return in_display_order(item_ids, recorded)


def _ranking_validate(ranking: list[list[int]], *, item_ids: list[int], allow_tie: bool) -> list:
    """Check a ranking of shown positions and turn it into the stored form:
    candidate ids best first, tied candidates sharing an inner list."""
    k = len(item_ids)
    try:
        positions = [int(p) for group in ranking for p in group]
    except (TypeError, ValueError):
        raise InvalidAnswer(gettext("The ranking must be groups of item positions.")) from None
    if any(len(group) == 0 for group in ranking):
        raise InvalidAnswer(gettext("The ranking has an empty place."))
    if sorted(positions) != list(range(k)):
        raise InvalidAnswer(gettext("Rank every one of the %(k)d items exactly once.") % {"k": k})
    if not allow_tie and any(len(group) > 1 for group in ranking):
        raise InvalidAnswer(gettext("This study does not allow ties: give each item its own place."))
    return [item_ids[group[0]] if len(group) == 1 else [item_ids[p] for p in group] for group in ranking]


def _strength_validate(study: Study, *, choice: str, strength: str) -> str:
    """How much better, for a preference between two responses when the study asks."""
    if not study.ask_strength or choice not in (Judgment.Choice.A, Judgment.Choice.B):
        return ""
    if strength not in _STRENGTHS:
        raise InvalidAnswer(gettext("Say how much better: slightly better, better or much better."))
    return strength


def _aspect_ratings_validate(study: Study, ratings: dict[int, dict[str, int]], *, item_ids: list[int]) -> dict:
    """Every aspect of the study rated 1..5 for every shown item, keyed by candidate id."""
    aspects = [a.strip() for a in study.aspects or []]
    if not aspects:
        return {}
    stored: dict[str, dict[str, int]] = {}
    missing: list[str] = []
    for position, candidate_id in enumerate(item_ids):
        given = ratings.get(position) or {}
        row: dict[str, int] = {}
        for aspect in aspects:
            value = given.get(aspect)
            if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= LIKERT_POINTS:
                row[aspect] = value
            else:
                missing.append(
                    gettext("%(aspect)s of %(label)s") % {"aspect": aspect, "label": chr(ord("A") + position)}
                )
        stored[str(candidate_id)] = row
    if missing:
        shown = ", ".join(missing[:4])
        if len(missing) > 4:
            shown += gettext(" and %(n)d more") % {"n": len(missing) - 4}
        raise InvalidAnswer(
            gettext("Rate every aspect from 1 to %(top)d; missing: %(missing)s.")
            % {"top": LIKERT_POINTS, "missing": shown}
        )
    return stored


@retry_transaction
@transaction.atomic
def assignment_skip(
    *, study: Study, annotator: AbstractBaseUser, comparison_id: int, reason: str, note: str = ""
) -> Assignment:
    """Hand a leased comparison back unanswered, with the reason.

    The comparison returns to the queue for other annotators and is never
    offered to this one again; nothing is learned from a skip, but researchers
    see the reasons. Skipping twice, or after answering, changes nothing.
    """
    if not study.allow_skip:
        raise InvalidAnswer(gettext("This study does not allow skipping."))
    if reason not in Assignment.SkipReason.values:
        choices = ", ".join(Assignment.SkipReason.values)
        raise InvalidAnswer(gettext("Choose why you are skipping (one of: %(choices)s).") % {"choices": choices})
    note = note.strip()
    if reason == Assignment.SkipReason.OTHER and not note:
        raise InvalidAnswer(gettext("Please say briefly why you are skipping."))
    assignment = (
        Assignment.objects.select_for_update()
        .filter(study=study, comparison_id=comparison_id, annotator=annotator)
        .first()
    )
    if assignment is None:
        raise NotAssigned(gettext("That comparison was not assigned to you."))
    if assignment.status in (Assignment.Status.SKIPPED, Assignment.Status.SUBMITTED):
        return assignment
    assignment.status = Assignment.Status.SKIPPED
    assignment.skip_reason = reason
    assignment.skip_note = note[:2000]
    assignment.save(update_fields=["status", "skip_reason", "skip_note"])
    comparison_status_refresh(comparison_ids=[comparison_id])
    return assignment


# The page offers undo for a few seconds; the server allows a little longer so a
# click in the last moment still counts on a slow connection.
UNDO_SECONDS_SHOWN = 8
UNDO_SECONDS_ALLOWED = 30


@transaction.atomic
def judgment_undo(*, study: Study, annotator: AbstractBaseUser, judgment_id: int) -> Assignment:
    """Take back an answer just given: the judgment is deleted and its comparison
    is leased to the annotator again, to be answered first.

    Only the annotator's own judgment, and only within ``UNDO_SECONDS_ALLOWED``
    of giving it; a response written with it goes too. The loop is told on
    commit, so the next model leaves the answer out.
    """
    judgment = (
        Judgment.objects.select_for_update()
        .filter(id=judgment_id, study=study, annotator=annotator)
        .select_related("comparison")
        .first()
    )
    if judgment is None:
        raise InvalidAnswer(gettext("There is no answer of yours to undo."))
    now = timezone.now()
    if judgment.created_at < now - timedelta(seconds=UNDO_SECONDS_ALLOWED):
        raise InvalidAnswer(gettext("That answer is too old to undo."))
    comparison_id, rewrite_id = judgment.comparison_id, judgment.rewrite_id
    judgment.delete()
    if rewrite_id is not None:
        # The response written with the answer is taken back too, unless the
        # loop has already put it in a comparison (it is then part of the study).
        Candidate.objects.filter(id=rewrite_id).exclude(
            Exists(ComparisonItem.objects.filter(candidate_id=OuterRef("id")))
        ).delete()
    Assignment.objects.filter(comparison_id=comparison_id, annotator=annotator).update(
        status=Assignment.Status.ACTIVE, expires_at=now + timedelta(seconds=study.lease_seconds)
    )
    comparison_status_refresh(comparison_ids=[comparison_id])
    # The data browser's count of people's judgments (the review scan counts new ones).
    from annotation.services.review import disagreement_refresh, people_judgments_refresh  # noqa: PLC0415

    people_judgments_refresh(comparison_ids={comparison_id})
    disagreement_refresh(study_id=study.id, comparison_ids={comparison_id})

    study_id, low_water = study.id, study.queue_refill_at
    transaction.on_commit(lambda: loop.get().judgment_changed(study_id=study_id, queue_low_water=low_water))
    return Assignment.objects.get(comparison_id=comparison_id, annotator=annotator)
