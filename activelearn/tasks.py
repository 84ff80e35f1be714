"""Celery tasks of the loop: thin wrappers that take ids and call services.

A retrain that published a version asks for a refill (so annotators get the
new model's picks), and one that kept its claim for judgments that arrived
during the fit comes back when the pacing interval is over; both follow-ups
are enqueued here rather than awaited.
"""

from __future__ import annotations

import logging

from celery import shared_task

from activelearn import embedding, refill, services
from annotation.models import Study

logger = logging.getLogger(__name__)


@shared_task(name="activelearn.tasks.retrain_study", acks_late=True)
def retrain_study(study_id: int) -> int | None:
    """Refit the study's reward model (debounced by the claim on Study)."""
    try:
        outcome = services.reward_model_retrain(study_id=study_id)
    except Study.DoesNotExist:
        logger.info("retrain skipped: study %s no longer exists", study_id)
        return None
    if outcome.again_in is not None:
        retrain_study.apply_async((study_id,), countdown=outcome.again_in)
    if outcome.version is not None and services.refill_claim(study_id=study_id):
        refill_queue.delay(study_id)
    return outcome.version.version if outcome.version else None


@shared_task(name="activelearn.tasks.refill_queue", acks_late=True)
def refill_queue(study_id: int) -> int:
    """Top up the study's comparison queue with the strategy's choices."""
    try:
        return refill.queue_refill(study_id=study_id)
    except Study.DoesNotExist:
        logger.info("refill skipped: study %s no longer exists", study_id)
        return 0


@shared_task(name="activelearn.tasks.embed_study", acks_late=True)
def embed_study(study_id: int) -> int:
    """Embed the study's candidates that are not cached yet (queue ``embed``);
    a study deleted meanwhile has nothing left to embed. When the live model was
    fitted on other features (the encoder or the study's ``features`` choice
    changed), the finished embedding starts its refit: until then the loop
    cannot use it."""
    embedded = embedding.study_embed(study_id=study_id).embedded
    if services.live_model_stale(study_id=study_id) and services.retrain_claim(study_id=study_id):
        retrain_study.delay(study_id)
    return embedded
