"""Shared fixtures: users in roles, a study with a queue, a quiet active-learning loop,
and a bucket on a real S3 server (moto's server mode) for the object-store tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
    settings.PREFLOOP_RETRAIN_CPU_SHARE = 0.0
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


@dataclass(frozen=True)
class S3Bucket:
    """An empty bucket on the test S3 server (``s3_bucket``): a boto3 ``client``,
    the bucket's ``name`` and the server's ``endpoint``."""

    client: Any
    name: str
    endpoint: str

    def object_keys(self) -> set[str]:
        return {
            item["Key"]
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
            for item in page.get("Contents", [])
        }

    def storage(self, location: str) -> dict[str, Any]:
        """A ``STORAGES`` entry for this bucket under ``location``, as the
        settings write it for ``PREFLOOP_STORAGE=s3``."""
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": self.name,
                "endpoint_url": self.endpoint,
                "region_name": "us-east-1",
                "location": location,
                "default_acl": None,
                "file_overwrite": False,
                "max_memory_size": 1 << 20,
            },
        }


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 server for the session: moto's server mode on 127.0.0.1, over HTTP."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Bucket]:
    """A fresh, empty bucket on that server (emptied and deleted afterwards), with
    credentials in boto3's environment variables."""
    boto3 = pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = S3Bucket(client=client, name="prefloop-test", endpoint=s3_endpoint)
    client.create_bucket(Bucket=bucket.name)
    yield bucket
    for key in bucket.object_keys():
        client.delete_object(Bucket=bucket.name, Key=key)
    client.delete_bucket(Bucket=bucket.name)
