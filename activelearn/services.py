"""The active-learning loop: retrain the reward model, refill the queue.

The judgment service calls :func:`loop_notify_judgment` after each commit.
Both kinds of background work are debounced per study through claim columns
on Study: one retrain and one refill in flight at a time, and judgments that
arrive during a retrain make it run once more at the end instead of piling
up tasks. A failed fit never replaces the last good model: a version row is
written only after its checkpoint is safely on disk.
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
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from activelearn.models import EmbeddingRecord, RewardModelVersion
from activelearn.params import validate_model_params
from activelearn.strategies import SelectionInput, StrategyName, get_strategy
from activelearn.strategies.base import MODEL_NEEDS, diversify
from activelearn.strategies.lists import select_lists
from annotation.models import Candidate, Comparison, ComparisonItem, Judgment, Study

if TYPE_CHECKING:
    from models_runtime.embedding import CachedEmbedder
    from models_runtime.reward import RewardModel

logger = logging.getLogger(__name__)

# Fewer judgments than this give no model worth steering by.
MIN_JUDGMENTS_TO_TRAIN = 3


# --- triggers ------------------------------------------------------------------


def loop_notify_judgment(*, study_id: int, queue_low_water: int | None = None) -> None:
    """Tell the loop a judgment committed: ask for a retrain, top up the queue.

    Callers holding the study pass its ``queue_low_water`` (saves a query on
    every answer)."""
    retrain_request(study_id=study_id)
    if queue_low_water is None:
        queue_low_water = Study.objects.values_list("queue_low_water", flat=True).get(id=study_id)
    if queue_waiting_count(study_id=study_id) < queue_low_water:
        refill_request(study_id=study_id)


def _stale_before() -> timezone.datetime:
    return timezone.now() - timedelta(seconds=settings.PREFLOOP_RETRAIN_STALE_SECONDS)


def retrain_request(*, study_id: int) -> bool:
    """Mark the study's model out of date and start a retrain unless one runs.

    Returns True when this call claimed the study and enqueued the task. A
    claim older than PREFLOOP_RETRAIN_STALE_SECONDS belongs to a worker that
    died, and is taken over.
    """
    from activelearn import tasks

    Study.objects.filter(id=study_id).update(retrain_dirty=True)
    claimed = (
        Study.objects.filter(id=study_id)
        .filter(Q(retrain_claimed_at__isnull=True) | Q(retrain_claimed_at__lt=_stale_before()))
        .update(retrain_claimed_at=timezone.now())
    )
    if claimed:
        transaction.on_commit(lambda: tasks.retrain_study.delay(study_id))
    return bool(claimed)


def refill_request(*, study_id: int) -> bool:
    """Enqueue a queue refill unless one is already in flight for the study."""
    from activelearn import tasks

    claimed = (
        Study.objects.filter(id=study_id)
        .filter(Q(refill_claimed_at__isnull=True) | Q(refill_claimed_at__lt=_stale_before()))
        .update(refill_claimed_at=timezone.now())
    )
    if claimed:
        transaction.on_commit(lambda: tasks.refill_queue.delay(study_id))
    return bool(claimed)


# --- retraining ---------------------------------------------------------------


def reward_model_retrain(*, study_id: int) -> RewardModelVersion | None:
    """Refit until no judgment arrived during the fit, then release the claim.

    Called by the ``retrain_study`` task. Judgments that commit while a fit
    runs set ``retrain_dirty``; the loop then fits once more, so the newest
    model always includes them, and at most one fit per study runs at a time.
    Fits of one study start at most every ``PREFLOOP_RETRAIN_MIN_SECONDS``:
    judgments arriving faster are folded into one fit (a model one judgment
    newer is barely different, and every fit takes CPU and database time from
    the annotators' requests). The wait is not slept here: the claim is kept
    and the task comes back later, so the worker is free meanwhile to refill
    the queue with the version just published.
    """
    from activelearn import tasks

    latest: RewardModelVersion | None = None
    try:
        while True:
            started = time.monotonic()
            Study.objects.filter(id=study_id).update(retrain_dirty=False, retrain_claimed_at=timezone.now())
            version = reward_model_fit(study_id=study_id)
            latest = version or latest
            released = Study.objects.filter(id=study_id, retrain_dirty=False).update(retrain_claimed_at=None)
            if released:
                break
            wait = started + settings.PREFLOOP_RETRAIN_MIN_SECONDS - time.monotonic()
            if wait > 0:
                tasks.retrain_study.apply_async((study_id,), countdown=wait)
                break
    except Exception:
        Study.objects.filter(id=study_id).update(retrain_claimed_at=None)
        raise
    if latest is not None:
        refill_request(study_id=study_id)
    return latest


@dataclass(frozen=True)
class StudyFeatures:
    """Embeddings of every candidate in a study, rows in candidate-id order."""

    candidate_ids: np.ndarray
    groups: np.ndarray
    features: np.ndarray
    embedder_key: str

    def index(self) -> dict[int, int]:
        return {int(cid): row for row, cid in enumerate(self.candidate_ids)}


def study_features(*, study_id: int) -> StudyFeatures:
    """Embed all candidates of a study (cached by content), grouped by prompt."""
    rows = list(Candidate.objects.filter(study_id=study_id).order_by("id").values_list("id", "prompt_id", "text"))
    embedder = embedder_get()
    features = embedder.embed([text for _, _, text in rows])
    return StudyFeatures(
        candidate_ids=np.array([cid for cid, _, _ in rows], dtype=np.int64),
        groups=np.array([-1 if pid is None else pid for _, pid, _ in rows], dtype=np.int64),
        features=features,
        embedder_key=embedder.model_key,
    )


def _preference_data(*, study_id: int, index: dict[int, int]):
    """The study's judgments as preference data over rows of the feature matrix.

    ``Judgment.ranking`` lists candidate ids best first, tied candidates sharing
    an inner list: ``[winner, loser]`` and ``[[a, b]]`` (a tie) are pairs; a
    longer strict ranking is a Plackett–Luce ranking; a ranking with tied groups
    becomes the pairs it implies (every item beats the items of lower groups and
    ties those of its own group). A "both bad" answer is a tie flagged both-bad
    (the likelihood then also pushes both utilities down). Candidates that no
    longer exist are left out.
    """
    from models_runtime.preferences import PreferenceData

    left: list[int] = []
    right: list[int] = []
    outcome: list[float] = []
    both_bad: list[bool] = []
    rankings: list[list[int]] = []
    rows = Judgment.objects.filter(study_id=study_id).order_by("id").values_list("ranking", "choice")
    for ranking, choice in rows:
        groups = [[c for c in (g if isinstance(g, list) else [g]) if c in index] for g in ranking]
        groups = [[index[c] for c in g] for g in groups if g]
        if choice == Judgment.Choice.BOTH_BAD:
            if len(groups) == 1 and len(groups[0]) == 2:
                left.append(groups[0][0])
                right.append(groups[0][1])
                outcome.append(0.5)
                both_bad.append(True)
            continue
        if all(len(g) == 1 for g in groups):
            if len(groups) == 2:
                left.append(groups[0][0])
                right.append(groups[1][0])
                outcome.append(1.0)
                both_bad.append(False)
            elif len(groups) > 2:
                rankings.append([g[0] for g in groups])
            continue
        for gi, group in enumerate(groups):
            for pos, a in enumerate(group):
                for b in group[pos + 1 :]:
                    left.append(a)
                    right.append(b)
                    outcome.append(0.5)
                    both_bad.append(False)
                for lower in groups[gi + 1 :]:
                    for b in lower:
                        left.append(a)
                        right.append(b)
                        outcome.append(1.0)
                        both_bad.append(False)
    pairs = PreferenceData.from_pairs(
        np.array(left, dtype=np.int64),
        np.array(right, dtype=np.int64),
        np.array(outcome, dtype=np.float32),
        both_bad=np.array(both_bad, dtype=bool),
    )
    if not rankings:
        return pairs
    return PreferenceData.combine(pairs, PreferenceData.from_rankings(rankings))


def reward_model_config(*, study: Study):
    """The models_runtime configuration for the study's model type and options."""
    from models_runtime.ensemble import EnsembleConfig
    from models_runtime.preferences import LikelihoodConfig
    from models_runtime.reward import RewardModelConfig

    params = dict(study.model_params or {})
    validate_model_params(params)
    likelihood = LikelihoodConfig(
        ties=str(params.get("ties", "davidson")), label_flip_rate=float(params.get("label_flip_rate", 0.0))
    )
    common = {"hidden": int(params.get("hidden", 64)), "seed": int(params.get("seed", 0)), "likelihood": likelihood}
    common["device"] = settings.PREFLOOP_DEVICE
    if study.model_type == Study.ModelType.ENSEMBLE:
        return EnsembleConfig(
            n_members=int(params.get("n_members", 10)), prior_scale=float(params.get("prior_scale", 0.0)), **common
        )
    return RewardModelConfig(head=study.model_type, l2=float(params.get("l2", 1e-3)), **common)


def reward_model_load(version: RewardModelVersion):
    """Load a published version's checkpoint (single head or ensemble)."""
    if version.model_type == Study.ModelType.ENSEMBLE:
        from models_runtime.ensemble import EnsembleRewardModel

        return EnsembleRewardModel.load(version.checkpoint_path)
    from models_runtime.reward import RewardModel

    return RewardModel.load(version.checkpoint_path)


def reward_model_fit(*, study_id: int) -> RewardModelVersion | None:
    """Fit the study's reward model on all its judgments and publish it.

    Returns None when there are too few judgments. The fit warm-starts from
    the previous version. The checkpoint is written under a temporary name
    and renamed into place before the version row is created, so readers
    never see a version without its weights.
    """
    from models_runtime import ensemble, reward

    study = Study.objects.get(id=study_id)
    config = reward_model_config(study=study)
    n_judgments = Judgment.objects.filter(study_id=study_id).count()
    if n_judgments < MIN_JUDGMENTS_TO_TRAIN:
        return None
    feats = study_features(study_id=study_id)
    data = _preference_data(study_id=study_id, index=feats.index())
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
    if study.model_type == Study.ModelType.ENSEMBLE:
        result = ensemble.fit_ensemble(feats.features, data, config, init_state=init_state)
    else:
        result = reward.fit_reward_model(feats.features, data, config, init_state=init_state)
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


RECOMMENDATION_TOP = 10
RECOMMENDATION_SAMPLES = 256


def _recommendation(*, study: Study, model, feats: StudyFeatures, data) -> dict:
    """Best candidate, leaderboard and P(best) per prompt under the new model:
    ensemble members as posterior samples, or a last-layer Laplace approximation
    for a single head (see models_runtime.recommend)."""
    from models_runtime.recommend import laplace_samples, recommend

    if study.model_type == Study.ModelType.ENSEMBLE:
        samples, method = model.member_scores(feats.features), "ensemble members"
    else:
        rng = np.random.default_rng([study.id, len(data)])
        samples = laplace_samples(model, feats.features, data, rng, RECOMMENDATION_SAMPLES)
        method = "last-layer Laplace"
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


def _checkpoint_stage(*, study_id: int, model: RewardModel) -> Path:
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


def reward_model_latest(*, study_id: int) -> RewardModelVersion | None:
    return RewardModelVersion.objects.filter(study_id=study_id).order_by("-version").first()


# --- the queue ----------------------------------------------------------------


def queue_waiting_count(*, study_id: int) -> int:
    return Comparison.objects.filter(study_id=study_id, status=Comparison.Status.QUEUED, is_gold=False).count()


def item_key(candidate_ids: list[int]) -> str:
    return "-".join(str(c) for c in sorted(candidate_ids))


def queue_refill(*, study_id: int, use_model: bool = True, seed: int | None = None) -> int:
    """Top the study's queue up to ``queue_target`` with the strategy's picks.

    With a reward model, untouched comparisons chosen by an older model are
    retired first, so annotators always answer what the newest model finds
    most informative. Before the first model (or with ``use_model=False``,
    the cheap path the web process takes when the queue ran dry) pairs are
    random. Returns the number of comparisons created.
    """
    try:
        return _queue_refill(study_id=study_id, use_model=use_model, seed=seed)
    finally:
        Study.objects.filter(id=study_id).update(refill_claimed_at=None)


@dataclass(frozen=True)
class _Pick:
    """One comparison to queue: row indices of its items, and why."""

    items: tuple[int, ...]
    score: float
    propensity: float | None
    strategy: str


def _queue_refill(*, study_id: int, use_model: bool, seed: int | None) -> int:
    """Choose outside any lock, then queue in one short transaction.

    Embedding the candidates (seconds for a cold embedder) and running the
    strategy (up to about two seconds for APOHF on 50,000 candidates) hold no
    lock, so annotators' answers and leases, which touch the same study and
    comparison rows, never wait for them. The transaction re-reads the queue,
    keeps only picks that are still new and fit the room left, and gives up
    when a newer model was published meanwhile (its own refill queues it).
    """
    study = Study.objects.get(id=study_id)
    if study.status != Study.Status.ACTIVE:
        return 0
    latest = reward_model_latest(study_id=study_id) if use_model else None
    # An upper bound on what the transaction will want: the queue may be
    # emptied of an older model's picks, but never past the budget.
    judged = Judgment.objects.filter(study_id=study_id).count()
    kept = Comparison.objects.filter(study_id=study_id, status=Comparison.Status.QUEUED, is_gold=False)
    if latest is not None:
        kept = kept.filter(model_version_id=latest.id)
    want = min(study.queue_target - kept.count(), (study.budget - judged) // study.overlap)
    if want <= 0:
        return 0

    rng = np.random.default_rng(seed)
    if latest is not None or use_model:
        # Before the first model this still embeds the candidates (in the
        # worker, not the web process), so the first retrain finds them cached.
        feats = study_features(study_id=study_id)
        candidate_ids, groups, features = feats.candidate_ids, feats.groups, feats.features
    else:
        rows = list(Candidate.objects.filter(study_id=study_id).order_by("id").values_list("id", "prompt_id"))
        candidate_ids = np.array([c for c, _ in rows], dtype=np.int64)
        groups = np.array([-1 if p is None else p for _, p in rows], dtype=np.int64)
        features = None
    index = {int(cid): row for row, cid in enumerate(candidate_ids)}
    excluded = _excluded_sets(study_id=study_id, index=index, retiring_for=latest.id if latest else None)
    k = study.list_size if study.mode == Study.Mode.LISTWISE else 2

    picks: list[_Pick] = []
    name = StrategyName(study.strategy)
    if name != StrategyName.RANDOM and (latest is not None or MODEL_NEEDS[name] is None):
        inp = _selection_input(
            study=study,
            latest=latest,
            features=features if latest is not None else None,
            index=index,
            groups=groups,
            excluded=excluded,
        )
        if inp is not None:
            strategy = get_strategy(name, **_strategy_params(study))
            picks = _picks(strategy, inp, want, k, features, rng)
    if len(picks) < want:
        # Cold start, or the strategy ran out of comparisons it wants: random
        # ones keep annotators busy rather than waiting.
        random_strategy = get_strategy(StrategyName.RANDOM)
        taken = set(excluded) | {tuple(sorted(p.items)) for p in picks}
        # Random lists come one per prompt per call; a few rounds fill a
        # queue that is longer than the study has prompts.
        for _ in range(1 if k == 2 else 8):
            inp = SelectionInput(groups=groups, scores=None, excluded=frozenset(taken))
            extra = _picks(random_strategy, inp, want - len(picks), k, None, rng)
            if not extra:
                break
            picks += extra
            taken |= {tuple(sorted(p.items)) for p in extra}
            if len(picks) >= want:
                break
    return _queue_picks(study_id=study_id, latest=latest, candidate_ids=candidate_ids, picks=picks, rng=rng)


@transaction.atomic
def _queue_picks(
    *,
    study_id: int,
    latest: RewardModelVersion | None,
    candidate_ids: np.ndarray,
    picks: list[_Pick],
    rng: np.random.Generator,
) -> int:
    """The locked half of a refill: retire stale picks, then queue what still fits."""
    study = Study.objects.select_for_update().get(id=study_id)
    if study.status != Study.Status.ACTIVE:
        return 0
    if latest is not None:
        newest = reward_model_latest(study_id=study_id)
        if newest is not None and newest.id != latest.id:
            return 0
        _queue_retire_stale(study_id=study_id, keep_version_id=latest.id)
    waiting = queue_waiting_count(study_id=study_id)
    judged = Judgment.objects.filter(study_id=study_id).count()
    # Never queue more work than the budget still pays for.
    outstanding = (
        Comparison.objects.filter(study_id=study_id, is_gold=False).exclude(status=Comparison.Status.DONE).count()
        * study.overlap
    )
    room = (study.budget - judged - outstanding) // study.overlap
    want = min(study.queue_target - waiting, room)
    if want <= 0 or not picks:
        return 0
    # Another refill may have queued some of the same items meanwhile.
    keys = [item_key([int(candidate_ids[i]) for i in pick.items]) for pick in picks]
    taken = set(Comparison.objects.filter(study_id=study_id, item_key__in=keys).values_list("item_key", flat=True))
    fresh = [pick for pick, key in zip(picks, keys, strict=True) if key not in taken][:want]
    return _comparisons_create(study=study, candidate_ids=candidate_ids, picks=fresh, model_version=latest, rng=rng)


def _picks(
    strategy, inp: SelectionInput, want: int, k: int, features: np.ndarray | None, rng: np.random.Generator
) -> list[_Pick]:
    """Up to ``want`` comparisons of ``k`` items from the strategy: pairs (with
    spares asked for, so near-duplicate pairs can be dropped from the batch) or
    lists built by the strategy's listwise variant."""
    if k == 2:
        chosen = strategy.select(inp, 2 * want, rng)
        if features is not None:
            chosen = diversify(chosen, features, want)
        return [_Pick((p.i, p.j), p.score, p.propensity, strategy.name.value) for p in chosen[:want]]
    lists = select_lists(strategy, inp, want, k, rng)
    return [_Pick(tuple(lst.items), lst.score, lst.propensity, strategy.name.value) for lst in lists]


def _selection_input(
    *,
    study: Study,
    latest: RewardModelVersion | None,
    features: np.ndarray | None,
    index: dict[int, int],
    groups: np.ndarray,
    excluded: set[tuple[int, ...]],
) -> SelectionInput | None:
    """What the study's strategy needs from the current model, or None (with a
    warning) when that model cannot provide it, e.g. double Thompson sampling on
    a single-head model; the caller then falls back to random pairs."""
    name = StrategyName(study.strategy)
    counts = np.zeros(groups.shape[0], dtype=np.int64)
    if excluded:
        np.add.at(counts, np.fromiter((i for items in excluded for i in items), dtype=np.int64), 1)
    fields: dict = {"groups": groups, "excluded": frozenset(excluded), "counts": counts}
    if latest is not None and features is not None:
        model = reward_model_load(latest)
        is_ensemble = latest.model_type == Study.ModelType.ENSEMBLE
        if is_ensemble:
            fields["member_scores"] = model.member_scores(features)
            fields["scores"] = fields["member_scores"].mean(axis=0)
        else:
            fields["scores"] = model.scores(features)
        if MODEL_NEEDS[name] == "gradients" and not is_ensemble:
            from models_runtime.gradients import GradientFeatureSource

            judged = _preference_data(study_id=study.id, index=index).pairwise_split()
            fields["gradients"] = GradientFeatureSource(model, features, judged.pair_left, judged.pair_right)
    need = MODEL_NEEDS[name]
    if need is not None and fields.get(need) is None:
        logger.warning(
            "study %s: strategy %s needs %s, which a %s model does not provide; using random pairs",
            study.id,
            name.value,
            need,
            latest.model_type if latest else "missing",
        )
        return None
    return SelectionInput(**fields)


def _strategy_params(study: Study) -> dict:
    params = dict(study.strategy_params or {})
    params.pop("seed", None)
    return params


def _excluded_sets(*, study_id: int, index: dict[int, int], retiring_for: int | None = None) -> set[tuple[int, ...]]:
    """Sorted row-index tuples of every comparison the study already has (pairs
    and lists), so no set of items is queued twice. With ``retiring_for`` (a
    model version id), the older picks the refill will retire are not counted:
    the new model may choose them again."""
    excluded: set[tuple[int, ...]] = set()
    rows = Comparison.objects.filter(study_id=study_id, is_gold=False)
    if retiring_for is not None:
        rows = rows.exclude(id__in=_retirable(study_id=study_id, keep_version_id=retiring_for).values("id"))
    keys = rows.values_list("item_key", flat=True)
    for key in keys.iterator():
        ids = [int(x) for x in key.split("-")]
        if all(c in index for c in ids):
            excluded.add(tuple(sorted(index[c] for c in ids)))
    return excluded


def _retirable(*, study_id: int, keep_version_id: int):
    """Queued comparisons an older model chose that nobody has leased or answered."""
    return (
        Comparison.objects.filter(study_id=study_id, status=Comparison.Status.QUEUED, is_gold=False)
        .exclude(model_version_id=keep_version_id)
        .filter(assignments__isnull=True, judgments__isnull=True)
    )


def _queue_retire_stale(*, study_id: int, keep_version_id: int) -> int:
    """Delete untouched queued comparisons that an older model chose.

    Rows are locked with SKIP LOCKED so a comparison being leased right now
    is left alone, and the filter is re-read after locking so one leased a
    moment ago is not deleted.
    """
    untouched = _retirable(study_id=study_id, keep_version_id=keep_version_id)
    locked = list(
        Comparison.objects.filter(id__in=untouched.values("id"))
        .select_for_update(skip_locked=True)
        .values_list("id", flat=True)
    )
    if not locked:
        return 0
    still = list(untouched.filter(id__in=locked).values_list("id", flat=True))
    ComparisonItem.objects.filter(comparison_id__in=still).delete()
    Comparison.objects.filter(id__in=still).delete()
    return len(still)


def _comparisons_create(
    *,
    study: Study,
    candidate_ids: np.ndarray,
    picks: list[_Pick],
    model_version: RewardModelVersion | None,
    rng: np.random.Generator,
) -> int:
    if not picks:
        return 0
    prompt_of = dict(Candidate.objects.filter(study=study).values_list("id", "prompt_id"))
    comparisons: list[Comparison] = []
    orders: list[list[int]] = []
    for pick in picks:
        # The order items are shown in is random, so position bias averages out.
        order = [int(candidate_ids[pick.items[i]]) for i in rng.permutation(len(pick.items))]
        orders.append(order)
        comparisons.append(
            Comparison(
                study=study,
                prompt_id=prompt_of.get(order[0]),
                item_key=item_key(order),
                judgments_wanted=study.overlap,
                strategy=pick.strategy,
                model_version=model_version,
                score=pick.score,
                propensity=pick.propensity,
                priority=pick.score,
            )
        )
    created = Comparison.objects.bulk_create(comparisons)
    ComparisonItem.objects.bulk_create(
        ComparisonItem(comparison=comp, candidate_id=cid, position=pos)
        for comp, order in zip(created, orders, strict=True)
        for pos, cid in enumerate(order)
    )
    return len(created)


# --- embeddings ------------------------------------------------------------------


class DatabaseEmbeddingCache:
    """Embedding cache in the database, shared by every worker and machine."""

    chunk = 500

    def get_many(self, keys):
        found: dict[str, np.ndarray] = {}
        keys = list(keys)
        for start in range(0, len(keys), self.chunk):
            for key, dim, blob in EmbeddingRecord.objects.filter(key__in=keys[start : start + self.chunk]).values_list(
                "key", "dim", "vector"
            ):
                found[key] = np.frombuffer(bytes(blob), dtype=np.float32, count=dim)
        return found

    def set_many(self, items) -> None:
        EmbeddingRecord.objects.bulk_create(
            [
                EmbeddingRecord(key=k, dim=int(v.shape[0]), vector=np.asarray(v, dtype=np.float32).tobytes())
                for k, v in items.items()
            ],
            ignore_conflicts=True,
            batch_size=self.chunk,
        )


_EMBEDDERS: dict[tuple, CachedEmbedder] = {}


def embedder_get() -> CachedEmbedder:
    """The process-wide embedder for the configured model (loaded once)."""
    from models_runtime.embedding import CachedEmbedder, EmbedderConfig, TransformerEmbedder

    config = EmbedderConfig(
        model_path=settings.PREFLOOP_EMBEDDER_PATH or None,
        max_length=settings.PREFLOOP_EMBEDDER_MAX_LENGTH,
        device=settings.PREFLOOP_DEVICE,
    )
    key = (config.model_path, config.max_length, config.device)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = CachedEmbedder(TransformerEmbedder(config), DatabaseEmbeddingCache())
    return _EMBEDDERS[key]
