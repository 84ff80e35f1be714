"""Celery tasks of the annotation app: thin wrappers that take ids and call services."""

from __future__ import annotations

from celery import shared_task

from annotation.imports import jobs
from annotation.services import generation, judging, prompt_opt, review, webhooks


@shared_task(name="annotation.tasks.import_job_run", acks_late=True)
def import_job_run(job_id: int) -> str | None:
    """Run a queued file import; a job already claimed or finished is left alone."""
    job = jobs.import_job_run(job_id=job_id)
    return job.status if job else None


@shared_task(name="annotation.tasks.generation_job_run", acks_late=True)
def generation_job_run(job_id: int) -> str | None:
    """Run a queued generation job (the ``generate`` queue); a job already claimed or finished is left alone."""
    job = generation.generation_job_run(job_id=job_id)
    return job.status if job else None


@shared_task(name="annotation.tasks.judges_run", acks_late=True)
def judges_run(study_id: int) -> dict[str, int]:
    """Ask the study's active AI judges about its queued comparisons and settle
    what they may (the ``generate`` queue: the judges' sources are generators)."""
    outcome = judging.judges_run(study_id=study_id)
    return {"judged": outcome.judged, "failed": outcome.failed, "settled": outcome.settled}


@shared_task(name="annotation.tasks.prompt_outputs_run", acks_late=True)
def prompt_outputs_run(study_id: int) -> dict[str, int]:
    """Generate a prompt-optimisation study's missing responses (instruction × task input)."""
    outcome = prompt_opt.outputs_run(study_id=study_id)
    return {"stored": outcome.stored, "failed": outcome.failed, "ready": outcome.ready}


@shared_task(name="annotation.tasks.prompt_rewrite_run", acks_late=True)
def prompt_rewrite_run(study_id: int) -> dict[str, int]:
    """A rewriting round of a prompt-optimisation study (after a new model), then the new instructions' responses."""
    added = prompt_opt.rewrite_round_run(study_id=study_id)
    outcome = prompt_opt.outputs_run(study_id=study_id) if added else None
    return {"added": added, "ready": outcome.ready if outcome else 0}


@shared_task(name="annotation.tasks.webhook_deliver", acks_late=True)
def webhook_deliver(delivery_id: int) -> str:
    """Send one webhook delivery; a failed attempt comes back after its backoff."""
    wait = webhooks.delivery_attempt(delivery_id=delivery_id)
    if wait is not None:
        webhook_deliver.apply_async((delivery_id,), countdown=wait)
        return f"retry in {wait:.0f} s"
    return "settled"


@shared_task(name="annotation.tasks.webhooks_sweep")
def webhooks_sweep() -> int:
    """Every PREFLOOP_WEBHOOK_SECONDS (Celery beat): report new judgments and a reached budget to webhooks."""
    return webhooks.webhooks_sweep()


@shared_task(name="annotation.tasks.reviews_sweep")
def reviews_sweep() -> int:
    """Every PREFLOOP_REVIEW_SECONDS (Celery beat): put what the studies' review rules pick in their review queues."""
    return review.reviews_sweep()
