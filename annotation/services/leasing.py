"""Leasing comparisons to annotators: the queue, gold items, expiry and look-ahead.

A lease (``Assignment``) holds one comparison for one annotator until it
expires, so an abandoned tab returns its comparison to the queue. Leasing is
where the queue runs dry, so it is also where the loop is asked for more
(through ``annotation.loop``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from annotation import loop
from annotation.models import Assignment, Comparison, Judgment, Study
from annotation.selectors import queue_waiting_count
from annotation.services.errors import StudyNotOpen
from annotation.services.retry import retry_transaction


def leases_expire(*, study_id: int) -> int:
    """Mark overdue leases expired and put their comparisons back in the queue.

    Runs before every lease, so an abandoned tab costs at most one lease
    period. Returns how many leases expired.
    """
    now = timezone.now()
    expired = list(
        Assignment.objects.filter(study_id=study_id, status=Assignment.Status.ACTIVE, expires_at__lt=now).values_list(
            "id", "comparison_id"
        )
    )
    if not expired:
        return 0
    Assignment.objects.filter(id__in=[a for a, _ in expired], status=Assignment.Status.ACTIVE).update(
        status=Assignment.Status.EXPIRED
    )
    comparison_status_refresh(comparison_ids=[c for _, c in expired])
    return len(expired)


def comparison_status_refresh(*, comparison_ids: list[int]) -> None:
    """Recompute queued / leased / done from judgments and live leases.

    A comparison is done when it has as many judgments as it wants, leased
    when judgments plus live leases fill it, and queued otherwise. This runs
    on every lease and every answer, so it is one UPDATE with the counts as
    subqueries, written out in SQL: the ORM spelling of it cost more to
    compile than to run (benchmarks/annotator_ui.py).
    """
    if not comparison_ids:
        return
    comparison, judgment, assignment = (m._meta.db_table for m in (Comparison, Judgment, Assignment))
    judged = f"(SELECT COUNT(*) FROM {judgment} j WHERE j.comparison_id = {comparison}.id)"
    live = f"(SELECT COUNT(*) FROM {assignment} a WHERE a.comparison_id = {comparison}.id AND a.status = %s)"
    marks = ", ".join(["%s"] * len(comparison_ids))
    # SET sees the row as it was, so completed_at is stamped only on the change to done.
    sql = f"""
        UPDATE {comparison} SET
            status = CASE
                WHEN judgments_wanted <= {judged} THEN %s
                WHEN judgments_wanted <= {judged} + {live} THEN %s
                ELSE %s END,
            completed_at = CASE
                WHEN status <> %s AND judgments_wanted <= {judged} THEN %s
                ELSE completed_at END
        WHERE id IN ({marks})
    """  # table names come from model metadata; every value is a parameter
    done, leased, queued = Comparison.Status.DONE, Comparison.Status.LEASED, Comparison.Status.QUEUED
    params = [done, Assignment.Status.ACTIVE, leased, queued, done, timezone.now(), *comparison_ids]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@dataclass(frozen=True)
class Lease:
    assignment: Assignment
    created: bool


@retry_transaction
@transaction.atomic
def assignment_lease_next(*, study: Study, annotator: AbstractBaseUser, hold: int = 1) -> Lease | None:
    """Give the annotator their next comparison in this study, or None.

    An annotator who already holds a live lease gets it back (a reload shows
    the same comparison). Otherwise the highest-priority queued comparison
    they have not judged is locked with ``SELECT … FOR UPDATE SKIP LOCKED``
    (PostgreSQL; SQLite serialises writers instead), so two annotators never
    take the same slot. None means the queue is empty or the study is not
    accepting work; the caller decides whether to refill.

    ``hold=2`` asks for the comparison after the current one (leased ahead, so
    the page can show it the moment the current one is answered): the
    annotator's second live lease, or a new one. Leases held count against the
    budget and the annotator's quota, so leasing ahead never hands out work
    the study will not pay for.
    """
    if study.status != Study.Status.ACTIVE:
        raise StudyNotOpen(f"The study “{study.name}” is {study.get_status_display().lower()}.")
    now = timezone.now()
    held = list(
        Assignment.objects.select_related("comparison")
        .filter(study=study, annotator=annotator, status=Assignment.Status.ACTIVE, expires_at__gt=now)
        .order_by("leased_at", "id")[:hold]
    )
    if len(held) >= hold:
        return Lease(assignment=held[hold - 1], created=False)
    if study_judgment_count(study_id=study.id) + len(held) >= study.budget:
        return None
    if study.annotator_quota is not None and (
        Judgment.objects.filter(study=study, annotator=annotator).count() + len(held) >= study.annotator_quota
    ):
        return None

    leases_expire(study_id=study.id)
    if study.gold_rate > 0 and random.random() < study.gold_rate:
        gold = _gold_lease(study=study, annotator=annotator, now=now)
        if gold is not None:
            return gold
    comparison = (
        Comparison.objects.filter(study=study, status=Comparison.Status.QUEUED, is_gold=False)
        .exclude(judgments__annotator=annotator)
        .exclude(
            # One subquery, so both conditions hold for the same assignment row.
            id__in=Assignment.objects.filter(
                annotator=annotator, status__in=(Assignment.Status.ACTIVE, Assignment.Status.SKIPPED)
            ).values("comparison_id")
        )
        .order_by("-priority", "id")
        .select_for_update(skip_locked=True, of=("self",))
        .first()
    )
    if comparison is None:
        return None
    # Each annotator gets their own order in blind mode, so no position favours a response.
    assignment = _assignment_upsert(
        study=study, comparison=comparison, annotator=annotator, now=now, shuffle=study.blind
    )
    comparison_status_refresh(comparison_ids=[comparison.id])
    return Lease(assignment=assignment, created=True)


def _assignment_upsert(
    *, study: Study, comparison: Comparison, annotator: AbstractBaseUser, now, shuffle: bool
) -> Assignment:
    """Lease ``comparison`` to the annotator: one upsert, so an expired lease of
    the same comparison is replaced, and two requests of one annotator racing
    for the same comparison share one lease instead of one of them failing."""
    order = list(comparison.items.order_by("position").values_list("candidate_id", flat=True))
    if shuffle:
        random.SystemRandom().shuffle(order)
    (assignment,) = Assignment.objects.bulk_create(
        [
            Assignment(
                study=study,
                comparison=comparison,
                annotator=annotator,
                status=Assignment.Status.ACTIVE,
                leased_at=now,
                expires_at=now + timedelta(seconds=study.lease_seconds),
                display_order=order,
            )
        ],
        update_conflicts=True,
        unique_fields=["comparison", "annotator"],
        update_fields=["status", "leased_at", "expires_at", "display_order"],
    )
    return assignment


def _gold_lease(*, study: Study, annotator: AbstractBaseUser, now) -> Lease | None:
    """A gold or attention-check comparison this annotator has not seen, or None.

    Every annotator answers each gold item once, so no row lock is needed: many
    annotators may hold the same gold comparison at the same time.
    """
    seen = Assignment.objects.filter(annotator=annotator, study=study).values("comparison_id")
    comparison = Comparison.objects.filter(study=study, is_gold=True).exclude(id__in=seen).order_by("?").first()
    if comparison is None:
        return None
    # Always shuffled: the known answer must not sit in one place.
    assignment = _assignment_upsert(study=study, comparison=comparison, annotator=annotator, now=now, shuffle=True)
    return Lease(assignment=assignment, created=True)


def assignment_lease_or_refill(*, study: Study, annotator: AbstractBaseUser) -> Lease | None:
    """Lease the annotator's next comparison, topping the queue up if it ran dry.

    This is the entry point for every client (pages, API, simulators). When
    the queue is empty but budget remains, a few random pairs are queued right
    here so nobody waits for the worker (recorded as random, not as the
    strategy's), and the worker is asked for its informed picks. After a new
    lease, a queue under ``Study.queue_refill_at`` asks the worker for more.
    None means the study's work is done.
    """
    lease = assignment_lease_next(study=study, annotator=annotator)
    if lease is None:
        if study_judgment_count(study_id=study.id) >= study.budget or annotator_quota_reached(
            study=study, annotator=annotator
        ):
            return None
        loop.get().refill_fallback(study_id=study.id)
        loop.get().refill_request(study_id=study.id)
        lease = assignment_lease_next(study=study, annotator=annotator)
    elif lease.created and queue_waiting_count(study_id=study.id) < study.queue_refill_at:
        loop.get().refill_request(study_id=study.id)
    return lease


def assignment_lease_ahead(*, study: Study, annotator: AbstractBaseUser) -> Lease | None:
    """The comparison after the annotator's current one, leased now so the page
    can swap it in without a round trip; None when there is none to spare.

    Never refills synchronously (the current comparison is already on screen,
    so nobody is waiting); a queue that ran low asks the worker instead.
    """
    try:
        lease = assignment_lease_next(study=study, annotator=annotator, hold=2)
    except StudyNotOpen:
        return None
    fresh_or_none = lease is None or lease.created
    if fresh_or_none and queue_waiting_count(study_id=study.id) < study.queue_refill_at:
        loop.get().refill_request(study_id=study.id)
    return lease


def study_judgment_count(*, study_id: int) -> int:
    return Judgment.objects.filter(study_id=study_id).count()


def annotator_quota_reached(*, study: Study, annotator: AbstractBaseUser) -> bool:
    """Whether the annotator has given all the judgments the study's quota allows."""
    if study.annotator_quota is None:
        return False
    return Judgment.objects.filter(study=study, annotator=annotator).count() >= study.annotator_quota
