"""The queue keeps ahead of the crowd: its depth follows the annotators working
now, and a new model's picks go to the front without emptying the queue.

Before, each refill after a new model deleted every untouched pick of the
older one first, and a fixed queue target of 24 served 64 annotators: under
load the queue ran dry and most answers went to random pairs.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from activelearn import refill, services
from annotation.models import Assignment, Candidate, Comparison, Judgment, RewardModelVersion
from annotation.selectors import queue_waiting_count
from annotation.selectors.studies import QueueDemand, queue_demand
from annotation.services import assignment_lease_next, assignment_lease_or_refill, judgment_submit

pytestmark = pytest.mark.django_db


def _queued(study) -> list[Comparison]:
    return list(
        Comparison.objects.filter(study=study, status=Comparison.Status.QUEUED, is_gold=False).order_by(
            "-priority", "id"
        )
    )


def _first_model(study, user, judge) -> RewardModelVersion:
    refill.queue_refill(study_id=study.id, seed=0)
    judge(study, user, 4)
    version = services.reward_model_fit(study_id=study.id)
    assert version is not None
    return version


def _picks_of(study, keys: list[str]) -> tuple[np.ndarray, list[refill._Pick]]:
    """Picks of the given item sets, as the strategy would hand them to the
    locked half of a refill (rows of every candidate, in id order)."""
    candidate_ids = np.array(list(Candidate.objects.filter(study=study).order_by("id").values_list("id", flat=True)))
    row = {int(c): n for n, c in enumerate(candidate_ids)}
    picks = [
        refill._Pick(
            tuple(row[int(c)] for c in key.split("-")), score=1.0 - n / 10, propensity=None, strategy="uncertainty"
        )
        for n, key in enumerate(keys)
    ]
    return candidate_ids, picks


def _queue_locked(study, version: RewardModelVersion, keys: list[str]) -> int:
    """The locked half of a refill, queueing picks of ``keys`` for ``version``."""
    candidate_ids, picks = _picks_of(study, keys)
    return refill._queue_picks(
        study_id=study.id,
        latest=version,
        candidate_ids=candidate_ids,
        picks=picks,
        demand=QueueDemand(active=0, per_second=0.0, comparisons=0),
        rng=np.random.default_rng(0),
    )


def _unqueued_keys(study, n: int) -> list[str]:
    """``n`` pairs within a prompt that the study has not queued yet."""
    have = set(Comparison.objects.filter(study=study).values_list("item_key", flat=True))
    keys = []
    for prompt_id in Candidate.objects.filter(study=study).values_list("prompt_id", flat=True).distinct():
        ids = sorted(Candidate.objects.filter(study=study, prompt_id=prompt_id).values_list("id", flat=True))
        keys += [f"{a}-{b}" for k, a in enumerate(ids) for b in ids[k + 1 :] if f"{a}-{b}" not in have]
    assert len(keys) >= n
    return keys[:n]


def test_a_new_models_picks_go_first_and_the_older_ones_wait_behind_them(make_study, annotators, member, judge):
    study = make_study(queue_target=10)
    member(study)
    version = _first_model(study, annotators[0], judge)
    older = _queued(study)
    assert len(older) == 6 and {c.model_version_id for c in older} == {None}

    # A batch of three: nothing older is retired to make room, the queue does not shrink.
    created = _queue_locked(study, version, _unqueued_keys(study, 3))
    assert created == 3
    queue = _queued(study)
    assert len(queue) == 9
    assert [c.model_version_id for c in queue[:3]] == [version.id] * 3, "the new model's picks are served first"
    assert [c.score for c in queue[:3]] == [1.0, 0.9, 0.8], "in the strategy's order"
    assert {c.id for c in queue[3:]} == {c.id for c in older}, "the older picks stay, behind"
    lease = assignment_lease_next(study=study, annotator=annotators[1])
    assert lease.assignment.comparison_id == queue[0].id


def test_an_older_pick_the_new_model_chooses_again_is_taken_over_and_displaced_ones_retire_lowest_first(
    make_study, annotators, member, judge
):
    study = make_study(queue_target=6)
    member(study)
    version = _first_model(study, annotators[0], judge)
    older = _queued(study)  # the random cold start: 2 of its 6 were answered
    assert len(older) == 2
    study.queue_target = 4
    study.save(update_fields=["queue_target"])
    again, lowest = older[0], older[-1]
    created = _queue_locked(study, version, [again.item_key, *_unqueued_keys(study, 3)])
    assert created == 3
    again.refresh_from_db()
    assert (again.model_version_id, again.strategy, again.score) == (version.id, "uncertainty", 1.0)
    queue = _queued(study)
    assert queue[0].id == again.id, "re-scored and moved to the front of the new generation"
    assert len(queue) == 4 and {c.model_version_id for c in queue} == {version.id}
    assert not Comparison.objects.filter(id=lowest.id).exists(), "displaced past the depth: the lowest retires"


def test_an_ai_judges_answers_hold_no_older_pick_in_the_queue(make_study, annotators, member, judge):
    """Judges answer every queued comparison: if their answers kept a pick from
    retiring, a full queue of older picks would never make room for a new model's."""
    from annotation.models import GenerationSource
    from annotation.services.judging import ai_judge_create

    study = make_study(queue_target=6)
    member(study)
    version = _first_model(study, annotators[0], judge)
    source = GenerationSource.objects.create(study=study, name="s", base_url="http://127.0.0.1:9/v1", model="m")
    bot = ai_judge_create(study=study, source_id=source.id, name="bot").user
    older = _queued(study)
    for comparison in older:
        winner, loser = comparison.items.values_list("candidate_id", flat=True)
        Judgment.objects.create(study=study, comparison=comparison, annotator=bot, choice="a",
                                ranking=[winner, loser], by_model=True)  # fmt: skip
    study.queue_target = len(older)
    study.save(update_fields=["queue_target"])
    created = _queue_locked(study, version, _unqueued_keys(study, 2))
    assert created == 2
    assert {c.model_version_id for c in _queued(study)[:2]} == {version.id}
    retired = [c.id for c in older if not Comparison.objects.filter(id=c.id).exists()]
    assert len(retired) == 2, "two older picks made room, their judge's votes with them"
    assert not Judgment.objects.filter(comparison_id__in=retired).exists()


def test_a_leased_older_pick_is_never_retired(make_study, annotators, member, judge):
    study = make_study(queue_target=6)
    member(study)
    version = _first_model(study, annotators[0], judge)
    held = assignment_lease_next(study=study, annotator=annotators[1]).assignment.comparison_id
    study.queue_target = 2
    study.save(update_fields=["queue_target"])
    _queue_locked(study, version, _unqueued_keys(study, 2))
    assert Comparison.objects.filter(id=held).exists()
    assert judgment_submit(study=study, annotator=annotators[1], comparison_id=held, choice="a").created


def test_the_demand_counts_the_annotators_working_now_and_their_pace(make_study, annotators, member, judge, settings):
    settings.PREFLOOP_ACTIVE_SECONDS, settings.PREFLOOP_QUEUE_HORIZON_SECONDS = 120, 100
    study = make_study(queue_target=20, overlap=2)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    for user in annotators:
        judge(study, user, 2)
    now = Judgment.objects.filter(study=study).latest("created_at").created_at + timedelta(seconds=1)
    # 6 judgments in the last minute at overlap 2: 0.05 comparisons a second, 5 in 100 s; 3 annotators.
    demand = queue_demand(study=study, now=now)
    assert (demand.active, demand.per_second, demand.comparisons) == (3, 0.05, 8)
    # An annotator who took nothing for PREFLOOP_ACTIVE_SECONDS is not working now.
    Assignment.objects.filter(study=study, annotator=annotators[2]).update(leased_at=now - timedelta(seconds=121))
    assert queue_demand(study=study, now=now).active == 2
    # A minute later the pace is gone; the two still leasing count one each.
    assert queue_demand(study=study, now=now + timedelta(seconds=61)).comparisons == 2


def test_the_refill_sizes_the_queue_to_the_demand_and_the_web_asks_at_half_of_it(
    make_study, annotators, member, monkeypatch, loop_calls
):
    study = make_study(queue_target=4, queue_low_water=2)
    member(study)
    monkeypatch.setattr(refill, "queue_demand", lambda study: QueueDemand(active=10, per_second=1.0, comparisons=20))
    assert refill.queue_refill(study_id=study.id, seed=0) == 20
    study.refresh_from_db()
    assert (study.queue_demand, study.queue_depth, study.queue_refill_at) == (20, 20, 10)
    users = iter(annotators * 10)
    while queue_waiting_count(study_id=study.id) > study.queue_refill_at:
        user = next(users)
        assignment_lease_or_refill(study=study, annotator=user)
        Assignment.objects.filter(study=study, annotator=user).update(status=Assignment.Status.SKIPPED)
    assert not loop_calls.refill, "asked for a refill above half the demand"
    assignment_lease_or_refill(study=study, annotator=next(users))
    assert loop_calls.refill == [study.id]


def test_an_empty_queue_gets_a_few_random_pairs_in_the_request_not_a_whole_refill(make_study, annotators, member):
    study = make_study(queue_target=20, strategy="uncertainty")
    member(study)
    lease = assignment_lease_or_refill(study=study, annotator=annotators[0])
    assert lease is not None
    made = Comparison.objects.filter(study=study)
    assert made.count() == refill.FALLBACK_MOST
    assert set(made.values_list("strategy", flat=True)) == {"random"}


def test_a_batch_short_after_dropping_near_duplicates_takes_the_strategys_next_picks_not_random_ones(
    make_study, annotators, member, judge, monkeypatch
):
    """On a redundant pool ``diversify`` keeps few of a batch (here: one); the
    rest are the strategy's other picks, behind it, not random pairs."""
    study = make_study(queue_target=8)
    member(study)
    version = _first_model(study, annotators[0], judge)
    monkeypatch.setattr(refill, "diversify", lambda picks, features, n: picks[-1:])
    refill.queue_refill(study_id=study.id, seed=0)
    queue = _queued(study)
    assert len(queue) == 8
    assert {(c.model_version_id, c.strategy) for c in queue} == {(version.id, "uncertainty")}


def test_a_lone_annotator_on_an_overlap_of_two_never_runs_out_while_budget_remains(make_member):
    """Every comparison a lone annotator answers stays queued for a second
    annotator. A queue that counted them filled up with work nobody at work
    could take: the annotate benchmark's single client got 24 answers, then
    nothing for 60 s. The refills now count what the crowd at work can reach."""
    from tests.factories import study_with_queue

    study = study_with_queue(n_prompts=6, n_candidates=4, fill=False, overlap=2, queue_target=4, budget=80)
    lone = make_member(study)
    refill.queue_refill(study_id=study.id, seed=0)  # the worker's first refill: the depth target
    assert len(_queued(study)) == 4
    answered = 0
    for _ in range(20):
        lease = assignment_lease_or_refill(study=study, annotator=lone)
        assert lease is not None, f"no comparison after {answered} answers, with budget left"
        judgment_submit(study=study, annotator=lone, comparison_id=lease.assignment.comparison_id, choice="a")
        answered += 1
        if answered % 5 == 0:
            # The worker's refill, asked for along the way: sized on what the lone annotator can still take.
            refill.queue_refill(study_id=study.id, seed=answered)
    assert answered == 20
    # All 20 answered comparisons wait for a second annotator, and the worker's last refill
    # left the lone annotator the depth target's worth of new ones.
    reached = Assignment.objects.filter(study=study, annotator=lone).values("comparison_id")
    untouched = Comparison.objects.filter(study=study, status=Comparison.Status.QUEUED).exclude(id__in=reached)
    assert untouched.count() >= 1
    assert Judgment.objects.filter(study=study).count() == 20


def test_the_budget_reserves_what_open_comparisons_still_want_not_a_whole_overlap(make_member):
    """A comparison answered once of two reserves one more judgment, not two:
    reserving two stopped a lone annotator's queue once a third of the budget
    was spent (the annotate benchmark's single client waited 33–55 s)."""
    from tests.factories import study_with_queue

    study = study_with_queue(n_prompts=8, n_candidates=4, fill=False, overlap=2, queue_target=4, budget=30)
    lone = make_member(study)
    answered = 0
    while True:
        lease = assignment_lease_or_refill(study=study, annotator=lone)
        if lease is None:
            break
        judgment_submit(study=study, annotator=lone, comparison_id=lease.assignment.comparison_id, choice="a")
        answered += 1
        refill.queue_refill(study_id=study.id, seed=answered)
    # 30 judgments pay for 15 comparisons of two: the lone annotator can give
    # each its first one, and the other 15 judgments stay reserved for second annotators.
    assert answered == 15
