"""Embedding a study's candidates in the background, batch by batch, with progress.

Embedding is the slow part of the loop on a CPU (a few to a few dozen texts a
second with MiniLM), so it runs in its own task on its own Celery queue
(``embed``), started when candidates are added (``annotation.loop`` →
``activelearn.triggers.embed_request``), never inside an import, a refill or a
retrain. Each batch is written to the shared embedding cache as soon as it is
computed, so a crash loses at most one batch and a rerun continues where the
last one stopped; progress goes to ``annotation.models.EmbeddingProgress``
for the study and import pages.

Like retrains, the work is debounced per study: one task at a time, and
candidates added meanwhile set ``pending`` so the running task goes round
once more instead of a second task starting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from activelearn import claims, features
from annotation.models import EmbeddingProgress, Study

logger = logging.getLogger(__name__)

ERROR_MAX_CHARS = 2000


EMBED = claims.ClaimSlot(EmbeddingProgress, key="study_id", at="claimed_at", owner="owner")


def embedding_claim(*, study_id: int) -> str | None:
    """Note that the study has new candidates and claim its embedding unless a
    task runs; the claim's token when this call took it (the caller enqueues
    the task with it), None when a live claim holds it.

    A claim whose worker died has expired and is taken over (``activelearn.claims``).
    """
    EmbeddingProgress.objects.get_or_create(study_id=study_id)
    EmbeddingProgress.objects.filter(study_id=study_id).update(pending=True)
    return EMBED.request(study_id, queued_at=timezone.now(), status=EmbeddingProgress.Status.QUEUED, error="")


@dataclass(frozen=True)
class EmbedOutcome:
    """What a run did: candidates it embedded, and the study's total."""

    embedded: int
    total: int


def study_embed(*, study_id: int, batch_size: int | None = None, claim: str | None = None) -> EmbedOutcome:
    """Embed every candidate of the study whose embedding is not cached yet.

    Called by the ``embed_study`` task. Texts go to the encoder
    ``batch_size`` (PREFLOOP_EMBED_BATCH_SIZE) at a time and each batch is
    cached before the next starts, with ``done`` and the claim's heartbeat
    updated, so the pages show progress and a rerun after a crash embeds
    only what is still missing. Runs again while candidates arrived during
    the run; a failure is recorded (status ``failed``, the error) and the
    claim released, so the next request starts afresh. A task whose claim
    was taken over while it waited in the queue does nothing.
    """
    batch_size = batch_size or settings.PREFLOOP_EMBED_BATCH_SIZE
    if Study.objects.filter(id=study_id).exists():
        EmbeddingProgress.objects.get_or_create(study_id=study_id)
    token = EMBED.start(study_id, claim, started_at=timezone.now(), finished_at=None)
    if token is None:
        logger.info("embedding of study %s skipped: another task holds its claim", study_id)
        return EmbedOutcome(embedded=0, total=0)
    with claims.heartbeat(EMBED, study_id, token):
        return _study_embed(study_id=study_id, batch_size=batch_size, token=token)


def _study_embed(*, study_id: int, batch_size: int, token: str) -> EmbedOutcome:
    progress = EmbeddingProgress.objects.filter(study_id=study_id)
    embedded = total = 0
    try:
        while True:
            # Each round (another one when candidates arrived meanwhile) re-reads what is missing.
            if not EMBED.beat(study_id, token, pending=False, status=EmbeddingProgress.Status.RUNNING, error=""):
                logger.warning("embedding of study %s lost its claim; stopping", study_id)
                return EmbedOutcome(embedded=embedded, total=total)
            embedder = features.embedder_get()
            inputs = features.study_embedding_inputs(study_id=study_id)
            keys = [embedder.key_for(item.text) for item in inputs]
            present = features.cached_keys(embedder, keys)
            # Distinct missing texts, with how many candidates each one serves.
            todo: dict[str, str] = {}
            serves: dict[str, int] = {}
            for key, item in zip(keys, inputs, strict=True):
                if key not in present:
                    todo.setdefault(key, item.text)
                    serves[key] = serves.get(key, 0) + 1
            total = len(inputs)
            done = total - sum(serves.values())
            progress.update(total=total, done=done, embedder_key=embedder.model_key)
            pending_keys = list(todo)
            for start in range(0, len(pending_keys), batch_size):
                batch = pending_keys[start : start + batch_size]
                # CachedEmbedder.embed stores the batch in the cache before returning.
                embedder.embed([todo[key] for key in batch])
                embedded += len(batch)
                done += sum(serves[key] for key in batch)
                EMBED.beat(study_id, token, done=done)
            released = EMBED.release(
                study_id,
                token,
                unless=Q(pending=True),
                status=EmbeddingProgress.Status.DONE,
                finished_at=timezone.now(),
            )
            if released or not progress.exists():
                return EmbedOutcome(embedded=embedded, total=total)
    except Exception as exc:
        EMBED.release(
            study_id,
            token,
            status=EmbeddingProgress.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS],
            finished_at=timezone.now(),
        )
        raise
