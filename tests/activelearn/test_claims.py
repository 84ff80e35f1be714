"""Claims that expire with their worker, the sweep that restarts a stopped loop,
and requests that never pile up tasks (``activelearn.claims``)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from activelearn import claims, embedding, services, tasks, triggers
from annotation import loop
from annotation.models import EmbeddingProgress, Study


def _age(study: Study, field: str, seconds: float) -> None:
    """Move a claim's timestamp into the past: a worker that stopped beating."""
    Study.objects.filter(id=study.id).update(**{field: timezone.now() - timedelta(seconds=seconds)})


@pytest.fixture
def enqueued(monkeypatch) -> dict[str, list[tuple[int, str]]]:
    """What the triggers would send to the broker, per task."""
    sent: dict[str, list[tuple[int, str]]] = {"retrain": [], "refill": [], "embed": []}
    for name, task in (("retrain", tasks.retrain_study), ("refill", tasks.refill_queue), ("embed", tasks.embed_study)):
        monkeypatch.setattr(task, "delay", lambda study_id, claim, name=name: sent[name].append((study_id, claim)))
    return sent


@pytest.mark.django_db
@pytest.mark.loop
def test_a_retrain_whose_worker_died_is_requested_again_by_the_sweep(
    make_study, enqueued, settings, django_capture_on_commit_callbacks
):
    settings.PREFLOOP_CLAIM_LEASE_SECONDS = 30
    study = make_study()
    with django_capture_on_commit_callbacks(execute=True):
        assert triggers.retrain_request(study_id=study.id)
    [(_, first)] = enqueued["retrain"]
    assert services.RETRAIN.start(study.id, first) == first  # the task starts, then its worker is SIGKILLed

    _age(study, "retrain_claimed_at", 15)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.loop_sweep().retrain == [], "a claim within its lease is left alone"
        assert not triggers.retrain_request(study_id=study.id), "nor taken by the next judgment"

    _age(study, "retrain_claimed_at", 31)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.loop_sweep().retrain == [study.id]
    [_, (_, second)] = enqueued["retrain"]
    assert second != first
    assert services.RETRAIN.start(study.id, second) == second
    assert services.RETRAIN.start(study.id, first) is None, "the dead run's redelivered message does nothing"


@pytest.mark.django_db
@pytest.mark.loop
def test_a_queued_claim_whose_message_was_lost_is_requested_again(
    make_study, enqueued, settings, django_capture_on_commit_callbacks
):
    """A Redis restarted without persistence forgets the messages it held: a
    claim that stayed queued past PREFLOOP_CLAIM_QUEUED_SECONDS is requested again."""
    settings.PREFLOOP_CLAIM_QUEUED_SECONDS = 30
    study = make_study()
    with django_capture_on_commit_callbacks(execute=True):
        triggers.refill_request(study_id=study.id)
    _age(study, "refill_claimed_at", 15)
    assert services.loop_sweep().refill == []
    _age(study, "refill_claimed_at", 31)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.loop_sweep().refill == [study.id]
    assert len(enqueued["refill"]) == 2


@pytest.mark.django_db
@pytest.mark.loop
def test_the_webs_quick_refill_leaves_the_workers_claim_alone(make_study, enqueued, django_capture_on_commit_callbacks):
    """The security test counted 65 refill tasks queued for one study: the web's
    synchronous refill freed the worker's claim, so every answer enqueued another."""
    study = make_study(queue_target=6)
    with django_capture_on_commit_callbacks(execute=True):
        assert triggers.refill_request(study_id=study.id)
        assert loop.get().refill_now(study_id=study.id) > 0
        assert not triggers.refill_request(study_id=study.id)
        assert not triggers.refill_request(study_id=study.id)
    assert len(enqueued["refill"]) == 1

    [(_, claim)] = enqueued["refill"]
    assert tasks.refill_queue(study.id, claim) == 0  # the queue is full already
    with django_capture_on_commit_callbacks(execute=True):
        assert triggers.refill_request(study_id=study.id), "the task released its own claim"


@pytest.mark.django_db
@pytest.mark.loop
def test_of_the_messages_for_one_queued_claim_the_first_to_arrive_runs(
    make_study, enqueued, settings, django_capture_on_commit_callbacks
):
    """A queue that is only slow must not starve a study: the sweep's second
    message never supersedes the first, whichever a worker starts first runs,
    and the other finds the work done."""
    settings.PREFLOOP_CLAIM_QUEUED_SECONDS = 30
    study = make_study(queue_target=6)
    with django_capture_on_commit_callbacks(execute=True):
        triggers.refill_request(study_id=study.id)
    _age(study, "refill_claimed_at", 31)
    with django_capture_on_commit_callbacks(execute=True):
        services.loop_sweep()
    [(_, first), (_, second)] = enqueued["refill"]
    assert services.REFILL.start(study.id, first) == first, "the older message, at last delivered, runs"
    assert services.REFILL.start(study.id, second) is None, "while it runs, the newer one exits"
    services.REFILL.release(study.id, first)
    assert tasks.refill_queue(study.id, second) == 6, "after it, the newer one does what is left"
    assert tasks.refill_queue(study.id, first) == 0


@pytest.mark.django_db
@pytest.mark.loop
def test_a_broker_outage_gives_the_claim_back_and_raises_nothing(
    make_study, monkeypatch, caplog, django_capture_on_commit_callbacks, enqueued, settings
):
    study = make_study()
    now = [1000.0]
    monkeypatch.setattr(triggers, "clock", lambda: now[0])
    tries = []

    def broker_down(*args, **kwargs):
        tries.append(args)
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.retrain_study, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        assert triggers.retrain_request(study_id=study.id)
    study.refresh_from_db()
    assert study.retrain_claimed_at is None and study.retrain_owner == "" and study.retrain_dirty
    assert "could not enqueue activelearn.tasks.retrain_study" in caplog.text

    # Within the back-off this process does not wait on the broker again: the claim goes back at once.
    now[0] += settings.PREFLOOP_BROKER_BACKOFF_SECONDS - 1
    with django_capture_on_commit_callbacks(execute=True):
        assert triggers.retrain_request(study_id=study.id)
    study.refresh_from_db()
    assert len(tries) == 1 and study.retrain_owner == "", "not tried, and the claim given back"

    now[0] += 2
    sent = []
    monkeypatch.setattr(tasks.retrain_study, "delay", lambda study_id, claim: sent.append(study_id))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.loop_sweep().retrain == [study.id], "the broker is back: the sweep asks again"
    assert sent == [study.id]
    assert triggers._broker_failed_at is None, "a send that worked ends the back-off"


@pytest.mark.django_db
@pytest.mark.loop
def test_an_embedding_whose_worker_died_is_requested_again(
    make_study, enqueued, settings, django_capture_on_commit_callbacks
):
    settings.PREFLOOP_CLAIM_LEASE_SECONDS = 30
    study = make_study(embedded=False)
    with django_capture_on_commit_callbacks(execute=True):
        triggers.embed_request(study_id=study.id)
    [(_, claim)] = enqueued["embed"]
    embedding.EMBED.start(study.id, claim)
    EmbeddingProgress.objects.filter(study=study).update(claimed_at=timezone.now() - timedelta(seconds=31))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.loop_sweep().embed == [study.id]
    assert len(enqueued["embed"]) == 2


@pytest.mark.django_db
def test_paused_studies_are_not_swept(make_study, settings):
    settings.PREFLOOP_CLAIM_LEASE_SECONDS = 30
    study = make_study()
    Study.objects.filter(id=study.id).update(status=Study.Status.PAUSED, retrain_dirty=True)
    assert services.loop_sweep().retrain == []


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_keeps_a_running_claim_fresh_until_the_block_ends(make_study, settings):
    """The thread beats on its own connection, so it needs committed rows (a
    transactional test). The interval is tiny; the test waits for the beat
    itself, with a generous deadline, never for a fixed time."""
    settings.PREFLOOP_CLAIM_LEASE_SECONDS = 30
    study = make_study()
    token = services.RETRAIN.start(study.id, None)
    _age(study, "retrain_claimed_at", 600)
    stale = Study.objects.values_list("retrain_claimed_at", flat=True).get(id=study.id)
    with claims.heartbeat(services.RETRAIN, study.id, token, interval=0.01):
        deadline = time.monotonic() + 30
        while Study.objects.values_list("retrain_claimed_at", flat=True).get(id=study.id) == stale:
            assert time.monotonic() < deadline, "the heartbeat never refreshed the claim"
            time.sleep(0.01)
    assert not Study.objects.filter(services.RETRAIN.expired(), id=study.id).exists()


@pytest.mark.django_db
def test_a_retrain_that_lost_its_claim_to_another_task_does_not_fit(make_study, monkeypatch):
    study = make_study()
    other = services.RETRAIN.start(study.id, None)
    fits = []
    monkeypatch.setattr(services, "reward_model_fit", lambda *, study_id: fits.append(study_id))
    assert services.reward_model_retrain(study_id=study.id, claim="not-the-owner").version is None
    assert fits == []
    assert Study.objects.get(id=study.id).retrain_owner == f"r-{other}"
    with pytest.raises(Study.DoesNotExist):
        services.reward_model_retrain(study_id=study.id + 999, claim="x")


def test_the_sweep_runs_on_beat():
    from django.conf import settings

    from webapp.celery import app

    schedule = settings.CELERY_BEAT_SCHEDULE["loop-sweep"]
    assert schedule["task"] == tasks.loop_sweep.name
    assert schedule["task"] in app.tasks
    assert schedule["schedule"] == settings.PREFLOOP_SWEEP_SECONDS
