"""Refilling a study's comparison queue with its strategy's picks.

A refill chooses outside any lock (reading the cached embeddings, running the
strategy), then queues its picks in one short transaction that locks the study
row, re-reads the queue and keeps only the picks that are still new and still
fit. What a strategy needs from the live model comes from the model kind's
registry entry (``models_runtime.kinds``).

The queue is ranked by model generation: a pick's priority is its model's
version number plus its rank in its batch (a fraction), and random pairs rank
below every model's picks. A new model's picks go to the front; an older
model's untouched picks stay behind them, so the queue never runs dry while a
new model chooses, and are retired only as the new picks displace them (past
the queue's depth, lowest first). An older pick that the new model chooses
again is taken over by it: re-scored and moved up to the new generation.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.db.models import Exists, OuterRef, Sum

from activelearn import claims, features, reliability
from activelearn.services import REFILL, reward_model_latest
from activelearn.strategies import SelectionInput, get_strategy
from activelearn.strategies.base import Strategy, diversify
from activelearn.strategies.lists import select_lists
from activelearn.strategies.registry import StrategyName, get_spec
from annotation import checkpoints, loop
from annotation.models import (
    Candidate,
    Comparison,
    ComparisonItem,
    Judgment,
    RewardModelVersion,
    Study,
    comparison_item_key,
    comparison_items_of,
)
from annotation.selectors.studies import QueueDemand, queue_demand, queue_reachable_count
from annotation.services import prompt_opt
from annotation.services.leasing import study_judgment_count
from annotation.services.retry import retry_transaction
from models_runtime import kinds

logger = logging.getLogger(__name__)


def queue_refill(*, study_id: int, use_model: bool = True, seed: int | None = None) -> int:
    """Top the study's queue up to its depth (``Study.queue_depth``: its
    ``queue_target``, or the crowd's demand if more) with the strategy's picks.

    With a reward model, the newest model's picks are served first and an
    older model's untouched ones make room for them (see the module's
    docstring). Before the first model (or with ``use_model=False``,
    the cheap path the web process takes when the queue ran dry) pairs are
    random. Returns the number of comparisons created. Takes no claim and
    releases none: the web's quick refill must not free the worker's claim,
    or refill tasks pile up (:func:`queue_refill_claimed` is the task's way in).
    """
    return _queue_refill(study_id=study_id, use_model=use_model, seed=seed)


# How many random pairs a web request queues when it finds the queue empty: the
# annotator asking needs one; the worker's refill (asked for at the same time)
# brings the strategy's picks.
FALLBACK_MOST = 4


def queue_fallback(*, study_id: int) -> int:
    """Queue a few random pairs at once, for an annotator who found the queue
    empty (the web's path: cheap, no model, no strategy); returns how many."""
    return _queue_refill(study_id=study_id, use_model=False, seed=None, most=FALLBACK_MOST)


def queue_refill_claimed(*, study_id: int, claim: str | None) -> int:
    """The ``refill_queue`` task: :func:`queue_refill` under the claim its
    request took, released at the end; nothing when another task's live claim
    holds it (this one waited in the queue past its claim's expiry)."""
    token = REFILL.start(study_id, claim)
    if token is None:
        if not Study.objects.filter(id=study_id).exists():
            raise Study.DoesNotExist(f"study {study_id} no longer exists")
        logger.info("refill of study %s skipped: another task holds its claim", study_id)
        return 0
    try:
        with claims.heartbeat(REFILL, study_id, token):
            return queue_refill(study_id=study_id)
    finally:
        REFILL.release(study_id, token)


@dataclass(frozen=True)
class _Pick:
    """One comparison to queue: row indices of its items, and why."""

    items: tuple[int, ...]
    score: float
    propensity: float | None
    strategy: str


def _queue_refill(*, study_id: int, use_model: bool, seed: int | None, most: int | None = None) -> int:
    """Choose outside any lock, then queue in one short transaction.

    Reading the candidates' cached embeddings (never computing them: that is
    the ``embed`` queue's work) and running the strategy (up to about two
    seconds for APOHF on 50,000 candidates) hold no lock, so annotators'
    answers and leases, which touch the same study and comparison rows, never
    wait for them. The transaction re-reads the queue, keeps only picks that
    are still new and fit the room left, and gives up when a newer model was
    published meanwhile (its own refill queues it).
    """
    study = Study.objects.get(id=study_id)
    if study.status != Study.Status.ACTIVE:
        return 0
    latest = reward_model_latest(study_id=study_id) if use_model else None
    # An upper bound on what the transaction will want: the queue may be
    # emptied of an older model's picks, but never past the budget.
    judged = study_judgment_count(study_id=study_id)
    # The crowd's demand is measured by the worker's refills; a web request's
    # fallback (``most``) keeps the last measure rather than add two queries
    # (and counts as kept only what nobody has reached: the annotator asking
    # found nothing they could take).
    demand = queue_demand(study=study) if most is None else QueueDemand(0, 0.0, study.queue_demand)
    kept = queue_reachable_count(
        study_id=study_id, active=demand.active, version_id=latest.id if latest is not None else None
    )
    depth = max(study.queue_target, demand.comparisons)
    want = min(depth - kept, (study.budget - judged) // study.overlap, most or depth)
    if want <= 0:
        _demand_store(study_id=study_id, demand=demand)
        return 0

    rng = np.random.default_rng(seed)
    rows = list(Candidate.objects.filter(study_id=study_id).order_by("id").values_list("id", "prompt_id"))
    ready = prompt_opt.ready_candidate_ids(study_id=study_id)
    if ready is not None:
        # Prompt optimisation: an instruction is compared once its responses exist.
        rows = [row for row in rows if row[0] in ready]
    candidate_ids = np.array([c for c, _ in rows], dtype=np.int64)
    groups = np.array([-1 if p is None else p for _, p in rows], dtype=np.int64)
    index = {int(cid): row for row, cid in enumerate(candidate_ids)}
    excluded = _excluded_sets(study_id=study_id, index=index, retiring_for=latest.id if latest else None)
    k = study.list_size if study.mode == Study.Mode.LISTWISE else 2
    if latest is None:
        # No model yet: the strategy (if it needs no model) sees every candidate, no embeddings.
        picks = _strategy_picks(
            study=study,
            latest=None,
            embedded=None,
            index=index,
            groups=groups,
            excluded=excluded,
            want=want,
            k=k,
            rng=rng,
        )
    else:
        picks = _model_picks(study=study, latest=latest, index=index, excluded=excluded, want=want, k=k, rng=rng)
    if len(picks) < want:
        # Cold start, or the strategy ran out of comparisons it wants: random
        # ones keep annotators busy rather than waiting.
        picks += _random_picks(groups=groups, taken=set(excluded), picks=picks, want=want, k=k, rng=rng)
    return _queue_picks(
        study_id=study_id, latest=latest, candidate_ids=candidate_ids, picks=picks, demand=demand, rng=rng
    )


def _demand_store(*, study_id: int, demand: QueueDemand) -> None:
    Study.objects.filter(id=study_id).exclude(queue_demand=demand.comparisons).update(queue_demand=demand.comparisons)


def _model_picks(
    *,
    study: Study,
    latest: RewardModelVersion,
    index: dict[int, int],
    excluded: set[tuple[int, ...]],
    want: int,
    k: int,
    rng: np.random.Generator,
) -> list[_Pick]:
    """The strategy's picks among the candidates already embedded, as rows of ``index``.

    A refill never embeds: after a large import that takes minutes, and the
    ``embed`` queue's task does it batch by batch. Until it is done the model
    steers among the embedded candidates, the random fallback covers the rest,
    and the embedding is asked for again (a no-op while its task runs). A live
    version fitted on other features (the encoder or the study's ``features``
    choice changed since) cannot score these: random pairs until the refit
    that the finished embedding asks for (``activelearn.tasks.embed_study``).
    """
    feats = features.study_features(study_id=study.id, embed=features.Embed.CACHED)
    if feats.missing:
        # Through the port, as annotation asks: importing activelearn.triggers
        # here would close a cycle (triggers → tasks → refill).
        loop.get().candidates_added(study_id=study.id)
    if latest.embedder_key != feats.embedder_key:
        logger.warning(
            "study %s: the live model v%s was fitted on features %s, the study's are now %s; "
            "using random pairs until it is refitted",
            study.id,
            latest.version,
            latest.embedder_key,
            feats.embedder_key,
        )
        return []
    # A candidate imported since ``index`` was read waits for the next refill.
    known = np.array([int(cid) in index for cid in feats.candidate_ids], dtype=bool)
    if not known.all():
        feats = dataclasses.replace(
            feats, candidate_ids=feats.candidate_ids[known], groups=feats.groups[known], features=feats.features[known]
        )
    if feats.candidate_ids.size == 0:
        return []
    # Rows of the embedded subset ↔ rows of every candidate.
    full_row = np.array([index[int(cid)] for cid in feats.candidate_ids], dtype=np.int64)
    sub_row = {int(full): sub for sub, full in enumerate(full_row)}
    sub_excluded = {tuple(sorted(sub_row[r] for r in items)) for items in excluded if all(r in sub_row for r in items)}
    picks = _strategy_picks(
        study=study,
        latest=latest,
        embedded=feats.features,
        index=feats.index(),
        groups=feats.groups,
        excluded=sub_excluded,
        want=want,
        k=k,
        rng=rng,
    )
    return [
        _Pick(tuple(int(full_row[i]) for i in pick.items), pick.score, pick.propensity, pick.strategy) for pick in picks
    ]


def _strategy_picks(
    *,
    study: Study,
    latest: RewardModelVersion | None,
    embedded: np.ndarray | None,
    index: dict[int, int],
    groups: np.ndarray,
    excluded: set[tuple[int, ...]],
    want: int,
    k: int,
    rng: np.random.Generator,
) -> list[_Pick]:
    """The study's strategy's picks, or none when it is random (the caller's
    fallback) or needs a model there is not yet."""
    try:
        spec = get_spec(study.strategy)
    except ValueError:
        logger.warning("study %s: strategy %r is not registered; using random pairs", study.id, study.strategy)
        return []
    if spec.name == StrategyName.RANDOM or (latest is None and spec.needs is not None):
        return []
    inp = _selection_input(
        study=study,
        needs=spec.needs,
        latest=latest,
        embedded=embedded if latest is not None else None,
        index=index,
        groups=groups,
        excluded=excluded,
    )
    if inp is None:
        return []
    strategy = get_strategy(spec.name, **_strategy_params(study))
    return _picks(strategy, inp, want, k, embedded, rng)


def _random_picks(
    *, groups: np.ndarray, taken: set[tuple[int, ...]], picks: list[_Pick], want: int, k: int, rng: np.random.Generator
) -> list[_Pick]:
    """Random comparisons to make ``picks`` up to ``want``, none of them ``taken``."""
    random_strategy = get_strategy(StrategyName.RANDOM)
    taken = taken | {tuple(sorted(p.items)) for p in picks}
    extra_picks: list[_Pick] = []
    # Random lists come one per prompt per call; a few rounds fill a
    # queue that is longer than the study has prompts.
    for _ in range(1 if k == 2 else 8):
        inp = SelectionInput(groups=groups, scores=None, excluded=frozenset(taken))
        extra = _picks(random_strategy, inp, want - len(picks) - len(extra_picks), k, None, rng)
        if not extra:
            break
        extra_picks += extra
        taken |= {tuple(sorted(p.items)) for p in extra}
        if len(picks) + len(extra_picks) >= want:
            break
    return extra_picks


@retry_transaction
@transaction.atomic
def _queue_picks(
    *,
    study_id: int,
    latest: RewardModelVersion | None,
    candidate_ids: np.ndarray,
    picks: list[_Pick],
    demand: QueueDemand,
    rng: np.random.Generator,
) -> int:
    """The locked half of a refill: take over the older picks the model chose
    again, queue the new ones that fit, retire the older ones they displace.
    Returns how many comparisons it created."""
    study = Study.objects.select_for_update(no_key=True).get(id=study_id)
    if study.queue_demand != demand.comparisons:
        study.queue_demand = demand.comparisons
        study.save(update_fields=["queue_demand"])
    if study.status != Study.Status.ACTIVE:
        return 0
    generation = 0
    retirable: dict[str, tuple[int, float]] = {}
    if latest is not None:
        newest = reward_model_latest(study_id=study_id)
        if newest is not None and newest.id != latest.id:
            return 0
        generation = latest.version
        retirable = _retirable_locked(study_id=study_id, keep_version_id=latest.id)
    # What the crowd at work can still take (queue_reachable_count): comparisons
    # every active annotator has reached leave no room taken in the queue.
    waiting = queue_reachable_count(study_id=study_id, active=demand.active)
    judged = study_judgment_count(study_id=study_id)
    # Never queue more work than the budget still pays for (retired picks give
    # theirs back). What open comparisons still want is reserved: each wants
    # its judgments less those it has, so a comparison answered once of two
    # reserves one judgment, not two (reserving two left a lone annotator on
    # an overlap of 2 with nothing once a third of the budget was spent).
    open_rows = Comparison.objects.filter(study_id=study_id, is_gold=False).exclude(status=Comparison.Status.DONE)
    wanted = open_rows.aggregate(total=Sum("judgments_wanted"))["total"] or 0
    given = Judgment.objects.filter(comparison__in=open_rows).count()
    room = (study.budget - judged - max(0, wanted - given)) // study.overlap
    if not picks:
        return 0
    picks, inputs_of = _task_inputs_draw(study_id=study_id, candidate_ids=candidate_ids, picks=picks, rng=rng)
    keys = [
        comparison_item_key([int(candidate_ids[i]) for i in pick.items], inputs_of.get(_pair_key(candidate_ids, pick)))
        for pick in picks
    ]
    ranked = _generation_priorities(picks, generation)
    # Older picks this model chose again: re-scored, moved up to its generation.
    adopted = 0
    for n, (pick, key) in enumerate(zip(picks, keys, strict=True)):
        if key not in retirable:
            continue
        adopted += 1
        Comparison.objects.filter(id=retirable.pop(key)[0]).update(
            model_version=latest, strategy=pick.strategy, score=pick.score, propensity=pick.propensity,
            priority=ranked[n],
        )  # fmt: skip
    # Another refill may have queued some of the same items meanwhile.
    taken = set(Comparison.objects.filter(study_id=study_id, item_key__in=keys).values_list("item_key", flat=True))
    fresh = [(pick, ranked[n]) for n, (pick, key) in enumerate(zip(picks, keys, strict=True)) if key not in taken]
    chosen = [(pick, priority) for pick, priority in fresh if pick.strategy != StrategyName.RANDOM]
    fill = [(pick, priority) for pick, priority in fresh if pick.strategy == StrategyName.RANDOM]
    # The model's picks may displace older ones: their room counts every
    # displaceable pick as gone, within the depth and the budget.
    depth = study.queue_depth
    chosen = chosen[: max(0, min(depth - (waiting - len(retirable)), room + len(retirable)))]
    excess = max(waiting + len(chosen) - depth, len(chosen) - room, 0)
    lowest = sorted(retirable.values(), key=lambda row: row[1])[:excess]
    retired = _comparisons_delete([comparison_id for comparison_id, _ in lowest]) if lowest else 0
    # Random pairs only fill what is left: they displace nothing.
    waiting, room = waiting + len(chosen) - retired, room - len(chosen) + retired
    fill = fill[: max(0, min(depth - waiting, room))]
    logger.info(
        "study %s: queued %d picks of %s and %d random pairs (v%s; %d older picks taken over, %d retired); "
        "%d waiting, depth %d (demand %d from %d annotators)",
        study_id, len(chosen), study.strategy, len(fill), generation, adopted, retired,
        waiting + len(fill), depth, demand.comparisons, demand.active,
    )  # fmt: skip
    return _comparisons_create(
        study=study, candidate_ids=candidate_ids, picks=chosen + fill, model_version=latest, rng=rng,
        inputs_of=inputs_of,
    )  # fmt: skip


def _pair_key(candidate_ids: np.ndarray, pick: _Pick) -> str:
    return comparison_item_key([int(candidate_ids[i]) for i in pick.items])


def _task_inputs_used(*, study_id: int) -> dict[str, set[int]]:
    """For a prompt-optimisation study: each pair's task inputs already queued or asked."""
    used: dict[str, set[int]] = {}
    rows = Comparison.objects.filter(study_id=study_id, is_gold=False, task_input__isnull=False)
    for key, task_input_id in rows.values_list("item_key", "task_input_id"):
        used.setdefault(comparison_items_of(key), set()).add(task_input_id)
    return used


def _task_inputs_draw(
    *, study_id: int, candidate_ids: np.ndarray, picks: list[_Pick], rng: np.random.Generator
) -> tuple[list[_Pick], dict[str, int]]:
    """In a prompt-optimisation study, the task input each pick's pair is asked on:
    one drawn at random among those the pair has not been asked on (APOHF draws
    an input every round, so one pair may be asked again on another); a pick
    whose pair has been asked on every input is dropped. Other studies: the
    picks as they are, no inputs."""
    inputs = prompt_opt.task_input_ids(study_id=study_id)
    if not inputs:
        return picks, {}
    used = _task_inputs_used(study_id=study_id)
    kept, inputs_of = [], {}
    for pick in picks:
        pair = _pair_key(candidate_ids, pick)
        free = [i for i in inputs if i not in used.get(pair, set()) and pair not in inputs_of]
        if not free:
            continue
        inputs_of[pair] = int(free[rng.integers(len(free))])
        kept.append(pick)
    return kept, inputs_of


def _generation_priorities(picks: list[_Pick], generation: int) -> list[float]:
    """Each pick's queue priority: its model's version number plus a fraction
    that falls with its rank in the batch (best first); random pairs rank
    below every model's picks, in generation 0."""
    n = len(picks)
    return [
        (0 if pick.strategy == StrategyName.RANDOM else generation) + (n - rank) / (n + 1)
        for rank, pick in enumerate(picks)
    ]


def _picks(
    strategy: Strategy,
    inp: SelectionInput,
    want: int,
    k: int,
    embedded: np.ndarray | None,
    rng: np.random.Generator,
) -> list[_Pick]:
    """Up to ``want`` comparisons of ``k`` items from the strategy: pairs (twice
    as many asked for, the diverse ones first: ``diversify``) or lists built by
    the strategy's listwise variant."""
    if k == 2:
        chosen = strategy.select(inp, 2 * want, rng)
        if embedded is not None:
            diverse = diversify(chosen, embedded, want)
            # A batch short of ``want`` after dropping near-duplicates takes the
            # strategy's dropped picks next, behind the diverse ones, rather than
            # random pairs: on a redundant pool (templated texts, a crowd's
            # depth of hundreds) diversity alone left half of each batch random.
            kept = {(p.i, p.j) for p in diverse}
            chosen = diverse + [p for p in chosen if (p.i, p.j) not in kept]
        return [_Pick((p.i, p.j), p.score, p.propensity, strategy.name) for p in chosen[:want]]
    lists = select_lists(strategy, inp, want, k, rng)
    return [_Pick(tuple(lst.items), lst.score, lst.propensity, strategy.name) for lst in lists]


def _selection_input(
    *,
    study: Study,
    needs: str | None,
    latest: RewardModelVersion | None,
    embedded: np.ndarray | None,
    index: dict[int, int],
    groups: np.ndarray,
    excluded: set[tuple[int, ...]],
) -> SelectionInput | None:
    """What the study's strategy needs from the current model, or None (with a
    warning) when that model cannot provide it, e.g. double Thompson sampling on
    a single-head model; the caller then falls back to random pairs."""
    counts = np.zeros(groups.shape[0], dtype=np.int64)
    if excluded:
        np.add.at(counts, np.fromiter((i for items in excluded for i in items), dtype=np.int64), 1)
    fields: dict = {"groups": groups, "excluded": frozenset(excluded), "counts": counts}
    if latest is not None and embedded is not None:
        kind = kinds.get(latest.model_type)
        model = kind.load(checkpoints.local_folder(latest.checkpoint_path))
        # The training judgments only: a kind whose outputs condition on them (the
        # kernel model's posterior draws; APOHF's design of judged pairs) never
        # reads an answer of the evaluation set, whose figures must stay held out.
        fields.update(
            kind.outputs(
                model,
                embedded,
                needs,
                lambda: (
                    reliability.training_preferences(
                        study_id=study.id,
                        index=index,
                        rel=reliability.version_weights(latest.metrics, reliability.judge_user_ids(study_id=study.id)),
                    )[0].data
                ),
            )
        )
    if needs is not None and fields.get(needs) is None:
        logger.warning(
            "study %s: strategy %s needs %s, which a %s model does not provide; using random pairs",
            study.id,
            study.strategy,
            needs,
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
    # A prompt-optimisation study asks a pair once per task input: it is taken once asked on all of them.
    n_inputs = len(prompt_opt.task_input_ids(study_id=study_id)) or 1
    asked: dict[str, int] = {}
    for key in rows.values_list("item_key", flat=True).iterator():
        items = comparison_items_of(key)
        asked[items] = asked.get(items, 0) + 1
        if asked[items] < n_inputs:
            continue
        ids = [int(x) for x in items.split("-")]
        if all(c in index for c in ids):
            excluded.add(tuple(sorted(index[c] for c in ids)))
    return excluded


def _retirable(*, study_id: int, keep_version_id: int):
    """Queued comparisons an older model (or the random fallback) chose that no
    person has leased or answered. AI judges answer the whole queue as it is
    filled, so their answers hold nothing in it (or no older pick would ever
    make room for a new model's): retiring a comparison takes its judges'
    votes with it, and their replies stay in the generation cache should the
    pair be chosen again."""
    answered_by_a_person = Judgment.objects.filter(comparison_id=OuterRef("pk"), by_model=False)
    return (
        Comparison.objects.filter(study_id=study_id, status=Comparison.Status.QUEUED, is_gold=False)
        .exclude(model_version_id=keep_version_id)
        .filter(~Exists(answered_by_a_person), assignments__isnull=True)
    )


def _retirable_locked(*, study_id: int, keep_version_id: int) -> dict[str, tuple[int, float]]:
    """The untouched older picks, locked, by item key: ``(id, priority)``.

    Rows are locked with SKIP LOCKED so a comparison being leased right now
    is left alone, and the filter is re-read after locking so one leased a
    moment ago is not counted.
    """
    untouched = _retirable(study_id=study_id, keep_version_id=keep_version_id)
    locked = list(
        Comparison.objects.filter(id__in=untouched.values("id"))
        .select_for_update(skip_locked=True)
        .values_list("id", flat=True)
    )
    if not locked:
        return {}
    rows = untouched.filter(id__in=locked).values_list("item_key", "id", "priority")
    return {key: (comparison_id, priority) for key, comparison_id, priority in rows}


def _comparisons_delete(ids: list[int]) -> int:
    ComparisonItem.objects.filter(comparison_id__in=ids).delete()
    return Comparison.objects.filter(id__in=ids).delete()[1].get(Comparison._meta.label, 0)


def _comparisons_create(
    *,
    study: Study,
    candidate_ids: np.ndarray,
    picks: list[tuple[_Pick, float]],
    model_version: RewardModelVersion | None,
    rng: np.random.Generator,
    inputs_of: dict[str, int] | None = None,
) -> int:
    """Queue ``picks``, each with its priority (and, in a prompt-optimisation
    study, the task input drawn for its pair: ``inputs_of``)."""
    if not picks:
        return 0
    inputs_of = inputs_of or {}
    prompt_of = dict(Candidate.objects.filter(study=study).values_list("id", "prompt_id"))
    comparisons: list[Comparison] = []
    orders: list[list[int]] = []
    for pick, priority in picks:
        # The order items are shown in is random, so position bias averages out.
        order = [int(candidate_ids[pick.items[i]]) for i in rng.permutation(len(pick.items))]
        orders.append(order)
        comparisons.append(
            Comparison(
                study=study,
                prompt_id=prompt_of.get(order[0]),
                item_key=comparison_item_key(order, inputs_of.get(comparison_item_key(order))),
                judgments_wanted=study.overlap,
                strategy=pick.strategy,
                model_version=model_version,
                score=pick.score,
                propensity=pick.propensity,
                priority=priority,
                task_input_id=inputs_of.get(comparison_item_key(order)),
            )
        )
    created = Comparison.objects.bulk_create(comparisons)
    ComparisonItem.objects.bulk_create(
        ComparisonItem(comparison=comp, candidate_id=cid, position=pos)
        for comp, order in zip(created, orders, strict=True)
        for pos, cid in enumerate(order)
    )
    return len(created)
