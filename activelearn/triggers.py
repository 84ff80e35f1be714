"""Starting the loop's background work: retrains, refills and embedding, debounced per study.

A request takes the study's claim (``activelearn.services``) and, when it got
it, enqueues the task once the caller's transaction commits. Annotation reaches
these through the loop port (``activelearn.port``); the tasks themselves chain
their follow-ups (``activelearn.tasks``).
"""

from __future__ import annotations

from django.db import transaction

from activelearn import embedding, services, tasks
from annotation.models import Study
from annotation.selectors import queue_waiting_count


def retrain_request(*, study_id: int) -> bool:
    """Mark the study's model out of date and start a retrain unless one runs.

    Returns True when this call claimed the study and enqueued the task.
    """
    claimed = services.retrain_claim(study_id=study_id)
    if claimed:
        transaction.on_commit(lambda: tasks.retrain_study.delay(study_id))
    return claimed


def refill_request(*, study_id: int) -> bool:
    """Enqueue a queue refill unless one is already in flight for the study."""
    claimed = services.refill_claim(study_id=study_id)
    if claimed:
        transaction.on_commit(lambda: tasks.refill_queue.delay(study_id))
    return claimed


def embed_request(*, study_id: int) -> bool:
    """Embed the study's new candidates in the background (queue ``embed``)
    unless a task for the study already runs; that one goes round once more."""
    claimed = embedding.embedding_claim(study_id=study_id)
    if claimed:
        transaction.on_commit(lambda: tasks.embed_study.delay(study_id))
    return claimed


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
