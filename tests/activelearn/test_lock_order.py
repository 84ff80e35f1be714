"""The loop's locked steps never make an annotator wait.

A refill queueing its picks and a fit publishing its version each hold the
study row for a moment. They lock it ``FOR NO KEY UPDATE``: a lease or an
answer inserts rows that point at the study, and PostgreSQL checks such a
foreign key with a ``FOR KEY SHARE`` lock on the study row, which a plain
``FOR UPDATE`` blocks. With ``FOR UPDATE`` every answer queued behind each
refill, and an answer that held its comparison's lock while waiting closed a
deadlock with the refill (PostgreSQL logged five in one load run).

Each test holds the lock in a thread, stopped inside the locked step, and
answers meanwhile with a ``lock_timeout``: an answer that waited on the study
row fails with "canceling statement due to lock timeout".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, connections

from activelearn import refill, services
from annotation.services import assignment_lease_next, judgment_submit

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row lock modes are PostgreSQL's"),
]


@contextmanager
def _held_inside(
    monkeypatch: pytest.MonkeyPatch, module: object, name: str, run: Callable[[], object]
) -> Iterator[None]:
    """Run ``run`` in a thread until it calls ``module.name`` (inside its locked
    transaction); keep it there for the block, then let it finish."""
    reached, release, failed = threading.Event(), threading.Event(), []
    original = getattr(module, name)

    def stop_here(*args, **kwargs):
        reached.set()
        assert release.wait(60), "the test never let the locked step go on"
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, stop_here)

    def body() -> None:
        try:
            run()
        except BaseException as exc:  # reported to the test below
            failed.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    try:
        assert reached.wait(60), f"the locked step never reached {name}: {failed}"
        yield
    finally:
        release.set()
        thread.join(60)
    assert not failed, failed


def _answer_one(study, user) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '5s'")
    try:
        lease = assignment_lease_next(study=study, annotator=user)
        assert lease is not None
        judgment_submit(study=study, annotator=user, comparison_id=lease.assignment.comparison_id, choice="a")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")


def test_an_answer_goes_through_while_a_refill_queues_its_picks(make_study, member, annotators, monkeypatch):
    study = make_study(queue_target=6)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    study.queue_target = 12
    study.save(update_fields=["queue_target"])
    # _generation_priorities runs only in the locked half, with the study row held.
    with _held_inside(
        monkeypatch, refill, "_generation_priorities", lambda: refill.queue_refill(study_id=study.id, seed=1)
    ):
        _answer_one(study, annotators[0])


def test_an_answer_goes_through_while_a_fit_publishes(make_study, member, annotators, judge, monkeypatch):
    study = make_study(queue_target=12)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    judge(study, annotators[0], 4)
    with _held_inside(
        monkeypatch, services.checkpoints, "publish", lambda: services.reward_model_fit(study_id=study.id)
    ):
        _answer_one(study, annotators[1])
