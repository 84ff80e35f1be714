"""Shared fixtures: users in roles, a study with a queue, and a quiet active-learning loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.core.cache import cache
from django.test import Client

from annotation.models import Membership, Study
from tests.factories import MembershipFactory, UserFactory, study_with_queue


@dataclass
class LoopCalls:
    """Study ids for which a retrain, a refill or an embedding was requested during the test."""

    retrain: list[int] = field(default_factory=list)
    refill: list[int] = field(default_factory=list)
    embed: list[int] = field(default_factory=list)


@pytest.fixture(autouse=True)
def loop_calls(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> LoopCalls:
    """Keep ordinary tests from starting Celery work; record what would have started.

    Judgments, imports and the annotate page ask the loop for retrains,
    refills and embedding on commit. Those requests are recorded here instead of enqueuing tasks, so no
    broker is needed and no background fit runs. Tests marked ``worker`` (a
    real Celery worker) or ``loop`` (the real triggers under test) keep the
    real functions. The cheap synchronous ``queue_refill`` stays real.
    """
    calls = LoopCalls()
    if any(request.node.get_closest_marker(name) is not None for name in ("worker", "loop")):
        return calls
    from activelearn import triggers

    def fake_retrain_request(*, study_id: int) -> bool:
        calls.retrain.append(study_id)
        return True

    def fake_refill_request(*, study_id: int) -> bool:
        calls.refill.append(study_id)
        return True

    def fake_embed_request(*, study_id: int) -> bool:
        calls.embed.append(study_id)
        return True

    monkeypatch.setattr(triggers, "retrain_request", fake_retrain_request)
    monkeypatch.setattr(triggers, "refill_request", fake_refill_request)
    monkeypatch.setattr(triggers, "embed_request", fake_embed_request)
    return calls


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    """Each test starts with an empty cache: rate-limit counts and cached dashboard
    figures outlive a test's transaction otherwise."""
    cache.clear()


@pytest.fixture(autouse=True)
def claims_outlive_slow_machines(settings) -> None:
    """A claim's heartbeat thread cannot write inside a test's transaction, so a
    fit slower than the 30 s lease on a busy machine would look like a dead
    worker's. Tests of expiry set the lease they need."""
    settings.PREFLOOP_CLAIM_LEASE_SECONDS = 3600.0


@pytest.fixture(autouse=True)
def broker_not_backing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test whose broker failed leaves this process skipping sends for a while
    (``activelearn.triggers``' back-off); each test starts without it."""
    from activelearn import triggers

    monkeypatch.setattr(triggers, "_broker_failed_at", None)


@pytest.fixture(autouse=True)
def fast_password_hasher(settings) -> None:
    """PBKDF2 is slow on purpose; tests log users in often and need no strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def unpaced_retrains(settings) -> None:
    """Refit at once when judgments arrived during a fit (the pacing has its own test),
    and whenever a training judgment is new (the cadence has its own tests)."""
    settings.PREFLOOP_RETRAIN_MIN_SECONDS = 0.0
    settings.PREFLOOP_RETRAIN_MIN_NEW, settings.PREFLOOP_RETRAIN_GROWTH = 1, 0.0


@pytest.fixture
def study(db) -> Study:
    """An active pairwise study: 3 prompts × 3 candidates, 9 comparisons queued."""
    return study_with_queue(n_prompts=3, n_candidates=3)


@pytest.fixture
def make_member(db) -> Callable[..., object]:
    """Make a user with a role in a study: ``make_member(study, role="annotator")``."""

    def make(study: Study, role: str = Membership.Role.ANNOTATOR, **user_fields):
        user = UserFactory(**user_fields)
        MembershipFactory(user=user, study=study, role=role)
        return user

    return make


@pytest.fixture
def annotator(study: Study, make_member):
    return make_member(study, Membership.Role.ANNOTATOR, username="ann")


@pytest.fixture
def researcher(study: Study, make_member):
    return make_member(study, Membership.Role.RESEARCHER, username="res")


@pytest.fixture
def outsider(db):
    """A logged-in user with no membership anywhere."""
    return UserFactory(username="outsider")


@pytest.fixture
def client_for() -> Callable[[object], Client]:
    """A test client logged in as the given user (a fresh client per call)."""

    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make
