"""The loop's writes: claims on a study's background work, and the retrain.

Both kinds of background work are debounced per study through claim columns
on Study: one retrain and one refill in flight at a time, and judgments that
arrive during a retrain make it run once more at the end instead of piling up
tasks (``activelearn.triggers`` takes the claims and enqueues the tasks). A
failed fit never replaces the last good model: a version row is written only
after its checkpoint is safely on disk. Nothing here branches on the model's
kind: ``models_runtime.kinds`` says how each kind is configured, fitted, loaded
and sampled.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from activelearn import features
from annotation.models import Judgment, RewardModelVersion, Study
from models_runtime import kinds
from models_runtime.preferences import PreferenceData
from models_runtime.recommend import recommend

logger = logging.getLogger(__name__)

# Fewer judgments than this give no model worth steering by.
MIN_JUDGMENTS_TO_TRAIN = 3
RECOMMENDATION_TOP = 10
RECOMMENDATION_SAMPLES = 256


# --- claims ------------------------------------------------------------------------


def _stale_before() -> timezone.datetime:
    return timezone.now() - timedelta(seconds=settings.PREFLOOP_RETRAIN_STALE_SECONDS)


def retrain_claim(*, study_id: int) -> bool:
    """Mark the study's model out of date and claim its retrain unless one runs.

    Returns True when this call took the claim (the caller then enqueues the
    retrain). A claim older than PREFLOOP_RETRAIN_STALE_SECONDS belongs to a
    worker that died, and is taken over.
    """
    Study.objects.filter(id=study_id).update(retrain_dirty=True)
    claimed = (
        Study.objects.filter(id=study_id)
        .filter(Q(retrain_claimed_at__isnull=True) | Q(retrain_claimed_at__lt=_stale_before()))
        .update(retrain_claimed_at=timezone.now())
    )
    return bool(claimed)


def refill_claim(*, study_id: int) -> bool:
    """Claim the study's queue refill unless one is in flight; True when taken."""
    claimed = (
        Study.objects.filter(id=study_id)
        .filter(Q(refill_claimed_at__isnull=True) | Q(refill_claimed_at__lt=_stale_before()))
        .update(refill_claimed_at=timezone.now())
    )
    return bool(claimed)


# --- retraining ---------------------------------------------------------------------

# The pacing clock (a seam for tests: no test may depend on how fast the machine is).
_clock = time.monotonic


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retrain did: the newest version it published (None if none), and
    when to come back (seconds) for judgments that arrived during the fit,
    or None when the claim was released."""

    version: RewardModelVersion | None
    again_in: float | None = None


def reward_model_retrain(*, study_id: int) -> RetrainOutcome:
    """Refit until no judgment arrived during the fit, then release the claim.

    Called by the ``retrain_study`` task. Judgments that commit while a fit
    runs set ``retrain_dirty``; the loop then fits once more, so the newest
    model always includes them, and at most one fit per study runs at a time.
    Fits of one study start at most every ``PREFLOOP_RETRAIN_MIN_SECONDS``:
    judgments arriving faster are folded into one fit (a model one judgment
    newer is barely different, and every fit takes CPU and database time from
    the annotators' requests). The wait is not slept here: the claim is kept
    and the outcome says when to come back, so the worker is free meanwhile to
    refill the queue with the version just published.
    """
    latest: RewardModelVersion | None = None
    try:
        while True:
            started = _clock()
            Study.objects.filter(id=study_id).update(retrain_dirty=False, retrain_claimed_at=timezone.now())
            version = reward_model_fit(study_id=study_id)
            latest = version or latest
            released = Study.objects.filter(id=study_id, retrain_dirty=False).update(retrain_claimed_at=None)
            if released:
                return RetrainOutcome(latest)
            wait = started + settings.PREFLOOP_RETRAIN_MIN_SECONDS - _clock()
            if wait > 0:
                return RetrainOutcome(latest, again_in=wait)
    except Exception:
        Study.objects.filter(id=study_id).update(retrain_claimed_at=None)
        raise


def reward_model_config(*, study: Study) -> Any:
    """The models_runtime configuration for the study's model type and options."""
    params = dict(study.model_params or {})
    problems = kinds.param_problems(params)
    if problems:
        raise ValueError("; ".join(problems))
    return kinds.get(study.model_type).config(params, settings.PREFLOOP_DEVICE)


def reward_model_load(version: RewardModelVersion) -> Any:
    """Load a published version's checkpoint, whatever its kind."""
    return kinds.get(version.model_type).load(version.checkpoint_path)


def reward_model_latest(*, study_id: int) -> RewardModelVersion | None:
    """The study's live (newest) model version, or None before the first."""
    return RewardModelVersion.objects.filter(study_id=study_id).order_by("-version").first()


def reward_model_fit(*, study_id: int) -> RewardModelVersion | None:
    """Fit the study's reward model on all its judgments and publish it.

    Returns None when there are too few judgments. The fit warm-starts from
    the previous version. The checkpoint is written under a temporary name
    and renamed into place before the version row is created, so readers
    never see a version without its weights.
    """
    study = Study.objects.get(id=study_id)
    config = reward_model_config(study=study)
    n_judgments = Judgment.objects.filter(study_id=study_id).count()
    if n_judgments < MIN_JUDGMENTS_TO_TRAIN:
        return None
    feats = features.study_features(study_id=study_id)
    data = features.study_preferences(study_id=study_id, index=feats.index())
    if len(data) < MIN_JUDGMENTS_TO_TRAIN:
        return None

    previous = reward_model_latest(study_id=study_id)
    if previous is not None and previous.n_judgments == len(data) and previous.model_type == study.model_type:
        # Nothing new since the live version (the judgments that re-armed
        # this fit were already in it): refitting would publish a twin.
        return None
    init_state = None
    if previous is not None and previous.model_type == study.model_type and previous.embedder_key == feats.embedder_key:
        try:
            init_state = reward_model_load(previous).state_dict()
        except (OSError, ValueError) as exc:
            logger.warning("warm start skipped for study %s: %s", study_id, exc)
    kind = kinds.get(study.model_type)
    result = kind.fit(feats.features, data, config, init_state)
    recommendation = _recommendation(study=study, model=result.model, feats=feats, data=data)

    # Written before the lock, so answers that touch the study row never wait on the disk.
    staging = _checkpoint_stage(study_id=study_id, model=result.model)
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(id=study_id)
        newest = reward_model_latest(study_id=study_id)
        number = (newest.version if newest else 0) + 1
        path = _checkpoint_publish(staging, study_id=locked.id, version=number)
        metrics = {k: _finite_or_none(v) for k, v in result.metrics.items()}
        return RewardModelVersion.objects.create(
            study=locked,
            version=number,
            model_type=study.model_type,
            embedder_key=feats.embedder_key,
            n_judgments=len(data),
            n_train=int(result.metrics.get("n_train", 0)),
            n_heldout=int(result.metrics.get("n_heldout", 0)),
            heldout_accuracy=metrics.get("heldout_accuracy"),
            heldout_log_loss=metrics.get("heldout_log_loss"),
            metrics=metrics,
            train_seconds=float(result.metrics.get("train_seconds", 0.0)),
            device=result.device,
            checkpoint_path=str(path),
            recommendation=recommendation,
        )


def _recommendation(*, study: Study, model: Any, feats: features.StudyFeatures, data: PreferenceData) -> dict:
    """Best candidate, leaderboard and P(best) per prompt under the new model,
    from the kind's posterior samples (ensemble members, or a last-layer Laplace
    approximation for a single head; see models_runtime.recommend)."""
    rng = np.random.default_rng([study.id, len(data)])
    samples, method = kinds.get(study.model_type).posterior(model, feats.features, data, rng, RECOMMENDATION_SAMPLES)
    rec = recommend(feats.groups, samples, method)
    return {
        "method": rec.method,
        "n_samples": rec.n_samples,
        "prompts": {
            str(board.group): board.as_dict(ids=feats.candidate_ids, top=RECOMMENDATION_TOP) for board in rec.groups
        },
    }


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _checkpoint_stage(*, study_id: int, model: Any) -> Path:
    """Save ``model`` to a hidden staging folder beside the study's checkpoints."""
    folder = Path(settings.PREFLOOP_CHECKPOINT_DIR) / f"study-{study_id}"
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    model.save(staging)
    return staging


def _checkpoint_publish(staging: Path, *, study_id: int, version: int) -> Path:
    """Give a staged checkpoint its version's name (an atomic rename).

    The random suffix keeps a recreated database (ids start again) from
    colliding with checkpoints of an earlier one."""
    final = Path(settings.PREFLOOP_CHECKPOINT_DIR) / f"study-{study_id}" / f"v{version:05d}-{uuid.uuid4().hex[:8]}"
    os.replace(staging, final)
    return final
