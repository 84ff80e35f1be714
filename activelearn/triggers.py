"""Starting the loop's background work: retrains, refills and embedding, debounced per study.

A request takes the study's claim (``activelearn.services``) and, when it got
it, enqueues the task once the caller's transaction commits. Annotation reaches
these through the loop port (``activelearn.port``); the tasks themselves chain
their follow-ups (``activelearn.tasks``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task
from django.db import transaction

from activelearn import claims, embedding, services, tasks
from annotation.models import Study
from annotation.selectors import queue_waiting_count

logger = logging.getLogger(__name__)


def _enqueue_on_commit(task: Task, slot: claims.ClaimSlot, study_id: int, token: str) -> None:
    """Enqueue ``task(study_id, token)`` once the caller's transaction commits.

    When the broker cannot take it (Redis or RabbitMQ down), the claim is given
    back and the failure logged, never raised: the caller's work (an answer,
    an import) is already committed and must not turn into a server error, and
    the next request or the sweep asks again.
    """

    def send() -> None:
        try:
            task.delay(study_id, token)
        except Exception:
            logger.exception(
                "could not enqueue %s for study %s; a later request or the sweep retries", task.name, study_id
            )
            slot.drop(study_id, token)

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

    Callers holding the study pass its ``queue_low_water`` (saves a query on
    every answer)."""
    retrain_request(study_id=study_id)
    if queue_low_water is None:
        queue_low_water = Study.objects.values_list("queue_low_water", flat=True).get(id=study_id)
    if queue_waiting_count(study_id=study_id) < queue_low_water:
        refill_request(study_id=study_id)
