"""Webhooks (issue 18): signed JSON POSTs to a real HTTP receiver on 127.0.0.1,
judgments reported in batches by the sweep, retries with backoff, and the
events of a published model, a reached budget and a closed study."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotation.models import Membership, RewardModelVersion, Study, Webhook, WebhookDelivery
from annotation.services import assignment_lease_next, judgment_submit, study_status_set
from annotation.services import webhooks as service
from tests.factories import UserFactory, study_with_queue

pytestmark = pytest.mark.django_db


class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers with the
    next scripted status (200 once the script is used up)."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.statuses: deque[int] = deque()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                status = receiver.statuses.popleft() if receiver.statuses else 200
                reply = b'{"ok": true}' if status < 300 else b"not now"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/prefloop"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def sent(monkeypatch):
    """Deliveries are sent at once (the worker's part, in the test), attempt by attempt."""
    from annotation import tasks

    waits: list[float] = []

    def deliver(delivery_id: int) -> None:
        wait = service.delivery_attempt(delivery_id=delivery_id)
        if wait is not None:
            waits.append(wait)

    monkeypatch.setattr(tasks.webhook_deliver, "delay", deliver)
    return waits


def verified(secret: str, request: dict) -> dict:
    """The body, after checking the signature header as a receiver would."""
    header = request["headers"]["X-Prefloop-Signature"]
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    return json.loads(request["body"])


def answer(study: Study, person, n: int) -> None:
    for _ in range(n):
        lease = assignment_lease_next(study=study, annotator=person)
        judgment_submit(study=study, annotator=person, comparison_id=lease.assignment.comparison_id, choice="a")


def test_a_webhook_is_checked_before_it_is_kept() -> None:
    study = study_with_queue(n_prompts=1, n_candidates=3)

    def refused(**fields) -> dict:
        with pytest.raises(ValidationError) as caught:
            service.webhook_create(
                study=study, **{"url": "https://example.org/h", "events": ["study.closed"], **fields}
            )
        return caught.value.message_dict

    assert "url" in refused(url="ftp://example.org/h")
    assert "metadata" in refused(url="http://169.254.169.254/latest/")["url"][0]
    assert "events" in refused(events=[])
    assert "events" in refused(events=["judgment.deleted"])
    hook = service.webhook_create(
        study=study, url=" https://example.org/h ", events=["study.closed", "model.published"]
    )
    assert hook.url == "https://example.org/h" and len(hook.secret) == 64
    assert hook.events == ["model.published", "study.closed"]


def test_new_judgments_are_reported_in_signed_batches_and_never_twice(
    receiver, sent, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    study = study_with_queue(n_prompts=3, n_candidates=3)
    person = UserFactory()
    answer(study, person, 1)  # before the webhook: not reported to it
    hook = service.webhook_create(study=study, url=receiver.url, events=["judgments.received"])
    answer(study, person, 3)
    monkeypatch.setattr(service, "BATCH_MOST", 2)
    with django_capture_on_commit_callbacks(execute=True):
        assert service.webhooks_sweep() == 2
    assert len(receiver.received) == 2 and sent == []
    first, second = (verified(hook.secret, r) for r in receiver.received)
    assert first["event"] == "judgments.received" and first["study"] == study.slug
    assert (first["data"]["count"], first["data"]["more"], second["data"]["count"], second["data"]["more"]) == (
        2, True, 1, False,
    )  # fmt: skip
    judgments = first["data"]["judgments"] + second["data"]["judgments"]
    assert len({j["id"] for j in judgments}) == 3
    assert {j["annotator"] for j in judgments} != {person.username}, "annotators are named by pseudonym"
    assert {j["annotator_kind"] for j in judgments} == {"person"}
    headers = receiver.received[0]["headers"]
    assert headers["X-Prefloop-Event"] == "judgments.received" and headers["Content-Type"] == "application/json"
    assert WebhookDelivery.objects.filter(webhook=hook, status="delivered").count() == 2
    with django_capture_on_commit_callbacks(execute=True):
        assert service.webhooks_sweep() == 0, "nothing new: nothing sent"
    assert len(receiver.received) == 2


def test_a_failed_delivery_is_tried_again_with_growing_pauses_and_can_be_sent_again(
    receiver, django_capture_on_commit_callbacks
) -> None:
    study = study_with_queue(n_prompts=1, n_candidates=3)
    hook = service.webhook_create(study=study, url=receiver.url, events=["model.published"])
    with django_capture_on_commit_callbacks(execute=False):
        (delivery_id,) = service.event_emit(study_id=study.id, event="model.published", data={"version": 1})
    receiver.statuses.extend([500, 503])
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    waits = [service.delivery_attempt(delivery_id=delivery_id, now=now) for _ in range(3)]
    assert waits == [30.0, 60.0, None]
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts, delivery.response_status, delivery.error) == ("delivered", 3, 200, "")
    bodies = [r["body"] for r in receiver.received]
    assert len({json.loads(b)["delivery"] for b in bodies}) == 1, "the same delivery id on every try"
    assert service.delivery_attempt(delivery_id=delivery_id) is None and len(receiver.received) == 3

    # A receiver that never answers 2xx: failed after MAX_ATTEMPTS, with the reason; then sent again on request.
    receiver.statuses.extend([500] * service.MAX_ATTEMPTS)
    with django_capture_on_commit_callbacks(execute=False):
        (other,) = service.event_emit(study_id=study.id, event="model.published", data={"version": 2})
    waits = [service.delivery_attempt(delivery_id=other) for _ in range(service.MAX_ATTEMPTS)]
    assert waits[:-1] == [min(30.0 * 2**k, 3600.0) for k in range(service.MAX_ATTEMPTS - 1)] and waits[-1] is None
    failed = WebhookDelivery.objects.get(pk=other)
    assert failed.status == "failed" and failed.response_status == 500 and "HTTP 500" in failed.error
    with pytest.raises(ValidationError):
        service.delivery_retry(delivery=delivery)
    again = service.delivery_retry(delivery=failed)
    assert (again.status, again.attempts) == ("pending", 0)
    assert service.delivery_attempt(delivery_id=other) is None
    assert WebhookDelivery.objects.get(pk=other).status == "delivered"

    # Nothing listening at all: the connection error is the reason.
    hook.url = "http://127.0.0.1:9/closed"
    hook.save()
    with django_capture_on_commit_callbacks(execute=False):
        (refused,) = service.event_emit(study_id=study.id, event="model.published", data={"version": 3})
    assert service.delivery_attempt(delivery_id=refused) == 30.0
    assert "Connection refused" in WebhookDelivery.objects.get(pk=refused).error


def test_a_published_model_a_reached_budget_and_a_closed_study_are_sent(
    receiver, sent, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    from activelearn import services as loop_services
    from activelearn import tasks

    study = study_with_queue(n_prompts=3, n_candidates=3, budget=2)
    hook = service.webhook_create(study=study, url=receiver.url, events=["model.published", "budget.reached",
                                                                          "study.closed"])  # fmt: skip
    quiet = service.webhook_create(study=study, url=receiver.url, events=["judgments.received"])
    version = RewardModelVersion.objects.create(
        study=study, version=1, model_type="kernel", embedder_key="t", n_judgments=2, checkpoint_path="/x"
    )

    class Outcome:
        again_in, claim = None, None

    Outcome.version = version
    monkeypatch.setattr(loop_services, "reward_model_retrain", lambda **kwargs: Outcome())
    with django_capture_on_commit_callbacks(execute=True):
        tasks.retrain_study(study.id)
    (published,) = [verified(hook.secret, r) for r in receiver.received]
    assert published["event"] == "model.published" and published["data"]["version"] == 1

    answer(study, UserFactory(), 2)
    with django_capture_on_commit_callbacks(execute=True):
        service.webhooks_sweep()
        service.webhooks_sweep()
    budget = [
        verified(hook.secret, r) for r in receiver.received if r["headers"]["X-Prefloop-Event"] == "budget.reached"
    ]
    assert len(budget) == 1 and budget[0]["data"] == {"budget": 2, "given": 2}, "once"

    with django_capture_on_commit_callbacks(execute=True):
        study_status_set(study=study, status=Study.Status.CLOSED, by=UserFactory())
    events = [r["headers"]["X-Prefloop-Event"] for r in receiver.received]
    assert events.count("study.closed") == 1
    assert not WebhookDelivery.objects.filter(webhook=quiet).exclude(event="judgments.received").exists()


def test_a_researcher_adds_pings_switches_and_deletes_a_webhook_from_the_study_page(
    receiver, sent, client_for, make_member, django_capture_on_commit_callbacks
) -> None:
    study = study_with_queue(n_prompts=1, n_candidates=3)
    researcher = client_for(make_member(study, role=Membership.Role.RESEARCHER))
    page = reverse("study_detail", args=[study.slug])
    refused = researcher.post(reverse("webhook_add", args=[study.slug]), {"hook-url": "ftp://x"}, follow=True)
    assert "Webhook not added" in refused.content.decode()
    added = researcher.post(reverse("webhook_add", args=[study.slug]),
                            {"hook-url": receiver.url, "hook-events": ["model.published"]}, follow=True)  # fmt: skip
    assert "Webhook added" in added.content.decode()
    hook = Webhook.objects.get(study=study)
    with django_capture_on_commit_callbacks(execute=True):
        researcher.post(reverse("webhook_ping", args=[study.slug, hook.pk]))
    assert verified(hook.secret, receiver.received[0])["event"] == "ping"
    html = researcher.get(page).content.decode()
    assert 'id="webhook-table"' in html and receiver.url in html and hook.secret in html
    assert "<td>ping</td>" in html and "Delivered" in html and "HTTP 200" in html

    receiver.statuses.extend([500] * service.MAX_ATTEMPTS)
    delivery = service.webhook_ping(webhook=hook)
    for _ in range(service.MAX_ATTEMPTS):
        service.delivery_attempt(delivery_id=delivery.pk)
    assert "Send again" in researcher.get(page).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        researcher.post(reverse("webhook_delivery_retry", args=[study.slug, delivery.pk]))
    assert WebhookDelivery.objects.get(pk=delivery.pk).status == "delivered"

    old_secret = hook.secret
    researcher.post(reverse("webhook_secret_new", args=[study.slug, hook.pk]))
    hook.refresh_from_db()
    assert hook.secret != old_secret and len(hook.secret) == 64
    with django_capture_on_commit_callbacks(execute=True):
        researcher.post(reverse("webhook_ping", args=[study.slug, hook.pk]))
    verified(hook.secret, receiver.received[-1])  # signed with the new secret

    researcher.post(reverse("webhook_active_set", args=[study.slug, hook.pk]), {"active": "0"})
    hook.refresh_from_db()
    assert not hook.active
    assert (
        "Turn the webhook on first"
        in researcher.post(reverse("webhook_ping", args=[study.slug, hook.pk]), follow=True).content.decode()
    )
    researcher.post(reverse("webhook_delete", args=[study.slug, hook.pk]))
    assert not Webhook.objects.filter(study=study).exists()


def test_the_api_adds_lists_changes_pings_and_deletes_webhooks(
    receiver, sent, make_member, django_capture_on_commit_callbacks
) -> None:
    from tests.annotation.test_api import api_as

    study = study_with_queue(n_prompts=1, n_candidates=3)
    client = api_as(make_member(study, role=Membership.Role.RESEARCHER))
    base = f"/api/v1/studies/{study.slug}/webhooks/"
    refused = client.post(base, {"url": "http://169.254.169.254/", "events": ["study.closed"]}, format="json")
    assert refused.status_code == 400 and "url" in refused.json()["fields"]
    created = client.post(base, {"url": receiver.url, "events": ["study.closed"]}, format="json")
    assert created.status_code == 201
    hook = created.json()
    assert len(hook["secret"]) == 64 and hook["active"] is True
    assert [h["id"] for h in client.get(base).json()] == [hook["id"]]
    changed = client.patch(f"{base}{hook['id']}/", {"events": ["model.published"], "active": False}, format="json")
    assert changed.status_code == 200 and (changed.json()["events"], changed.json()["active"]) == (
        ["model.published"], False,
    )  # fmt: skip
    renewed = client.patch(f"{base}{hook['id']}/", {"new_secret": True}, format="json").json()
    assert renewed["secret"] != hook["secret"] and renewed["events"] == ["model.published"]
    with django_capture_on_commit_callbacks(execute=True):
        pinged = client.post(f"{base}{hook['id']}/ping/")
    assert pinged.status_code == 202 and pinged.json()["event"] == "ping"
    (delivery,) = client.get(f"{base}{hook['id']}/deliveries/").json()
    assert (delivery["status"], delivery["response_status"], delivery["attempts"]) == ("delivered", 200, 1)
    assert client.delete(f"{base}{hook['id']}/").status_code == 204
    assert client.get(f"{base}{hook['id']}/").status_code == 404
