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

from celery import Task
from django.conf import settings
from django.db import transaction

from activelearn import claims, embedding, services, tasks
from annotation.models import Study
from annotation.selectors import queue_waiting_count

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

    ``queue_low_water`` is the study's ``queue_refill_at``: callers holding the
    study pass it (saves a query on every answer)."""
    retrain_request(study_id=study_id)
    if queue_low_water is None:
        queue_low_water = Study.objects.only("queue_low_water", "queue_demand").get(id=study_id).queue_refill_at
    if queue_waiting_count(study_id=study_id) < queue_low_water:
        refill_request(study_id=study_id)
