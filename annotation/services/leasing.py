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
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext

from annotation import loop
from annotation.models import Assignment, Comparison, ComparisonItem, Judgment, JudgmentTally, Study
from annotation.selectors import StudyProgress, queue_waiting_count, queue_waiting_sql
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

    A comparison is done when it has as many people's judgments as it wants
    (an AI judge's answer fills no person's slot) or its judges settled it,
    leased when judgments plus live leases fill it, and queued otherwise. This runs
    on every lease and every answer, so it is one UPDATE with the counts as
    subqueries, written out in SQL: the ORM spelling of it cost more to
    compile than to run (benchmarks/annotator_ui.py).
    """
    if not comparison_ids:
        return
    comparison, judgment, assignment = _tables()
    judged = f"(SELECT COUNT(*) FROM {judgment} j WHERE j.comparison_id = {comparison}.id AND NOT j.by_model)"
    live = f"(SELECT COUNT(*) FROM {assignment} a WHERE a.comparison_id = {comparison}.id AND a.status = %s)"
    marks = ", ".join(["%s"] * len(comparison_ids))
    # SET sees the row as it was, so completed_at is stamped only on the change to done.
    sql = f"""
        UPDATE {comparison} SET
            status = CASE
                WHEN settled_by_judges OR judgments_wanted <= {judged} THEN %s
                WHEN judgments_wanted <= {judged} + {live} THEN %s
                ELSE %s END,
            completed_at = CASE
                WHEN status <> %s AND (settled_by_judges OR judgments_wanted <= {judged}) THEN %s
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
    # The judgments counted when the lease was taken (the page's progress bar
    # needs no query of its own); None when the caller must read them.
    progress: StudyProgress | None = None
    # Comparisons left waiting in the queue after this lease.
    waiting: int | None = None


def _tables() -> tuple[str, str, str]:
    return Comparison._meta.db_table, Judgment._meta.db_table, Assignment._meta.db_table


@dataclass(frozen=True)
class _LeaseState:
    total: int  # the study's judgments
    mine: int  # this annotator's
    held: int  # this annotator's live leases
    overdue: int  # the study's leases past their expiry, still marked active
    waiting: int  # queued comparisons (gold items are served outside the queue)


def _lease_state(*, study: Study, annotator: AbstractBaseUser, now) -> _LeaseState:
    """Everything a lease decides on, in one statement of scalar subqueries
    (each on an index): the ORM spelling took five statements, each compiled
    afresh, and cost more CPU than the database spent answering them."""
    _, judgment, assignment = _tables()
    tally = JudgmentTally._meta.db_table
    at = connection.ops.adapt_datetimefield_value(now)
    active = Assignment.Status.ACTIVE
    waiting, waiting_params = queue_waiting_sql("%s")
    sql = f"""
        SELECT
            (SELECT COALESCE(SUM(n), 0) FROM {tally} WHERE study_id = %s),
            (SELECT COUNT(*) FROM {judgment} WHERE study_id = %s AND annotator_id = %s),
            (SELECT COUNT(*) FROM {assignment}
                WHERE study_id = %s AND annotator_id = %s AND status = %s AND expires_at > %s),
            (SELECT COUNT(*) FROM {assignment} WHERE study_id = %s AND status = %s AND expires_at < %s),
            {waiting}
    """  # table names come from model metadata; every value is a parameter
    params = [
        study.id,
        study.id, annotator.pk,
        study.id, annotator.pk, active, at,
        study.id, active, at,
        study.id, *waiting_params,
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        total, mine, held, overdue, waiting = cursor.fetchone()
    return _LeaseState(total=total, mine=mine, held=held, overdue=overdue, waiting=waiting)


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

    This runs on every comparison every annotator gets, so its statements are
    written out in SQL (the same on PostgreSQL and SQLite): one read of the
    counts, then the pick, the lease and the comparison's status.
    """
    if study.status != Study.Status.ACTIVE:
        raise StudyNotOpen(
            gettext("The study “%(name)s” is %(status)s.")
            % {"name": study.name, "status": str(study.get_status_display()).lower()}
        )
    now = timezone.now()
    state = _lease_state(study=study, annotator=annotator, now=now)
    progress = StudyProgress(mine=state.mine, total=state.total, budget=study.budget, quota=study.annotator_quota)
    if state.held >= hold:
        table = Assignment._meta.db_table
        held = list(
            Assignment.objects.raw(
                f"SELECT * FROM {table} WHERE study_id = %s AND annotator_id = %s AND status = %s"
                " AND expires_at > %s ORDER BY leased_at, id LIMIT %s",
                [study.id, annotator.pk, Assignment.Status.ACTIVE, connection.ops.adapt_datetimefield_value(now), hold],
            )
        )
        if len(held) >= hold:
            return Lease(assignment=held[hold - 1], created=False, progress=progress, waiting=state.waiting)
    if state.total + state.held >= study.budget:
        return None
    if study.annotator_quota is not None and state.mine + state.held >= study.annotator_quota:
        return None

    waiting = state.waiting
    if state.overdue:
        waiting += leases_expire(study_id=study.id)
    if study.gold_rate > 0 and random.random() < study.gold_rate:
        gold = _gold_lease(study=study, annotator=annotator, now=now)
        if gold is not None:
            return Lease(assignment=gold.assignment, created=True, progress=progress, waiting=waiting)
    comparison_id = _queued_pick(study_id=study.id, annotator_id=annotator.pk)
    if comparison_id is None:
        return None
    # Each annotator gets their own order in blind mode, so no position favours a response.
    assignment = _assignment_upsert(
        study=study, comparison_id=comparison_id, annotator=annotator, now=now, shuffle=study.blind
    )
    comparison_status_refresh(comparison_ids=[comparison_id])
    return Lease(assignment=assignment, created=True, progress=progress, waiting=max(0, waiting - 1))


def _queued_pick(*, study_id: int, annotator_id: int) -> int | None:
    """The id of the highest-priority queued comparison the annotator has
    neither judged nor skipped nor holds, locked (``SKIP LOCKED``: one taken by
    another annotator's open lease is passed over, not waited for)."""
    comparison, judgment, assignment = _tables()
    lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    sql = f"""
        SELECT c.id FROM {comparison} c
        WHERE c.study_id = %s AND c.status = %s AND NOT c.is_gold
          AND NOT EXISTS (SELECT 1 FROM {judgment} j WHERE j.comparison_id = c.id AND j.annotator_id = %s)
          AND NOT EXISTS (
              SELECT 1 FROM {assignment} a
              WHERE a.comparison_id = c.id AND a.annotator_id = %s AND a.status IN (%s, %s))
        ORDER BY c.priority DESC, c.id
        LIMIT 1{lock}
    """  # table names come from model metadata; every value is a parameter
    params = [
        study_id, Comparison.Status.QUEUED, annotator_id, annotator_id,
        Assignment.Status.ACTIVE, Assignment.Status.SKIPPED,
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


_ASSIGNMENT_FIELDS = (
    "id", "study_id", "comparison_id", "annotator_id", "status", "leased_at", "expires_at", "display_order",
    "skip_reason", "skip_note",
)  # fmt: skip


def _assignment_upsert(
    *, study: Study, comparison_id: int, annotator: AbstractBaseUser, now, shuffle: bool
) -> Assignment:
    """Lease the comparison to the annotator: one upsert, so an expired lease of
    the same comparison is replaced, and two requests of one annotator racing
    for the same comparison share one lease instead of one of them failing."""
    table, item = Assignment._meta.db_table, ComparisonItem._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT candidate_id FROM {item} WHERE comparison_id = %s ORDER BY position", [comparison_id])
        order = [row[0] for row in cursor.fetchall()]
        if shuffle:
            random.SystemRandom().shuffle(order)
        expires = now + timedelta(seconds=study.lease_seconds)
        adapt = connection.ops.adapt_datetimefield_value
        display = Assignment._meta.get_field("display_order").get_db_prep_save(order, connection)
        cursor.execute(
            f"""
            INSERT INTO {table}
                (study_id, comparison_id, annotator_id, status, leased_at, expires_at, display_order,
                 skip_reason, skip_note)
            VALUES (%s, %s, %s, %s, %s, %s, %s, '', '')
            ON CONFLICT (comparison_id, annotator_id) DO UPDATE SET
                status = excluded.status, leased_at = excluded.leased_at,
                expires_at = excluded.expires_at, display_order = excluded.display_order
            RETURNING id, skip_reason, skip_note
            """,  # table names come from model metadata; every value is a parameter
            [study.id, comparison_id, annotator.pk, Assignment.Status.ACTIVE, adapt(now), adapt(expires), display],
        )
        assignment_id, skip_reason, skip_note = cursor.fetchone()
    values = (
        assignment_id, study.id, comparison_id, annotator.pk, Assignment.Status.ACTIVE, now, expires, order,
        skip_reason, skip_note,
    )  # fmt: skip
    return Assignment.from_db(connection.alias, _ASSIGNMENT_FIELDS, values)


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
    assignment = _assignment_upsert(
        study=study, comparison_id=comparison.id, annotator=annotator, now=now, shuffle=True
    )
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
    elif lease.created and _waiting(lease, study) < study.queue_refill_at:
        loop.get().refill_request(study_id=study.id)
    return lease


def _waiting(lease: Lease | None, study: Study) -> int:
    """The queue's waiting comparisons after ``lease`` (counted when it was taken, where it was)."""
    if lease is not None and lease.waiting is not None:
        return lease.waiting
    return queue_waiting_count(study_id=study.id)


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
    if fresh_or_none and _waiting(lease, study) < study.queue_refill_at:
        loop.get().refill_request(study_id=study.id)
    return lease


def study_judgment_count(*, study_id: int) -> int:
    """The study's judgments, from the tally the database keeps (constant time)."""
    return int(JudgmentTally.objects.filter(study_id=study_id).aggregate(total=Sum("n"))["total"] or 0)


def annotator_quota_reached(*, study: Study, annotator: AbstractBaseUser) -> bool:
    """Whether the annotator has given all the judgments the study's quota allows."""
    if study.annotator_quota is None:
        return False
    return Judgment.objects.filter(study=study, annotator=annotator).count() >= study.annotator_quota
