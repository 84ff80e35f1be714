"""Celery tasks of the loop: thin wrappers that take ids and call services.

A retrain that published a version asks for a refill (so annotators get the
new model's picks) and, when the study regenerates automatically, a round of
new responses for the prompts the new model leaves unclear; one that kept its claim for judgments that arrived
during the fit comes back when the pacing interval is over; both follow-ups
are enqueued here rather than awaited.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache

from activelearn import embedding, refill, services, triggers
from annotation import tasks as annotation_tasks
from annotation.models import Study
from annotation.services import browse, generation, judging, prompt_opt, review, webhooks

logger = logging.getLogger(__name__)

# How often a study's refills may ask its AI judges for a run (see refill_queue).
JUDGES_RUN_EVERY_S = 10


@shared_task(name="activelearn.tasks.retrain_study", acks_late=True)
def retrain_study(study_id: int, claim: str | None = None) -> int | None:
    """Refit the study's reward model under the claim its request took
    (``activelearn.claims``; None for a message from before claims had tokens)."""
    try:
        outcome = services.reward_model_retrain(study_id=study_id, claim=claim)
    except Study.DoesNotExist:
        logger.info("retrain skipped: study %s no longer exists", study_id)
        return None
    if outcome.again_in is not None:
        retrain_study.apply_async((study_id, outcome.claim), countdown=outcome.again_in)
    if outcome.version is not None:
        triggers.refill_request(study_id=study_id)
        webhooks.model_published(study_id=study_id, version=outcome.version)
        # The new model's contradicted answers go to review (when the study asks), and
        # the data browser's per-prompt figures follow the new model. Neither may stop
        # the follow-ups below: the version is published whatever they do.
        for follow_up in (
            lambda: review.reviews_collect(study_id=study_id),
            lambda: browse.prompt_model_summary_write(study_id=study_id, version=outcome.version),
        ):
            try:
                follow_up()
            except Exception:
                logger.exception("after publishing v%s of study %s", outcome.version.version, study_id)
        # New responses where the new model cannot tell the best (when the study asks).
        job = generation.regeneration_round_start(study_id=study_id)
        if job is not None:
            annotation_tasks.generation_job_run.delay(job.pk)
        # A prompt-optimisation study's rewriter rewrites the new best instruction (when the study asks).
        if prompt_opt.rewrite_due(study_id=study_id):
            annotation_tasks.prompt_rewrite_run.delay(study_id)
    return outcome.version.version if outcome.version else None


@shared_task(name="activelearn.tasks.refill_queue", acks_late=True)
def refill_queue(study_id: int, claim: str | None = None) -> int:
    """Top up the study's comparison queue with the strategy's choices, under
    the claim its request took; when it queued some and the study has active AI
    judges, they are asked about them next (the ``generate`` queue)."""
    try:
        queued = refill.queue_refill_claimed(study_id=study_id, claim=claim)
    except Study.DoesNotExist:
        logger.info("refill skipped: study %s no longer exists", study_id)
        return 0
    if (
        queued
        and judging.study_has_active_judges(study_id=study_id)
        and cache.add(f"prefloop:judges-run:{study_id}", 1, timeout=JUDGES_RUN_EVERY_S)
    ):
        # The study's AI judges look at the new comparisons (and may settle some). At most
        # one run is asked for per study this often: a run takes every queued comparison
        # it has not answered, so refills under a crowd do not pile runs up behind a long
        # generation on the generate queue.
        annotation_tasks.judges_run.delay(study_id)
    return queued


@shared_task(name="activelearn.tasks.embed_study", acks_late=True)
def embed_study(study_id: int, claim: str | None = None) -> int:
    """Embed the study's candidates that are not cached yet (queue ``embed``),
    under the claim its request took; a study deleted meanwhile has nothing
    left to embed. When the live model was fitted on other features (the
    encoder or the study's ``features`` choice changed), the finished embedding
    starts its refit: until then the loop cannot use it."""
    embedded = embedding.study_embed(study_id=study_id, claim=claim).embedded
    if services.live_model_stale(study_id=study_id):
        triggers.retrain_request(study_id=study_id)
    return embedded


@shared_task(name="activelearn.tasks.loop_sweep")
def loop_sweep() -> dict[str, list[int]]:
    """Every PREFLOOP_SWEEP_SECONDS (Celery beat): re-request the work of any
    study whose claim expired with its worker (``services.loop_sweep``)."""
    report = services.loop_sweep()
    return {"retrain": report.retrain, "refill": report.refill, "embed": report.embed}
