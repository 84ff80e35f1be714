"""Celery tasks of the annotation app: thin wrappers that take ids and call services."""

from __future__ import annotations

from celery import shared_task

from annotation.imports import jobs
from annotation.services import generation, judging


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
