"""Webhooks (issue 18): a study tells other systems what happened, as signed JSON POSTs.

**Events.** ``judgments.received`` (the judgments given since the last report, at
most :data:`BATCH_MOST` at a time, sent by the periodic sweep rather than per
answer, so answering costs nothing more), ``model.published``, ``budget.reached``
(once) and ``study.closed``; ``ping`` when a researcher asks for a test.
Annotators are named by their pseudonym in the study (as in pseudonymised
exports), and AI judges' answers say ``annotator_kind: "model"``.

**The request.** ``POST url`` with the JSON body ``{"event", "delivery",
"study", "sent_at", "data"}`` and the headers ``X-Prefloop-Event``,
``X-Prefloop-Delivery`` (the delivery's id: the same on every retry, so a
receiver can drop repeats) and ``X-Prefloop-Signature: t=<unix time>,v1=<hex>``,
where ``v1`` is HMAC-SHA256 of ``"<t>." + body`` keyed by the webhook's secret
(:func:`signature`). A receiver recomputes it and rejects an old ``t``.

**Delivery.** Each event is a :class:`~annotation.models.WebhookDelivery` row
written with the event (in the same transaction), then sent by the
``webhook_deliver`` task. A 2xx answer delivers it; anything else (another
status, a timeout, a refused connection) is tried again after 30 s, 1 min,
2 min, … up to an hour apart, :data:`MAX_ATTEMPTS` times in all, then it is
failed. Every attempt's status, answer excerpt and error are kept on the row
for the study page, and a researcher can send a failed one again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from annotation.exports.rows import annotator_pseudonym
from annotation.models import Judgment, RewardModelVersion, Study, Webhook, WebhookDelivery, webhook_secret
from annotation.services.generation import metadata_host
from annotation.services.leasing import study_judgment_count

__all__ = [
    "EVENTS",
    "MAX_ATTEMPTS",
    "delivery_attempt",
    "delivery_retry",
    "event_emit",
    "judgments_report",
    "model_published",
    "signature",
    "webhook_create",
    "webhook_ping",
    "webhook_update",
    "webhooks_sweep",
]

logger = logging.getLogger(__name__)

EVENTS = tuple(Webhook.Event.values)
PING = "ping"
MAX_ATTEMPTS = 8
BACKOFF_FIRST_S = 30.0
BACKOFF_MOST_S = 3600.0
TIMEOUT_S = 10.0
BATCH_MOST = 500
# Batches one sweep reports to one webhook at most (a large backlog goes over several sweeps).
SWEEP_BATCHES_MOST = 20
EXCERPT_CHARS = 500
MAX_WEBHOOKS_PER_STUDY = 10

# Sends one request: (url, body, headers, timeout) → (status, answer excerpt). Raises OSError when nothing came back.
Post = Callable[[str, bytes, dict[str, str], float], tuple[int, str]]


def _url_check(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({"url": "Give an http:// or https:// address, e.g. https://example.org/hooks/prefloop."})
    if metadata_host(url):
        raise ValidationError({"url": "That address is a cloud metadata service: a webhook may not call it."})
    return url


def _events_check(events: Sequence[str]) -> list[str]:
    chosen = sorted(set(events))
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown or not chosen:
        raise ValidationError({"events": f"Choose one or more of {', '.join(EVENTS)}."})
    return chosen


def webhook_create(
    *, study: Study, url: str, events: Sequence[str], created_by: AbstractBaseUser | None = None
) -> Webhook:
    """A new webhook of ``study`` with a fresh secret; every refusal is a
    ``ValidationError`` naming the field."""
    url, events = _url_check(url), _events_check(events)
    if Webhook.objects.filter(study=study).count() >= MAX_WEBHOOKS_PER_STUDY:
        raise ValidationError({"url": f"A study has at most {MAX_WEBHOOKS_PER_STUDY} webhooks."})
    # Judgments given before the webhook existed are not reported to it.
    last = Judgment.objects.filter(study=study).order_by("-id").values_list("id", flat=True).first() or 0
    return Webhook.objects.create(study=study, url=url, events=events, last_judgment_id=last, created_by=created_by)


def webhook_update(
    *,
    webhook: Webhook,
    url: str | None = None,
    events: Sequence[str] | None = None,
    active: bool | None = None,
    new_secret: bool = False,
) -> Webhook:
    """Change a webhook's address, events or state; ``new_secret`` replaces its
    secret (deliveries already pending are signed with the new one)."""
    if new_secret:
        webhook.secret = webhook_secret()
    if url is not None:
        webhook.url = _url_check(url)
    if events is not None:
        webhook.events = _events_check(events)
    if active is not None:
        webhook.active = active
    webhook.save(update_fields=["url", "events", "active", "secret"])
    return webhook


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1`` of the signature header: HMAC-SHA256 of ``"<timestamp>." + body``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _enqueue(ids: list[int]) -> None:
    """Send the deliveries once their rows are committed."""
    from annotation import tasks  # noqa: PLC0415 (tasks import this module)

    for delivery_id in ids:
        tasks.webhook_deliver.delay(delivery_id)


def _deliveries(webhooks: Sequence[Webhook], event: str, data: dict[str, Any]) -> list[int]:
    rows = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(webhook=w, event=event, payload=json.loads(json.dumps(data, cls=DjangoJSONEncoder)))
        for w in webhooks
    )
    ids = [row.pk for row in rows]
    if ids:
        transaction.on_commit(lambda: _enqueue(ids))
    return ids


def event_emit(*, study_id: int, event: str, data: dict[str, Any]) -> list[int]:
    """Record ``event`` for every active webhook of the study that asked for it
    (or, for ``ping``, every active one) and send them once committed; the ids
    of the deliveries. One query when nobody listens."""
    hooks = [
        w for w in Webhook.objects.filter(study_id=study_id, active=True) if event == PING or event in (w.events or [])
    ]
    return _deliveries(hooks, event, data) if hooks else []


def model_published(*, study_id: int, version: RewardModelVersion) -> list[int]:
    """The ``model.published`` event for a new version (nothing is read when nobody listens)."""
    listening = Webhook.objects.filter(study_id=study_id, active=True).values_list("events", flat=True)
    if not any(Webhook.Event.MODEL in (events or []) for events in listening):
        return []
    data = {
        "version": version.version,
        "model_type": version.model_type,
        "n_train": version.n_train,
        "n_heldout": version.n_heldout,
        "heldout_accuracy": version.heldout_accuracy,
        "created_at": version.created_at,
    }
    return event_emit(study_id=study_id, event=Webhook.Event.MODEL, data=data)


@transaction.atomic
def webhook_ping(*, webhook: Webhook) -> WebhookDelivery:
    """A test delivery (event ``ping``) to one webhook, sent once committed."""
    (delivery_id,) = _deliveries([webhook], PING, {"webhook": webhook.pk, "events": webhook.events})
    return WebhookDelivery.objects.get(pk=delivery_id)


@transaction.atomic
def judgments_report(*, webhook_id: int) -> WebhookDelivery | None:
    """One ``judgments.received`` delivery with the judgments after the webhook's
    cursor (at most :data:`BATCH_MOST`, oldest first), the cursor moved past
    them; None when there are none. The webhook row is locked, so two sweeps
    never report the same judgments."""
    webhook = Webhook.objects.select_for_update().select_related("study").filter(pk=webhook_id).first()
    if webhook is None or not webhook.active or Webhook.Event.JUDGMENTS not in (webhook.events or []):
        return None
    rows = list(
        Judgment.objects.filter(study_id=webhook.study_id, id__gt=webhook.last_judgment_id)
        .order_by("id")
        .values_list("id", "comparison_id", "annotator_id", "by_model", "choice", "ranking", "created_at")[
            : BATCH_MOST + 1
        ]
    )
    more = len(rows) > BATCH_MOST
    rows = rows[:BATCH_MOST]
    if not rows:
        return None
    names: dict[int, str] = {}
    judgments = []
    for judgment_id, comparison_id, annotator_id, by_model, choice, ranking, created_at in rows:
        if annotator_id not in names:
            names[annotator_id] = annotator_pseudonym(study_id=webhook.study_id, user_id=annotator_id)
        judgments.append(
            {
                "id": judgment_id,
                "comparison_id": comparison_id,
                "annotator": names[annotator_id],
                "annotator_kind": "model" if by_model else "person",
                "choice": choice,
                "ranking": ranking,
                "created_at": created_at,
            }
        )
    webhook.last_judgment_id = rows[-1][0]
    webhook.save(update_fields=["last_judgment_id"])
    data = {"count": len(judgments), "more": more, "judgments": judgments}
    (delivery_id,) = _deliveries([webhook], Webhook.Event.JUDGMENTS, data)
    return WebhookDelivery.objects.get(pk=delivery_id)


def webhooks_sweep() -> int:
    """The periodic sweep (Celery beat): report new judgments to each webhook
    that asked for them, and "budget.reached" once to those that asked for it
    when the study's people have given its budget; the deliveries made."""
    made = 0
    for webhook in Webhook.objects.filter(active=True).select_related("study"):
        events = webhook.events or []
        if Webhook.Event.JUDGMENTS in events:
            for _ in range(SWEEP_BATCHES_MOST):
                if judgments_report(webhook_id=webhook.pk) is None:
                    break
                made += 1
        if Webhook.Event.BUDGET in events and not webhook.budget_reported:
            given = study_judgment_count(study_id=webhook.study_id)
            if given >= webhook.study.budget:
                with transaction.atomic():
                    claimed = Webhook.objects.filter(pk=webhook.pk, budget_reported=False).update(budget_reported=True)
                    if claimed:
                        _deliveries([webhook], Webhook.Event.BUDGET, {"budget": webhook.study.budget, "given": given})
                        made += 1
    return made


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(EXCERPT_CHARS).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(EXCERPT_CHARS).decode("utf-8", "replace")


def _backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 30 s, 1 min, 2 min, … at most an hour."""
    return min(BACKOFF_FIRST_S * 2 ** max(attempts - 1, 0), BACKOFF_MOST_S)


def delivery_attempt(*, delivery_id: int, post: Post | None = None, now: datetime | None = None) -> float | None:
    """Try to send one delivery (the ``webhook_deliver`` task). Returns the
    seconds to wait before the next try, or None when it is settled: delivered,
    failed for good, or no longer pending (another attempt got there first)."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update()
            .select_related("webhook__study")
            .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING)
            .first()
        )
        if delivery is None:
            return None
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.save(update_fields=["attempts", "last_attempt_at"])
    webhook = delivery.webhook
    body = json.dumps(
        {
            "event": delivery.event,
            "delivery": delivery.pk,
            "study": webhook.study.slug,
            "sent_at": now.isoformat(),
            "data": delivery.payload,
        },
        separators=(",", ":"),
    ).encode()
    stamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "prefloop-webhooks/1",
        "X-Prefloop-Event": delivery.event,
        "X-Prefloop-Delivery": str(delivery.pk),
        "X-Prefloop-Signature": f"t={stamp},v1={signature(webhook.secret, stamp, body)}",
    }
    status, excerpt, error = None, "", ""
    started = time.monotonic()
    try:
        status, excerpt = (post or _post)(webhook.url, body, headers, TIMEOUT_S)
    except (OSError, ValueError) as exc:  # refused, unreachable, timed out, a bad address
        error = f"{type(exc).__name__}: {exc}"[:2000]
    delivered = status is not None and 200 <= status < 300
    if not delivered and not error:
        error = f"the receiver answered HTTP {status}"
    final = delivered or delivery.attempts >= MAX_ATTEMPTS
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.DELIVERED
        if delivered
        else (WebhookDelivery.Status.FAILED if final else WebhookDelivery.Status.PENDING),
        response_status=status,
        response_excerpt=excerpt[:EXCERPT_CHARS],
        error="" if delivered else error,
        delivered_at=now if delivered else None,
    )
    took_ms = 1000 * (time.monotonic() - started)
    logger.info(
        "webhook %s %s delivery %s attempt %s: %s in %.0f ms",
        webhook.pk, delivery.event, delivery.pk, delivery.attempts, status or error, took_ms,
    )  # fmt: skip
    return None if final else _backoff(delivery.attempts)


def delivery_retry(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a failed delivery again from its first attempt (a researcher's button)."""
    if delivery.status != WebhookDelivery.Status.FAILED:
        raise ValidationError({"delivery": "Only a failed delivery can be sent again."})
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.PENDING, attempts=0, error=""
        )
        delivery_id = delivery.pk
        transaction.on_commit(lambda: _enqueue([delivery_id]))
    delivery.refresh_from_db()
    return delivery
