"""Starting the loop's background work: retrains, refills and embedding, debounced per study.

A request takes the study's claim (``activelearn.services``) and, when it got
it, enqueues the task once the caller's transaction commits. Annotation reaches
these through the loop port (``activelearn.port``); the tasks themselves chain
their follow-ups (``activelearn.tasks``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from celery import Task
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from activelearn import claims, embedding, services, tasks
from annotation.models import Study
from annotation.selectors import queue_waiting_sql

logger = logging.getLogger(__name__)

# Monotonic seconds, replaced by tests.
clock: Callable[[], float] = time.monotonic
# When this process last failed to send to the broker (None: the last send worked).
_broker_failed_at: float | None = None


def _enqueue_on_commit(task: Task, slot: claims.ClaimSlot, study_id: int, token: str) -> None:
    """Enqueue ``task(study_id, token)`` once the caller's transaction commits.

    When the broker cannot take it (Redis or RabbitMQ down, or hung past
    ``PREFLOOP_BROKER_TIMEOUT_SECONDS``), the claim is given back and the
    failure logged, never raised: the caller's work (an answer, an import) is
    already committed and must not turn into a server error, and the next
    request or the sweep asks again. For ``PREFLOOP_BROKER_BACKOFF_SECONDS``
    after a failure this process does not try (the claim is given back at
    once), so a dead broker slows one request per period, not every one.
    """

    def send() -> None:
        global _broker_failed_at
        failed_at = _broker_failed_at
        if failed_at is not None and clock() - failed_at < settings.PREFLOOP_BROKER_BACKOFF_SECONDS:
            slot.drop(study_id, token)
            return
        try:
            task.delay(study_id, token)
        except Exception:
            _broker_failed_at = clock()
            logger.exception(
                "could not enqueue %s for study %s; a later request or the sweep retries", task.name, study_id
            )
            slot.drop(study_id, token)
        else:
            _broker_failed_at = None

    transaction.on_commit(send)


def _request(claim: Callable[..., str | None], task: Task, slot: claims.ClaimSlot, study_id: int) -> bool:
    token = claim(study_id=study_id)
    if token is not None:
        _enqueue_on_commit(task, slot, study_id, token)
    return token is not None


def retrain_request(*, study_id: int) -> bool:
    """Mark the study's model out of date and start a retrain unless one runs.

    Returns True when this call claimed the study and enqueued the task.
    """
    return _request(services.retrain_claim, tasks.retrain_study, services.RETRAIN, study_id)


def refill_request(*, study_id: int) -> bool:
    """Enqueue a queue refill unless one is already in flight for the study."""
    return _request(services.refill_claim, tasks.refill_queue, services.REFILL, study_id)


def embed_request(*, study_id: int) -> bool:
    """Embed the study's new candidates in the background (queue ``embed``)
    unless a task for the study already runs; that one goes round once more."""
    return _request(embedding.embedding_claim, tasks.embed_study, embedding.EMBED, study_id)


def loop_notify_judgment(*, study_id: int, queue_low_water: int | None = None) -> None:
    """Tell the loop a judgment committed (or was undone): ask for a retrain,
    top up the queue when it runs low.

    Under a crowd this runs after every answer and nearly always finds the
    model already marked out of date with its retrain claimed, and the queue
    deep enough or its refill claimed: then one read of the study row is all it
    costs (:func:`_loop_state`), and the writes and the broker are left alone.
    Skipping on that read is safe: a fit clears the mark before it reads the
    judgments, so a mark seen set after this judgment committed was cleared, if
    at all, by a fit that reads it; and a claimed retrain is released only when
    the mark is clear (``services``).

    ``queue_low_water`` is the study's ``queue_refill_at``: callers holding the
    study pass it."""
    state = _loop_state(study_id)
    if state is None:
        return
    now = timezone.now()
    if not state.retrain_dirty or not services.RETRAIN.held(state.retrain_at, state.retrain_owner, now):
        retrain_request(study_id=study_id)
    if queue_low_water is None:
        queue_low_water = Study(queue_low_water=state.queue_low_water, queue_demand=state.queue_demand).queue_refill_at
    if state.waiting < queue_low_water and not services.REFILL.held(state.refill_at, state.refill_owner, now):
        refill_request(study_id=study_id)


@dataclass(frozen=True)
class _LoopState:
    retrain_dirty: bool
    retrain_at: datetime | None
    retrain_owner: str
    refill_at: datetime | None
    refill_owner: str
    queue_low_water: int
    queue_demand: int
    waiting: int


def _loop_state(study_id: int) -> _LoopState | None:
    """The study's retrain mark, both claims, its queue settings and the
    queue's waiting comparisons: one statement, written out in SQL (it runs on
    every answer); None when the study is gone."""
    waiting, waiting_params = queue_waiting_sql("s.id")
    sql = f"""
        SELECT s.retrain_dirty, s.retrain_claimed_at, s.retrain_owner, s.refill_claimed_at, s.refill_owner,
               s.queue_low_water, s.queue_demand, {waiting}
        FROM {Study._meta.db_table} s WHERE s.id = %s
    """  # table names come from model metadata; every value is a parameter
    with connection.cursor() as cursor:
        cursor.execute(sql, [*waiting_params, study_id])
        row = cursor.fetchone()
    if row is None:
        return None
    dirty, retrain_at, retrain_owner, refill_at, refill_owner, low_water, demand, waiting = row
    return _LoopState(
        retrain_dirty=bool(dirty),
        retrain_at=_db_datetime(retrain_at),
        retrain_owner=retrain_owner or "",
        refill_at=_db_datetime(refill_at),
        refill_owner=refill_owner or "",
        queue_low_water=low_water,
        queue_demand=demand,
        waiting=waiting,
    )


def _db_datetime(value: datetime | str | None) -> datetime | None:
    """A timestamp as a cursor returns it, made aware: PostgreSQL's is aware;
    SQLite's is naive UTC (or the text Django stored, where the column's type
    is not declared as a timestamp)."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(value)
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed
