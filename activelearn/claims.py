"""Claims on a study's background work that expire with the worker holding them.

A claim says "one task of this kind is on its way or running for this study":
requests that find it held start nothing (the running task goes round once
more for what they brought), so work never piles up. Each claim is two
columns, a timestamp and an owner token, changed only by conditional
``UPDATE``s (the same on SQLite and PostgreSQL, no lock server):

- ``q-<token>``: enqueued at the timestamp. A task still waiting after
  ``PREFLOOP_CLAIM_QUEUED_SECONDS`` may have been lost with the broker (a
  Redis restarted without persistence forgets its queues), so the claim
  expires and is requested again.
- ``r-<token>``: running; the timestamp is the task's last heartbeat
  (:func:`heartbeat` refreshes it every ``PREFLOOP_CLAIM_LEASE_SECONDS / 6``
  from a thread, whatever the task is doing). A worker killed mid-task stops
  beating, and its claim expires ``PREFLOOP_CLAIM_LEASE_SECONDS`` later.

An expired claim is taken over by the next request, or by the periodic sweep
(``activelearn.services.loop_sweep``), which re-requests every study whose
work stopped that way. Of the messages sent for one queued claim (the first
one, and those of later requests after it expired), whichever a worker
starts first runs; the others find the claim running or free and exit or do
the little that is left. A queued message is never superseded, so a queue
that is merely slow cannot starve a study by replacing its oldest message
with ever newer ones; and a running claim is left to its own token: a task
whose claim expired and was taken over stops at its next heartbeat.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)

QUEUED = "q-"
RUNNING = "r-"


@dataclass(frozen=True)
class ClaimSlot:
    """One kind of claimed work: which model holds it, under which key column,
    in which timestamp and owner columns."""

    model: type[Model]
    key: str  # the column naming the study ("id" on Study, "study_id" elsewhere)
    at: str
    owner: str

    def _rows(self, study_id: int) -> QuerySet:
        return self.model._default_manager.filter(**{self.key: study_id})

    def expired(self, now: datetime | None = None) -> Q:
        """Rows whose claim is held but expired: a running task stopped beating,
        or a queued one never started."""
        now = now or timezone.now()
        lease = now - timedelta(seconds=settings.PREFLOOP_CLAIM_LEASE_SECONDS)
        queued = now - timedelta(seconds=settings.PREFLOOP_CLAIM_QUEUED_SECONDS)
        at, owner = self.at, self.owner
        return Q(**{f"{at}__isnull": False}) & (
            Q(**{f"{owner}__startswith": QUEUED, f"{at}__lt": queued})
            | (~Q(**{f"{owner}__startswith": QUEUED}) & Q(**{f"{at}__lt": lease}))
        )

    def held(self, at: datetime | None, owner: str, now: datetime | None = None) -> bool:
        """Whether a claim read as ``at`` and ``owner`` is held and has not
        expired: one that :meth:`request` would refuse to take (the same rule
        as :meth:`expired`, for a row already read)."""
        if at is None:
            return False
        now = now or timezone.now()
        queued = owner.startswith(QUEUED)
        limit = settings.PREFLOOP_CLAIM_QUEUED_SECONDS if queued else settings.PREFLOOP_CLAIM_LEASE_SECONDS
        return at >= now - timedelta(seconds=limit)

    def _free_or_expired(self, now: datetime) -> Q:
        return Q(**{f"{self.at}__isnull": True}) | self.expired(now)

    def request(self, study_id: int, **also: Any) -> str | None:
        """Take the claim for a task about to be enqueued; its token, or None
        when a live claim holds it. ``also`` are columns to set with it."""
        now = timezone.now()
        token = uuid.uuid4().hex
        taken = (
            self._rows(study_id)
            .filter(self._free_or_expired(now))
            .update(**{self.at: now, self.owner: QUEUED + token}, **also)
        )
        return token if taken else None

    def start(self, study_id: int, token: str | None, **also: Any) -> str | None:
        """Mark the claim running for this task: one that is queued (whichever
        message of it arrives first), free, expired, or already running under
        this task's own ``token`` (a retrain coming back after its pacing
        wait). The token it runs under, or None when another task runs: this
        one is a duplicate and must not run."""
        now = timezone.now()
        mine = Q(**{f"{self.owner}__startswith": QUEUED})
        if token:
            mine |= Q(**{self.owner: RUNNING + token})
        token = token or uuid.uuid4().hex
        taken = (
            self._rows(study_id)
            .filter(mine | self._free_or_expired(now))
            .update(**{self.at: now, self.owner: RUNNING + token}, **also)
        )
        return token if taken else None

    def beat(self, study_id: int, token: str, at: datetime | None = None, **also: Any) -> bool:
        """Refresh the running claim (to ``at``, default now); False when it was
        lost (expired and taken over)."""
        rows = self._rows(study_id).filter(**{self.owner: RUNNING + token})
        return bool(rows.update(**{self.at: at or timezone.now()}, **also))

    def release(self, study_id: int, token: str, *, unless: Q | None = None, **also: Any) -> bool:
        """Free the claim held by ``token``; with ``unless``, only when the row
        does not match it (e.g. more work arrived meanwhile). True when freed."""
        rows = self._rows(study_id).filter(**{self.owner: RUNNING + token})
        if unless is not None:
            rows = rows.exclude(unless)
        return bool(rows.update(**{self.at: None, self.owner: ""}, **also))

    def drop(self, study_id: int, token: str) -> bool:
        """Give back a claim taken by :meth:`request` whose task could not be
        enqueued (the broker is down), so the next request or sweep tries again."""
        rows = self._rows(study_id).filter(**{self.owner: QUEUED + token})
        return bool(rows.update(**{self.at: None, self.owner: ""}))


def heartbeat_interval() -> float:
    return settings.PREFLOOP_CLAIM_LEASE_SECONDS / 6


@contextmanager
def heartbeat(slot: ClaimSlot, study_id: int, token: str, interval: float | None = None) -> Iterator[None]:
    """Refresh the running claim from a thread while the block runs.

    A fit or an embedding batch can take minutes in one call, and the lease must
    outlive it only while the worker lives; a thread beating every
    ``interval`` seconds (default: a sixth of the lease) keeps the claim fresh
    for exactly that long. The thread uses its own database connection and
    closes it when the block ends.
    """
    if connections["default"].in_atomic_block:
        # The caller's open transaction wrote the claim: another connection
        # could neither see it nor write it before the commit. Tasks run in
        # autocommit, so this is a test or a shell calling a service directly.
        yield
        return
    stop = threading.Event()
    interval = heartbeat_interval() if interval is None else interval

    def run() -> None:
        try:
            while not stop.wait(interval):
                try:
                    if not slot.beat(study_id, token):
                        logger.warning("%s claim of study %s was lost (expired, taken over)", slot.owner, study_id)
                        return
                except Exception:
                    # A dropped connection: the next beat tries again; the lease covers a few misses.
                    logger.warning("heartbeat of study %s's %s failed", study_id, slot.owner, exc_info=True)
                    connections.close_all()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name=f"heartbeat-{slot.owner}-{study_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
