"""The loop through its services: refill, lease, judge, retrain, refill again."""

from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

from activelearn import features, refill, services, tasks, triggers
from annotation.models import Candidate, Comparison, Judgment, RewardModelVersion, Study
from annotation.services import assignment_lease_next, judgment_submit


def _judge(study, user, n, choose=lambda comparison: "a"):
    """Lease and answer ``n`` comparisons as ``user``; return the judgments."""
    made = []
    for _ in range(n):
        lease = assignment_lease_next(study=study, annotator=user)
        assert lease is not None, "the queue ran dry"
        comparison = lease.assignment.comparison
        made.append(
            judgment_submit(
                study=study, annotator=user, comparison_id=comparison.id, choice=choose(comparison)
            ).judgment
        )
    return made


@pytest.mark.django_db
def test_cold_start_fills_the_queue_with_random_pairs_within_prompts(make_study):
    study = make_study(queue_target=12)
    created = refill.queue_refill(study_id=study.id, seed=0)
    assert created == 12
    comparisons = list(Comparison.objects.filter(study=study).prefetch_related("items__candidate"))
    assert {c.strategy for c in comparisons} == {"random"}
    assert all(c.model_version_id is None for c in comparisons)
    for c in comparisons:
        prompts = {item.candidate.prompt_id for item in c.items.all()}
        assert prompts == {c.prompt_id}, "a pair never mixes responses to different prompts"
    assert len({c.item_key for c in comparisons}) == 12
    # A second refill finds the queue full and adds nothing.
    assert refill.queue_refill(study_id=study.id, seed=1) == 0


@pytest.mark.django_db
def test_refill_never_queues_more_than_the_budget_pays_for(make_study):
    study = make_study(queue_target=20, budget=5)
    assert refill.queue_refill(study_id=study.id, seed=0) == 5


@pytest.mark.django_db
def test_retrain_publishes_a_version_then_refill_uses_the_model(make_study, annotators, member):
    study = make_study(queue_target=8)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge(study, annotators[0], 6)
    assert services.reward_model_fit(study_id=study.id) is not None
    version = RewardModelVersion.objects.get(study=study)
    assert version.version == 1 and version.n_judgments == 6
    folder = Path(version.checkpoint_path)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = services.reward_model_load(version)
    scores = loaded.scores(features.study_features(study_id=study.id).features)
    assert scores.shape == (Candidate.objects.filter(study=study).count(),) and np.isfinite(scores).all()
    assert version.embedder_key

    refill.queue_refill(study_id=study.id, seed=0)
    fresh = Comparison.objects.filter(study=study, status=Comparison.Status.QUEUED)
    assert fresh.exists()
    assert set(fresh.values_list("model_version_id", flat=True)) == {version.id}, "stale random picks were retired"
    assert "uncertainty" in set(fresh.values_list("strategy", flat=True))
    judged_keys = set(Comparison.objects.filter(judgments__isnull=False).values_list("item_key", flat=True))
    assert not judged_keys & set(fresh.values_list("item_key", flat=True)), "a judged pair is never queued again"
    assert all(score is not None for score in fresh.values_list("score", flat=True))


@pytest.mark.django_db
def test_model_versions_count_up_and_warm_start(make_study, annotators, member):
    study = make_study()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge(study, annotators[0], 4)
    first = services.reward_model_fit(study_id=study.id)
    _judge(study, annotators[1], 3)
    second = services.reward_model_fit(study_id=study.id)
    assert (first.version, second.version) == (1, 2)
    assert second.n_judgments == 7


@pytest.mark.django_db
def test_too_few_judgments_train_nothing(make_study, annotators, member):
    study = make_study()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge(study, annotators[0], services.MIN_JUDGMENTS_TO_TRAIN - 1)
    assert services.reward_model_fit(study_id=study.id) is None
    assert not RewardModelVersion.objects.exists()


@pytest.mark.django_db
def test_a_failed_fit_keeps_the_last_good_model_and_releases_the_claim(make_study, annotators, member, monkeypatch):
    from models_runtime import reward

    study = make_study()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge(study, annotators[0], 4)
    good = services.reward_model_fit(study_id=study.id)

    def diverge(*args, **kwargs):
        raise reward.TrainingDivergedError("loss became NaN")

    _judge(study, annotators[1], 1)
    monkeypatch.setattr(reward, "fit_reward_model", diverge)
    Study.objects.filter(id=study.id).update(retrain_claimed_at=None, retrain_owner="")
    claim = services.retrain_claim(study_id=study.id)
    with pytest.raises(reward.TrainingDivergedError):
        services.reward_model_retrain(study_id=study.id, claim=claim)
    assert list(RewardModelVersion.objects.filter(study=study)) == [good]
    study.refresh_from_db()
    assert study.retrain_claimed_at is None, "the next judgment may try again"


@pytest.mark.django_db
@pytest.mark.loop
def test_retrain_is_debounced_to_one_in_flight_per_study(make_study, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(tasks.retrain_study, "delay", lambda study_id, claim: sent.append(study_id))
    study = make_study()
    with django_capture_on_commit_callbacks(execute=True):
        assert triggers.retrain_request(study_id=study.id) is True
        assert triggers.retrain_request(study_id=study.id) is False
        assert triggers.retrain_request(study_id=study.id) is False
    assert sent == [study.id]


@pytest.mark.django_db
@pytest.mark.loop
def test_judgments_during_a_fit_make_it_run_once_more(make_study, annotators, member, monkeypatch):
    study = make_study()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge(study, annotators[0], 4)
    real_fit = services.reward_model_fit
    calls = []

    def fit_while_someone_judges(*, study_id):
        calls.append(study_id)
        version = real_fit(study_id=study_id)
        if len(calls) == 1:
            _judge(study, annotators[1], 1)  # a judgment lands while the fit finishes...
            triggers.retrain_request(study_id=study_id)  # ...and re-arms the retrain
        return version

    monkeypatch.setattr(services, "reward_model_fit", fit_while_someone_judges)
    outcome = services.reward_model_retrain(study_id=study.id)
    assert len(calls) == 2
    assert outcome.version.version == 2
    assert outcome.version.n_judgments == 5
    assert outcome.again_in is None


@pytest.mark.django_db
@pytest.mark.loop
@pytest.mark.parametrize(
    ("min_seconds", "cpu_share", "gap"),
    [(30.0, 0.0, 30.0), (30.0, 0.25, 30.0), (1.0, 0.25, 16.0), (1.0, 0.5, 8.0)],
    ids=["interval", "interval-over-share", "share", "half-share"],
)
def test_fits_are_paced_by_handing_the_rest_to_a_later_task(
    make_study,
    annotators,
    member,
    monkeypatch,
    settings,
    django_capture_on_commit_callbacks,
    min_seconds,
    cpu_share,
    gap,
):
    """Judgments during a fit, within the minimum interval: the claim is kept,
    the version just fitted goes to the refill, and the next fit is a task
    due when the interval is over (not a sleep that would hold the worker).
    The interval is the longer of the minimum and the fit's CPU time over the
    CPU share (4 CPU seconds at a share of 0.25: 16 s from its start). The
    clocks are the test's: the fit "takes" 4 s of wall and CPU time whatever
    this machine's speed."""
    settings.PREFLOOP_RETRAIN_MIN_SECONDS = min_seconds
    settings.PREFLOOP_RETRAIN_CPU_SHARE = cpu_share
    study = make_study()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge(study, annotators[0], 4)
    real_fit = services.reward_model_fit
    now, cpu = [1000.0], [50.0]
    later, refills = [], []

    def fit_while_someone_judges(*, study_id):
        version = real_fit(study_id=study_id)
        now[0] += 4.0
        cpu[0] += 4.0
        _judge(study, annotators[1], 1)
        triggers.retrain_request(study_id=study_id)
        return version

    monkeypatch.setattr(services, "reward_model_fit", fit_while_someone_judges)
    monkeypatch.setattr(services, "_clock", lambda: now[0])
    monkeypatch.setattr(services, "_cpu_clock", lambda: cpu[0])
    monkeypatch.setattr(tasks.retrain_study, "apply_async", lambda args, countdown: later.append((args, countdown)))
    monkeypatch.setattr(tasks.refill_queue, "delay", lambda study_id, claim: refills.append(study_id))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.retrain_study(study.id) == 1
    assert refills == [study.id], "the version just fitted goes to the refill"
    [((study_id, claim), countdown)] = later
    assert (study_id, countdown) == (study.id, gap - 4.0), "the next fit is due when the interval is over"
    study.refresh_from_db()
    assert study.retrain_claimed_at is not None and study.retrain_dirty, "the claim waits for the later task"
    assert study.retrain_owner == f"r-{claim}", "the later task comes back with the claim"
    assert study.retrain_claimed_at > timezone.now(), "its lease runs from the end of the wait"
    assert services.retrain_claim(study_id=study.id) is None, "no second task meanwhile"


@pytest.mark.django_db
def test_a_fit_with_nothing_new_publishes_no_twin(make_study, annotators, member):
    study = make_study()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge(study, annotators[0], 4)
    assert services.reward_model_fit(study_id=study.id).version == 1
    assert services.reward_model_fit(study_id=study.id) is None
    assert RewardModelVersion.objects.filter(study=study).count() == 1


@pytest.mark.django_db
def test_double_submit_is_a_no_op(make_study, annotators, member):
    study = make_study()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    user = annotators[0]
    comparison = assignment_lease_next(study=study, annotator=user).assignment.comparison
    first = judgment_submit(study=study, annotator=user, comparison_id=comparison.id, choice="a")
    again = judgment_submit(study=study, annotator=user, comparison_id=comparison.id, choice="b")
    assert first.created and not again.created
    assert again.judgment.pk == first.judgment.pk
    assert Judgment.objects.get().choice == "a"


@pytest.mark.django_db(transaction=True)
def test_concurrent_leases_never_hand_one_comparison_to_two_annotators(make_study, member):
    """Eight annotators lease at the same instant from threads with their own
    connections: with overlap 1 every lease is a different comparison."""
    import threading

    from django.contrib.auth import get_user_model
    from django.db import connection

    study = make_study(queue_target=20)
    users = [get_user_model().objects.create_user(f"racer{k}") for k in range(8)]
    member(study, users)
    refill.queue_refill(study_id=study.id, seed=0)
    barrier = threading.Barrier(len(users))
    leased: dict[int, int] = {}
    errors: list[BaseException] = []

    def lease(user):
        try:
            barrier.wait()
            got = assignment_lease_next(study=study, annotator=user)
            leased[user.id] = got.assignment.comparison_id
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=lease, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(leased) == len(users)
    assert len(set(leased.values())) == len(users), "one comparison went to two annotators"
    assert Comparison.objects.filter(study=study, status=Comparison.Status.LEASED).count() == len(users)


@pytest.mark.django_db
@pytest.mark.parametrize("model_type", ["linear", "mlp", "ensemble", "kernel"])
def test_each_model_type_trains_publishes_and_steers_the_queue(make_study, annotators, member, model_type):
    study = make_study(model_type=model_type, model_params={"ties": "davidson", "label_flip_rate": 0.05})
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge(study, annotators[0], 5, choose=lambda c: "tie" if c.id % 3 == 0 else "a")
    version = services.reward_model_fit(study_id=study.id)
    assert version.model_type == model_type
    loaded = services.reward_model_load(version)
    scores = loaded.scores(features.study_features(study_id=study.id).features)
    assert scores.shape == (20,) and np.isfinite(scores).all()
    assert refill.queue_refill(study_id=study.id, seed=0) > 0
    assert Comparison.objects.filter(study=study, model_version=version).exists()
    rec = version.recommendation
    # Every kind's leaderboard reads the kernel posterior (the kernel kind its own).
    assert rec["method"] == "Bayesian kernel Bradley–Terry, Laplace, evidence-tuned"  # kernel_bt.POSTERIOR_METHOD
    prompts = {str(p) for p in Candidate.objects.filter(study=study).values_list("prompt_id", flat=True)}
    assert set(rec["prompts"]) == prompts
    for prompt_id, entry in rec["prompts"].items():
        board = entry["leaderboard"]
        assert entry["best"] == board[0]["candidate"]
        # Ranked by posterior mean: the top is the Bayes pick for expected regret.
        assert [r["mean"] for r in board] == sorted((r["mean"] for r in board), reverse=True)
        assert set(
            Candidate.objects.filter(id__in=[r["candidate"] for r in board]).values_list("prompt_id", flat=True)
        ) == {int(prompt_id)}
        assert abs(sum(r["p_best"] for r in board) - 1.0) < 1e-3
        versus = entry["runner_up"]
        assert versus["candidate"] == board[1]["candidate"]
        assert 0.0 <= versus["low"] <= versus["preferred"] <= versus["high"] <= 1.0


@pytest.mark.django_db
def test_the_refill_conditions_the_model_on_training_judgments_only(make_study, annotators, member, monkeypatch):
    """The kernel model's draws condition on the judgments handed to it at refill
    time: those must be the training set, never the fixed evaluation set whose
    figures the study page shows as held out."""
    study = make_study(model_type="kernel", strategy="double_ts", evaluation_rate=0.5)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge(study, annotators[0], 12)
    assert Judgment.objects.filter(study=study, evaluation=True).exists()
    assert services.reward_model_fit(study_id=study.id) is not None
    asked = []
    real = features.study_judged_preferences

    def spy(**kwargs):
        judged = real(**kwargs)
        asked.append((kwargs.get("evaluation"), len(judged.data)))
        return judged

    monkeypatch.setattr(features, "study_judged_preferences", spy)
    assert refill.queue_refill(study_id=study.id, seed=0) >= 0
    n_train = Judgment.objects.filter(study=study, evaluation=False).count()
    assert asked == [(False, n_train)]


@pytest.mark.django_db
def test_model_options_are_validated_with_a_clear_message(make_study):
    from django.core.exceptions import ValidationError

    study = make_study(model_params={"label_flip_rate": 0.7, "n_membres": 3})
    with pytest.raises(ValidationError) as info:
        study.full_clean()
    message = " ".join(info.value.messages)
    assert "label_flip_rate" in message and "[0, 0.5)" in message
    assert "unknown option “n_membres”" in message


@pytest.mark.django_db
def test_rankings_become_pairs_plackett_luce_rankings_and_tied_groups(make_study, annotators):
    study = make_study()
    ids = list(Candidate.objects.filter(study=study).order_by("id").values_list("id", flat=True))[:5]
    refill.queue_refill(study_id=study.id, seed=0)
    comparison = Comparison.objects.filter(study=study).first()
    a, b, c, d, e = ids
    for user, ranking in zip(annotators, [[a, b], [[c, d]], [a, c, e]], strict=False):
        Judgment.objects.create(study=study, comparison=comparison, annotator=user, choice="a", ranking=ranking)
    index = {cid: row for row, cid in enumerate(ids)}
    data = features.study_preferences(study_id=study.id, index=index)
    assert (data.n_pairs, data.n_rankings) == (2, 1)
    assert data.pair_outcome.tolist() == [1.0, 0.5]
    assert data.rank_items[0].tolist() == [0, 2, 4]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("strategy", "model_type"),
    [
        ("least_compared", "mlp"),
        ("apohf", "mlp"),
        ("apohf", "linear"),
        ("apohf", "kernel"),
        ("double_ts", "ensemble"),
        ("infomax", "ensemble"),
        ("eubo", "kernel"),
    ],
)
def test_each_strategy_steers_the_queue_with_its_model(make_study, annotators, member, strategy, model_type):
    study = make_study(model_type=model_type, strategy=strategy, model_params={"n_members": 4})
    study.full_clean()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge(study, annotators[0], 6)
    version = services.reward_model_fit(study_id=study.id)
    assert refill.queue_refill(study_id=study.id, seed=1) > 0
    chosen = Comparison.objects.filter(study=study, model_version=version, strategy=strategy)
    assert chosen.exists(), list(Comparison.objects.filter(study=study).values_list("strategy", flat=True))
    assert all(c.score is not None for c in chosen)


@pytest.mark.django_db
def test_a_strategy_its_model_cannot_serve_is_refused_and_falls_back_to_random(make_study, annotators, member):
    from django.core.exceptions import ValidationError

    study = make_study(model_type="mlp", strategy="double_ts")
    with pytest.raises(ValidationError, match="ensemble"):
        study.full_clean()
    study.strategy_params = {"max_redraw": 3}
    with pytest.raises(ValidationError, match="max_redraw"):
        study.full_clean()
    study.strategy_params = {}
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge(study, annotators[0], 6)
    services.reward_model_fit(study_id=study.id)
    assert refill.queue_refill(study_id=study.id, seed=1) > 0
    assert not Comparison.objects.filter(study=study, strategy="double_ts").exists()


def _rank(study, user, n, order=lambda items: [[p] for p in range(len(items))]):
    """Lease and rank ``n`` lists as ``user``, ``order`` giving position groups best first."""
    made = []
    for _ in range(n):
        lease = assignment_lease_next(study=study, annotator=user)
        assert lease is not None, "the queue ran dry"
        comparison = lease.assignment.comparison
        items = list(comparison.items.order_by("position").values_list("candidate_id", flat=True))
        made.append(
            judgment_submit(study=study, annotator=user, comparison_id=comparison.id, ranking=order(items)).judgment
        )
    return made


@pytest.mark.django_db
def test_listwise_cold_start_queues_lists_of_k_distinct_items_within_one_prompt(make_study):
    study = make_study(mode="listwise", list_size=3, queue_target=12)
    created = refill.queue_refill(study_id=study.id, use_model=False, seed=0)
    # Five prompts of four candidates hold only 5 × C(4, 3) = 20 distinct lists.
    assert created == 12
    keys = set()
    for comparison in Comparison.objects.filter(study=study).prefetch_related("items__candidate"):
        items = [item.candidate for item in comparison.items.all()]
        assert len(items) == 3 and len({c.id for c in items}) == 3
        assert {c.prompt_id for c in items} == {comparison.prompt_id}
        keys.add(comparison.item_key)
    assert len(keys) == 12, "a list was queued twice"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("strategy", "model_type"),
    [("uncertainty", "mlp"), ("apohf", "mlp"), ("apohf", "kernel"), ("double_ts", "ensemble")],
)
def test_listwise_rankings_train_plackett_luce_and_the_strategy_picks_lists(
    make_study, annotators, member, strategy, model_type, monkeypatch
):
    # Six rankings are too few for a validation split that decides anything: which of
    # them it holds out follows a hash of the study's id, and on some ids the fit
    # legitimately fails to beat its start on five held-out judgments and is not
    # published. This test is about rankings and lists, so the fit trains on all.
    monkeypatch.setattr(services, "_validation_rows", lambda **kwargs: np.zeros(0, dtype=np.int64))
    study = make_study(
        mode="listwise", list_size=3, strategy=strategy, model_type=model_type, model_params={"n_members": 4}
    )
    study.full_clean()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    judgments = _rank(study, annotators[0], 3)
    judgments += _rank(study, annotators[1], 3, order=lambda items: [[0, 1], [2]])
    assert all(j.choice == "ranked" for j in judgments)
    assert judgments[-1].ranking[0] == judgments[-1].shown_order[:2], "positions are positions on screen"
    feats = features.study_features(study_id=study.id)
    data = features.study_preferences(study_id=study.id, index=feats.index())
    assert data.n_rankings == 3, "strict lists are Plackett–Luce rankings"
    assert data.n_pairs == 3 * (1 + 2), "tied groups become the pairs they imply"
    version = services.reward_model_fit(study_id=study.id)
    assert version is not None
    refill.queue_refill(study_id=study.id, seed=1)
    chosen = Comparison.objects.filter(study=study, model_version=version, strategy=strategy)
    assert chosen.exists(), list(Comparison.objects.filter(study=study).values_list("strategy", flat=True))
    assert all(c.items.count() == 3 for c in chosen)


def _refill_paused_while_choosing(study, monkeypatch):
    """Start a refill in a thread and hold it inside the choosing step (where a
    strategy on a large study spends seconds); returns (thread, release, errors)."""
    import threading

    from django.db import connection

    choosing, release = threading.Event(), threading.Event()
    real_picks = refill._strategy_picks
    errors: list[BaseException] = []

    def slow_picks(**kwargs):
        picks = real_picks(**kwargs)
        choosing.set()
        assert release.wait(30), "the test never released the refill"
        return picks

    monkeypatch.setattr(refill, "_strategy_picks", slow_picks)

    def run_refill():
        try:
            refill.queue_refill(study_id=study.id, seed=1)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run_refill)
    thread.start()
    assert choosing.wait(30)
    return thread, release, errors


def _fail_fast_on_locks():
    """Make a blocked write raise at once instead of waiting (PostgreSQL)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '1s'")


@pytest.mark.django_db(transaction=True)
def test_answers_and_leases_do_not_wait_for_a_refill_choosing_its_picks(make_study, annotators, member, monkeypatch):
    """The refill chooses without holding locks: while it runs the strategy,
    an annotator leases, answers, and the loop is notified (all of
    which write the study's rows). Before, they waited for the whole refill."""
    from django.db import connection

    from activelearn.triggers import loop_notify_judgment

    study = make_study(queue_target=4)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    Study.objects.filter(id=study.id).update(queue_target=10)  # the next refill has room
    thread, release, errors = _refill_paused_while_choosing(study, monkeypatch)
    try:
        _fail_fast_on_locks()
        made = _judge(study, annotators[0], 2)
        loop_notify_judgment(study_id=study.id, queue_low_water=study.queue_low_water)
        assert len(made) == 2
    finally:
        release.set()
        thread.join()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_overlapping_refills_queue_each_item_set_once_and_respect_the_target(make_study, monkeypatch):
    """A refill whose picks were chosen before another refill committed keeps
    only what is still new and still fits."""
    study = make_study(queue_target=10)
    thread, release, errors = _refill_paused_while_choosing(study, monkeypatch)
    monkeypatch.undo()  # the second refill runs at full speed
    assert refill.queue_refill(study_id=study.id, seed=2) == 10
    release.set()
    thread.join()
    assert not errors, errors
    keys = list(Comparison.objects.filter(study=study).values_list("item_key", flat=True))
    assert len(keys) == 10 and len(set(keys)) == 10


def test_worker_processes_yield_the_cpu_to_the_web(monkeypatch, settings):
    """Each worker process lowers its own priority and leaves a core's worth of torch threads."""
    import torch

    from webapp import celery as celery_app

    niced, threads = [], []
    monkeypatch.setattr(celery_app.os, "nice", niced.append)
    monkeypatch.setattr(celery_app.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    settings.PREFLOOP_WORKER_NICE, settings.PREFLOOP_WORKER_TORCH_THREADS = 10, 0
    celery_app._yield_cpu_to_web()
    assert niced == [10] and threads == [3]
    settings.PREFLOOP_WORKER_NICE, settings.PREFLOOP_WORKER_TORCH_THREADS = 0, 2
    celery_app._yield_cpu_to_web()
    assert niced == [10] and threads == [3, 2]
    # Opt-in on Linux: the worker runs only on CPU nobody else wants.
    policies = []
    monkeypatch.setattr(celery_app.os, "SCHED_IDLE", 5, raising=False)
    monkeypatch.setattr(
        celery_app.os, "sched_setscheduler", lambda pid, policy, param: policies.append(policy), raising=False
    )
    celery_app._yield_cpu_to_web()
    assert policies == []
    settings.PREFLOOP_WORKER_SCHED_IDLE = True
    celery_app._yield_cpu_to_web()
    assert policies == [5]


@pytest.mark.django_db
@pytest.mark.loop
def test_an_answer_that_finds_the_work_claimed_costs_one_read(
    make_study, monkeypatch, django_capture_on_commit_callbacks, settings
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    sent = []
    monkeypatch.setattr(tasks.retrain_study, "delay", lambda study_id, claim: sent.append(("retrain", study_id)))
    monkeypatch.setattr(tasks.refill_queue, "delay", lambda study_id, claim: sent.append(("refill", study_id)))
    study = make_study()
    refill.queue_refill(study_id=study.id, use_model=False, seed=0)
    deep = Comparison.objects.filter(study=study, status="queued").count()
    now = timezone.now()
    Study.objects.filter(id=study.id).update(
        retrain_dirty=True, retrain_claimed_at=now, retrain_owner="r-fit", queue_low_water=1
    )

    def notify() -> int:
        with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as queries:
            triggers.loop_notify_judgment(study_id=study.id)
        return len(queries)

    # Marked out of date, its retrain running, the queue deep: one read, nothing sent.
    assert deep >= 1 and notify() == 1 and sent == []
    # A fit cleared the mark (it then read the judgments): the answer marks it again,
    # and the running fit's claim is left alone.
    Study.objects.filter(id=study.id).update(retrain_dirty=False)
    notify()
    study.refresh_from_db()
    assert study.retrain_dirty and study.retrain_owner == "r-fit" and sent == []
    # The fit's worker died: its claim expired, so the answer takes it over and sends the retrain.
    stale = now - timezone.timedelta(seconds=settings.PREFLOOP_CLAIM_LEASE_SECONDS + 1)
    Study.objects.filter(id=study.id).update(retrain_claimed_at=stale)
    notify()
    assert sent == [("retrain", study.id)]
    # The queue ran low with no refill claimed: a refill is sent; claimed, it is not sent twice.
    Study.objects.filter(id=study.id).update(queue_low_water=deep + 1)
    notify()
    notify()
    assert sent == [("retrain", study.id), ("refill", study.id)]
