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
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from activelearn import claims, features, reliability
from annotation import checkpoints
from annotation.models import (
    EVALUATION_MIN_JUDGMENTS,
    EmbeddingProgress,
    Judgment,
    JudgmentChange,
    RewardModelVersion,
    Study,
    comparison_items_of,
)
from annotation.services import judgments_split_assign
from models_runtime import kinds
from models_runtime.evaluation import HeldoutScore, answer_probabilities, evaluation_draw, score_heldout
from models_runtime.preferences import PreferenceData
from models_runtime.recommend import recommend

logger = logging.getLogger(__name__)

# Fewer judgments than this give no model worth steering by.
MIN_JUDGMENTS_TO_TRAIN = 3
RECOMMENDATION_TOP = 10
RECOMMENDATION_SAMPLES = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- claims ------------------------------------------------------------------------

RETRAIN = claims.ClaimSlot(Study, key="id", at="retrain_claimed_at", owner="retrain_owner")
REFILL = claims.ClaimSlot(Study, key="id", at="refill_claimed_at", owner="refill_owner")


def retrain_claim(*, study_id: int) -> str | None:
    """Mark the study's model out of date and claim its retrain unless one runs.

    Returns the claim's token when this call took it (the caller then enqueues
    the retrain with it), None when a live claim holds it: that task fits once
    more for this judgment. A claim whose worker died has expired and is taken
    over (``activelearn.claims``).
    """
    # Under a crowd the study is nearly always dirty and claimed already: then
    # neither statement writes (no new row version, no wait on the row for the
    # other answers' writes). Not skipping the flag on a stale read is what
    # keeps it safe: a fit clears it before it reads the judgments.
    Study.objects.filter(id=study_id, retrain_dirty=False).update(retrain_dirty=True)
    return RETRAIN.request(study_id)


def refill_claim(*, study_id: int) -> str | None:
    """Claim the study's queue refill unless one is in flight; the token when taken."""
    return REFILL.request(study_id)


@dataclass(frozen=True)
class SweepReport:
    """What one sweep re-requested: study ids per kind of work."""

    retrain: list[int]
    refill: list[int]
    embed: list[int]


def loop_sweep() -> SweepReport:
    """Find studies whose loop stopped and request their work again.

    Run every ``PREFLOOP_SWEEP_SECONDS`` by Celery beat. A worker killed
    mid-retrain (or a dropped database connection, or a message the broker
    lost) leaves a claim that no heartbeat refreshes; once it has expired the
    study is re-requested here, so the model learns again within about a lease
    and a sweep, whether or not more judgments arrive. A retrain marked dirty
    with no claim (its request could not be enqueued) is requested too. Three
    queries when nothing is behind.
    """
    from activelearn import embedding, triggers  # noqa: PLC0415 - triggers imports this module

    now = timezone.now()
    active = Study.objects.filter(status=Study.Status.ACTIVE)
    retrain = list(
        active.filter(RETRAIN.expired(now) | Q(retrain_dirty=True, retrain_claimed_at__isnull=True)).values_list(
            "id", flat=True
        )
    )
    refill = list(active.filter(REFILL.expired(now)).values_list("id", flat=True))
    embed = list(
        EmbeddingProgress.objects.filter(embedding.EMBED.expired(now), study__status=Study.Status.ACTIVE).values_list(
            "study_id", flat=True
        )
    )
    for study_id in retrain:
        logger.warning("sweep: study %s's retrain stopped (claim expired or never enqueued); requesting it", study_id)
        triggers.retrain_request(study_id=study_id)
    for study_id in refill:
        logger.warning("sweep: study %s's refill claim expired; requesting it", study_id)
        triggers.refill_request(study_id=study_id)
    for study_id in embed:
        logger.warning("sweep: study %s's embedding claim expired; requesting it", study_id)
        triggers.embed_request(study_id=study_id)
    return SweepReport(retrain=retrain, refill=refill, embed=embed)


# --- retraining ---------------------------------------------------------------------

# The pacing clocks, wall and this process's CPU (seams for tests: no test may depend
# on how fast the machine is).
_clock = time.monotonic
_cpu_clock = time.process_time


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retrain did: the newest version it published (None if none), and
    when to come back (seconds, with ``claim``, the token it keeps the claim
    under) for judgments that arrived during the fit, or None when the claim
    was released (or another task held it)."""

    version: RewardModelVersion | None
    again_in: float | None = None
    claim: str | None = None


def reward_model_retrain(*, study_id: int, claim: str | None = None) -> RetrainOutcome:
    """Refit until no judgment arrived during the fit, then release the claim.

    Called by the ``retrain_study`` task with the token of the claim its
    request took; a task whose claim was taken over meanwhile (it waited in the
    queue past the claim's expiry) does nothing. Judgments that commit while a
    fit runs set ``retrain_dirty``; the loop then fits once more, so the newest
    model always includes them, and at most one fit per study runs at a time.
    A heartbeat keeps the claim alive while this runs, and only while the
    worker lives (``activelearn.claims``).
    Fits of one study start at most every ``PREFLOOP_RETRAIN_MIN_SECONDS``, and
    no sooner than ``cpu / PREFLOOP_RETRAIN_CPU_SHARE`` after the last one
    started, ``cpu`` being the CPU seconds it used (:func:`retrain_gap`): judgments
    arriving faster are folded into one fit (a model one judgment newer is
    barely different, and every fit takes CPU and database time from the
    annotators' requests). The wait is not slept here: the claim is kept
    (its lease runs from the end of the wait) and the outcome says when to come
    back, so the worker is free meanwhile to refill the queue with the version
    just published.
    """
    token = RETRAIN.start(study_id, claim)
    if token is None:
        if not Study.objects.filter(id=study_id).exists():
            raise Study.DoesNotExist(f"study {study_id} no longer exists")
        logger.info("retrain of study %s skipped: another task holds its claim", study_id)
        return RetrainOutcome(None)
    latest: RewardModelVersion | None = None
    try:
        with claims.heartbeat(RETRAIN, study_id, token):
            while True:
                started, started_cpu = _clock(), _cpu_clock()
                if not RETRAIN.beat(study_id, token, retrain_dirty=False):
                    logger.warning("retrain of study %s lost its claim; stopping", study_id)
                    return RetrainOutcome(latest)
                version = reward_model_fit(study_id=study_id)
                latest = version or latest
                if RETRAIN.release(study_id, token, unless=Q(retrain_dirty=True)):
                    return RetrainOutcome(latest)
                wait = started + retrain_gap(_cpu_clock() - started_cpu) - _clock()
                if wait > 0:
                    RETRAIN.beat(study_id, token, at=timezone.now() + timedelta(seconds=wait))
                    return RetrainOutcome(latest, again_in=wait, claim=token)
    except Exception as exc:
        RETRAIN.release(
            study_id,
            token,
            last_fit_at=timezone.now(),
            last_fit_status=Study.FitStatus.FAILED,
            last_fit_note=f"The last fit failed ({type(exc).__name__}: {exc}); the live version, if any, stays.",
        )
        raise


def retrain_gap(cpu_seconds: float) -> float:
    """Seconds from the start of a fit that used ``cpu_seconds`` of CPU (every
    thread of the worker process) to the earliest start of the study's next
    one, while judgments keep arriving:
    ``max(PREFLOOP_RETRAIN_MIN_SECONDS, cpu_seconds / PREFLOOP_RETRAIN_CPU_SHARE)``.
    A study's fits then take at most that share of a core under a crowd,
    whatever they cost (a large study's fits cost more, so they come less
    often), and the rest is left to refills and, on a shared host, to the web;
    cheap fits still come every ``PREFLOOP_RETRAIN_MIN_SECONDS``. CPU time, not
    wall time: a fit slowed by a busy web tier has not cost more."""
    share = settings.PREFLOOP_RETRAIN_CPU_SHARE
    paced = max(cpu_seconds, 0.0) / share if share > 0 else 0.0
    return max(settings.PREFLOOP_RETRAIN_MIN_SECONDS, paced)


def reward_model_config(*, study: Study) -> Any:
    """The models_runtime configuration for the study's model type and options."""
    params = dict(study.model_params or {})
    problems = kinds.param_problems(params)
    if problems:
        raise ValueError("; ".join(problems))
    return kinds.get(study.model_type).config(params, settings.PREFLOOP_DEVICE)


class CheckpointPruned(ValueError):
    """A version whose checkpoint was deleted from disk by pruning was asked to load."""


def reward_model_load(version: RewardModelVersion) -> Any:
    """Load a published version's checkpoint, whatever its kind. ``CheckpointPruned``
    (a ``ValueError``) when pruning deleted it: nothing in the loop needs an old
    version (warm starts and refills use the live one, which is never pruned)."""
    if version.pruned_at is not None:
        raise CheckpointPruned(
            f"v{version.version}'s checkpoint was pruned on {version.pruned_at:%Y-%m-%d %H:%M} UTC: a study keeps "
            f"the live version, the best by held-out log-loss and the {settings.PREFLOOP_CHECKPOINTS_KEEP} newest"
        )
    return kinds.get(version.model_type).load(checkpoints.local_folder(version.checkpoint_path))


def reward_model_latest(*, study_id: int) -> RewardModelVersion | None:
    """The study's live (newest) model version, or None before the first."""
    return RewardModelVersion.objects.filter(study_id=study_id).order_by("-version").first()


def live_model_stale(*, study_id: int) -> bool:
    """Whether the study's live version was fitted on features other than the
    study's now (another encoder or ``features`` choice); False without one."""
    live = reward_model_latest(study_id=study_id)
    study = Study.objects.filter(id=study_id).first()
    return live is not None and study is not None and _fitted_on_other_features(live=live, study=study)


def _fitted_on_other_features(*, live: RewardModelVersion, study: Study) -> bool:
    return live.embedder_key != features.study_features_key(study=study)


def retrain_due_after(n_train: int) -> int:
    """How many training judgments the next fit waits for after one on ``n_train``:
    ``n_train + max(PREFLOOP_RETRAIN_MIN_NEW, ceil(PREFLOOP_RETRAIN_GROWTH × n_train))``.
    Early models improve fastest per judgment, so they come every few judgments;
    later each fit waits for a share more data, which keeps the number of versions
    logarithmic in the study's size."""
    grow = math.ceil(settings.PREFLOOP_RETRAIN_GROWTH * n_train - 1e-9)
    return n_train + max(settings.PREFLOOP_RETRAIN_MIN_NEW, grow, 1)


def _fit_due(*, study: Study, live: RewardModelVersion | None, n_train: int) -> bool:
    """Whether the study has grown enough since its last fit attempt (published or
    not) to try again; a study without a model fits at ``MIN_JUDGMENTS_TO_TRAIN``,
    and one whose live model predates the fixed evaluation set, is of another kind
    than the study now asks for, or was fitted on other features (another encoder
    or ``features`` choice), at once."""
    if n_train < MIN_JUDGMENTS_TO_TRAIN:
        return False
    if live is None and not study.last_fit_at:
        return True
    stale = live is not None and (
        not live.fixed_evaluation
        or live.model_type != study.model_type
        or _fitted_on_other_features(live=live, study=study)
    )
    if stale and study.last_fit_status != Study.FitStatus.NOT_IMPROVED:
        return True
    last = max(study.last_fit_train, live.n_train if live is not None else 0)
    if n_train >= retrain_due_after(last):
        return True
    # A reviewer changed labels since the last attempt: the model learns the adjudicated ones now.
    return JudgmentChange.objects.filter(study_id=study.id, created_at__gt=study.last_fit_at or _EPOCH).exists()


def _last_fit_record(*, study_id: int, status: str, note: str, n_train: int) -> None:
    Study.objects.filter(id=study_id).update(
        last_fit_at=timezone.now(), last_fit_status=status, last_fit_note=note, last_fit_train=n_train
    )


def reward_model_fit(*, study_id: int) -> RewardModelVersion | None:
    """Fit the study's reward model on its training judgments and publish it if the
    fit improved on its starting point; score it on the evaluation judgments.

    Returns None when no fit was due (too few training judgments, or too few new
    ones since the last attempt: see :func:`retrain_due_after`) or when the fit was
    not published. Evaluation judgments never reach a fit: the kind's own
    validation split for early stopping is drawn from the training judgments, and
    warm starts come only from versions fitted that way. A fit whose early stopping
    kept epoch 0 (its starting point: the initial weights, or the live version's
    when warm-started) learnt nothing that its validation split, or without one its
    training objective, could see; it is not published, the live version stays,
    and the study's last-fit note says why. The checkpoint is written under a
    temporary name and renamed into place before the version row is created, so
    readers never see a version without its weights; then old checkpoints are
    pruned (:func:`checkpoints_prune`).
    """
    study = Study.objects.get(id=study_id)
    config = reward_model_config(study=study)
    judgments_split_assign(study_id=study_id)
    n_train = (
        Judgment.objects.filter(study_id=study_id, evaluation=False)
        .exclude(review_state=Judgment.ReviewState.EXCLUDED)
        .count()
    )
    previous = reward_model_latest(study_id=study_id)
    if not _fit_due(study=study, live=previous, n_train=n_train):
        return None
    # Judged candidates are embedded here if missing (a few); the rest come from
    # the cache the embed queue fills, so a fit never waits on a large import.
    feats = features.study_features(study_id=study_id, embed=features.Embed.JUDGED)
    # Each judgment weighs what its annotator's measured reliability says (people
    # against people and gold, AI judges against people: activelearn.reliability).
    judged, rel = reliability.training_preferences(study_id=study_id, index=feats.index())
    data = judged.data
    if len(data) < MIN_JUDGMENTS_TO_TRAIN:
        return None
    holdout = _validation_rows(study_id=study_id, judgment_ids=judged.judgment_ids, config=config)

    init_state = None
    # A version fitted without a validation split trained on every training
    # judgment, the validation ones included: a fit that validates starts cold
    # from such a version rather than be judged against weights that saw its
    # validation judgments (this happens once, when a study grows out of the
    # small-data regime).
    validates = _split_validates(holdout, n=len(data), config=config)
    warm = (
        previous is not None
        and previous.fixed_evaluation
        and previous.model_type == study.model_type
        and previous.embedder_key == feats.embedder_key
        and (not validates or (previous.metrics or {}).get("monitored_heldout") == 1.0)
    )
    if warm:
        try:
            init_state = reward_model_load(previous).state_dict()
        except (OSError, ValueError) as exc:
            logger.warning("warm start skipped for study %s: %s", study_id, exc)
    kind = kinds.get(study.model_type)
    result = kind.fit(feats.features, data, config, init_state, holdout=holdout)
    # How many candidates' texts were cut to the encoder's length (the study page shows it).
    result.metrics["inputs"], result.metrics["inputs_truncated"] = float(feats.n_inputs), float(feats.truncated)
    if result.metrics.get("best_epoch", 1.0) <= 0:
        note = _not_improved_note(metrics=result.metrics, n_train=n_train, live=previous, warm=init_state is not None)
        _last_fit_record(study_id=study_id, status=Study.FitStatus.NOT_IMPROVED, note=note, n_train=n_train)
        return None
    heldout = _heldout_score(study=study, config=config, model=result.model, feats=feats, train=data)
    recommendation = _recommendation(study=study, model=result.model, feats=feats, data=data)
    metrics = _version_metrics(result.metrics, heldout)
    metrics["reliability"] = rel.as_dict()
    if "model" in (study.review_rules or []):
        metrics["review_contradictions"] = _contradictions(
            study=study, config=config, model=result.model, feats=feats, judged=judged, judges=rel.judges
        )
    shown = heldout.n >= EVALUATION_MIN_JUDGMENTS

    # Written (or uploaded) before the lock, so answers that touch the study row
    # never wait on the disk or the object store.
    staged = checkpoints.stage(study_id=study_id, save=result.model.save)
    try:
        version = _version_publish(
            study=study, staged=staged, feats=feats, result=result, heldout=heldout, shown=shown,
            n_train=n_train, metrics=metrics, recommendation=recommendation,
        )  # fmt: skip
    except BaseException:
        checkpoints.discard(staged)
        raise
    checkpoints_prune(study_id=study_id)
    return version


def _version_publish(
    *,
    study: Study,
    staged: checkpoints.Staged,
    feats: features.StudyFeatures,
    result: Any,
    heldout: HeldoutScore,
    shown: bool,
    n_train: int,
    metrics: dict,
    recommendation: dict,
) -> RewardModelVersion:
    """Number the staged checkpoint and write its version row, under the study's lock."""
    study_id = study.id
    with transaction.atomic():
        locked = Study.objects.select_for_update(no_key=True).get(id=study_id)
        newest = reward_model_latest(study_id=study_id)
        number = (newest.version if newest else 0) + 1
        path = checkpoints.publish(staged, study_id=locked.id, version=number)
        version = RewardModelVersion.objects.create(
            study=locked,
            version=number,
            model_type=study.model_type,
            embedder_key=feats.embedder_key,
            n_judgments=Judgment.objects.filter(study_id=study_id).count(),
            n_train=n_train,
            n_heldout=heldout.n,
            heldout_accuracy=_finite_or_none(heldout.accuracy) if shown else None,
            heldout_accuracy_low=_finite_or_none(heldout.accuracy_low) if shown else None,
            heldout_accuracy_high=_finite_or_none(heldout.accuracy_high) if shown else None,
            heldout_log_loss=_finite_or_none(heldout.log_loss) if shown else None,
            heldout_log_loss_low=_finite_or_none(heldout.log_loss_low) if shown else None,
            heldout_log_loss_high=_finite_or_none(heldout.log_loss_high) if shown else None,
            fixed_evaluation=True,
            metrics=metrics,
            train_seconds=float(result.metrics.get("train_seconds", 0.0)),
            device=result.device,
            checkpoint_path=str(path),
            recommendation=recommendation,
        )
        _last_fit_record(
            study_id=study_id,
            status=Study.FitStatus.PUBLISHED,
            note=f"v{number} published: fitted on {n_train} training judgments in "
            f"{version.train_seconds:.1f} s; the next fit comes at {retrain_due_after(n_train)} training judgments.",
            n_train=n_train,
        )
    return version


def _validation_rows(*, study_id: int, judgment_ids: np.ndarray, config: Any) -> np.ndarray:
    """The rows of the training data the fit validates on (early stopping, and the
    publishing rule): the judgments whose pair draws under the config's
    ``holdout_fraction`` (default 0.2), by the same stable hash as the evaluation
    set but a different key. The split stays the same from fit to fit, so the
    live version a fit warm-starts from never trained on the judgments that
    decide whether the fit beat it."""
    fraction = float(getattr(config, "holdout_fraction", 0.2))
    training = Judgment.objects.filter(study_id=study_id, evaluation=False)
    keys = dict(training.values_list("id", "comparison__item_key"))
    # The candidates part of the key: answers on one pair on different task inputs stay on one side.
    held = [
        evaluation_draw(f"validation\x1f{study_id}\x1f{comparison_items_of(str(keys.get(int(j), j)))}") < fraction
        for j in judgment_ids
    ]
    return np.flatnonzero(np.array(held, dtype=bool))


# Most contradicted answers a version keeps for the review queue (the least likely first).
REVIEW_CONTRADICTIONS_KEPT = 2000


def _contradictions(
    *, study: Study, config: Any, model: Any, feats: features.StudyFeatures, judged: Any, judges: frozenset[int]
) -> list[list]:
    """The training answers of people that the fitted model finds unlikely:
    ``[judgment id, probability]`` for each whose stated ordering the model gives
    at most ``1 − study.review_confidence``, least likely first (the review
    queue's "contradicts the model" rule reads them). The model trained on these
    answers, so one it still contradicts goes against the rest of the data.
    Evaluation judgments are never looked at: the model must not choose which
    of the labels that score it a reviewer reconsiders."""
    data, owners = _people_rows(judged, judges)
    if len(data) == 0:
        return []
    ids, least = answer_probabilities(
        _model_scores(study=study, model=model, feats=feats, train=judged.data),
        data,
        owners,
        likelihood=getattr(config, "likelihood", None),
        flip_rate=getattr(model, "flip_rate", None),
        tie_rate=judged.data.tie_rate(),
    )
    doubted = np.flatnonzero(least <= 1.0 - float(study.review_confidence))
    doubted = doubted[np.argsort(least[doubted], kind="stable")][:REVIEW_CONTRADICTIONS_KEPT]
    return [[int(ids[i]), round(float(least[i]), 4)] for i in doubted]


def _split_validates(holdout: np.ndarray, *, n: int, config: Any) -> bool:
    """Whether the fit will hold ``holdout`` out (the training core's rule: at least
    ``min_holdout`` judgments, and no more than it trains on)."""
    return int(getattr(config, "min_holdout", 5)) <= holdout.size <= n - holdout.size


def _not_improved_note(*, metrics: dict, n_train: int, live: RewardModelVersion | None, warm: bool) -> str:
    """Why a fit was not published, in the study page's words."""
    start, reached = metrics.get("start_loss", math.nan), metrics.get("best_trained_loss", math.nan)
    monitored = "validation log-loss" if metrics.get("monitored_heldout") else "training objective"
    origin = f"v{live.version}'s weights" if warm and live is not None else "its untrained initial weights"
    outcome = f"v{live.version} stays live" if live is not None else "no model yet"
    return (
        f"A fit on {n_train} training judgments did not improve on its starting point, {origin} "
        f"({monitored} {start:.3f} → {reached:.3f} at best); {outcome}."
    )


def _people_rows(judged: Any, judges: frozenset[int]) -> tuple[PreferenceData, np.ndarray]:
    """``judged``'s rows given by people (not AI judges), and the judgment each came from."""
    if not judges:
        return judged.data, judged.judgment_ids
    people = np.flatnonzero(~np.isin(judged.annotator_ids, list(judges)))
    return judged.data.select(people), judged.judgment_ids[people]


def _model_scores(*, study: Study, model: Any, feats: features.StudyFeatures, train: PreferenceData) -> np.ndarray:
    """A fitted model's utilities of every candidate: an ensemble's per member
    (its probabilities are then averaged), any other kind's one row."""
    kind = kinds.get(study.model_type)
    needs = "member_scores" if "member_scores" in kind.provides else None
    outputs = kind.outputs(model, feats.features, needs, lambda: train)
    return outputs.get("member_scores", outputs["scores"])


def _heldout_score(*, study: Study, config: Any, model: Any, feats: features.StudyFeatures, train: PreferenceData):
    """The model's figures on the study's evaluation judgments (which it never saw):
    an ensemble by its members' averaged probabilities, any other kind by its
    scores; probabilities as the fit's likelihood gives them, with the tie
    parameter the training judgments set and the model's label-flip rate."""
    judged = features.study_judged_preferences(study_id=study.id, index=feats.index(), evaluation=True)
    # Scored against people only: an AI judge's answer is not the truth a
    # researcher's held-out figure claims to measure.
    judges = reliability.judge_user_ids(study_id=study.id)
    data, owners = _people_rows(judged, judges)
    scores = _model_scores(study=study, model=model, feats=feats, train=train)
    n_evaluation = Judgment.objects.filter(study_id=study.id, evaluation=True).exclude(annotator_id__in=judges).count()
    return score_heldout(
        scores,
        data,
        owners,
        likelihood=getattr(config, "likelihood", None),
        flip_rate=getattr(model, "flip_rate", None),
        tie_rate=train.tie_rate(),
        n_unscored_extra=n_evaluation - len(np.unique(owners)),
    )


def _version_metrics(fit: dict, heldout: HeldoutScore) -> dict:
    """A version's ``metrics``: the fit's own figures, its internal validation split
    renamed ``validation_*`` (a split of the training judgments, for early
    stopping), the evaluation figures under ``heldout_*`` (``heldout_ece`` only
    once they are shown) and ``evaluation`` with all of them and the counts."""
    renamed = {"n_heldout": "n_validation", "n_train": "n_fit_train"}
    metrics = {}
    for key, value in fit.items():
        name = renamed.get(key) or (f"validation_{key.removeprefix('heldout_')}" if key.startswith("heldout_") else key)
        metrics[name] = _finite_or_none(value)
    shown = heldout.n >= EVALUATION_MIN_JUDGMENTS
    metrics["heldout_ece"] = _finite_or_none(heldout.ece) if shown else None
    metrics["evaluation"] = {
        **{k: _finite_or_none(v) for k, v in heldout.as_dict().items()},
        "min_judgments": EVALUATION_MIN_JUDGMENTS,
    }
    return metrics


def checkpoints_prune(*, study_id: int) -> list[int]:
    """Delete the checkpoint folders of the study's versions that are not worth
    keeping: all but the live (newest) one, the one with the lowest held-out
    log-loss and the ``PREFLOOP_CHECKPOINTS_KEEP`` newest. Their rows stay, marked
    ``pruned_at`` (their figures are history; loading them raises
    :class:`CheckpointPruned`). Rows are marked before folders go, so no reader
    starts on a folder being deleted. Returns the pruned version numbers."""
    rows = RewardModelVersion.objects.filter(study_id=study_id, pruned_at__isnull=True)
    newest = list(rows.order_by("-version").values_list("id", flat=True)[: max(1, settings.PREFLOOP_CHECKPOINTS_KEEP)])
    best = rows.filter(heldout_log_loss__isnull=False).order_by("heldout_log_loss", "-version").values_list("id")[:1]
    doomed = list(rows.exclude(id__in=newest).exclude(id__in=best).values_list("id", "version", "checkpoint_path"))
    if not doomed:
        return []
    RewardModelVersion.objects.filter(id__in=[d[0] for d in doomed]).update(pruned_at=timezone.now())
    for _, version, reference in doomed:
        # The path is data: never delete outside the checkpoint folder (or storage).
        try:
            deleted = checkpoints.delete(reference)
        except checkpoints.CheckpointMissing as exc:
            deleted, reason = False, str(exc)
        else:
            reason = "outside the checkpoint folder"
        if not deleted:
            logger.warning("study %s v%s: checkpoint %s not deleted: %s", study_id, version, reference, reason)
    return [version for _, version, _ in doomed]


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
