"""Celery tasks of the loop: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task

from activelearn import services
from annotation.models import Study

logger = logging.getLogger(__name__)


@shared_task(name="activelearn.tasks.retrain_study", acks_late=True)
def retrain_study(study_id: int) -> int | None:
    """Refit the study's reward model (debounced by the claim on Study)."""
    try:
        version = services.reward_model_retrain(study_id=study_id)
    except Study.DoesNotExist:
        logger.info("retrain skipped: study %s no longer exists", study_id)
        return None
    return version.version if version else None


@shared_task(name="activelearn.tasks.refill_queue", acks_late=True)
def refill_queue(study_id: int) -> int:
    """Top up the study's comparison queue with the strategy's choices."""
    try:
        return services.queue_refill(study_id=study_id)
    except Study.DoesNotExist:
        logger.info("refill skipped: study %s no longer exists", study_id)
        return 0
