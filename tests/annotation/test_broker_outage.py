"""With the task broker down (Redis refusing connections), the next comparison is
still served, on the page and through the API: the refill the lease asks for
cannot be enqueued, which is logged and retried later, never a server error.

The real triggers run (``loop``), and the database is in autocommit
(``transaction=True``) as in production: the enqueue then runs inside the
request, where a broker error would surface.
"""

from __future__ import annotations

import logging
import re
from unittest import mock

import pytest
from celery.app.task import Task
from django.urls import reverse
from kombu.exceptions import OperationalError

from annotation.models import Assignment, Membership, Study
from tests.factories import study_with_queue

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.loop]

REFUSED = OperationalError("Error 111 connecting to redis:6379. Connection refused.")


@pytest.fixture
def broker_down():
    """Every task's enqueue fails as it does when Redis is unreachable."""
    with mock.patch.object(Task, "apply_async", autospec=True, side_effect=REFUSED) as enqueue:
        yield enqueue


def _annotator(study: Study, make_member):
    return make_member(study, Membership.Role.ANNOTATOR, username="ann")


def _enqueue_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info and r.exc_info[0] is OperationalError
    ]


@pytest.mark.parametrize("fill", [True, False], ids=["queue-running-low", "queue-empty"])
def test_the_api_serves_the_next_comparison_while_the_broker_is_down(
    broker_down, client_for, make_member, caplog, fill: bool
):
    # Two prompts of two candidates: at most two comparisons queued, under the low-water
    # mark, so the lease asks the worker for more; an empty queue is refilled right here.
    study = study_with_queue(n_prompts=2, n_candidates=2, fill=fill)
    client = client_for(_annotator(study, make_member))
    with caplog.at_level(logging.ERROR):
        response = client.get(reverse("api_next", args=[study.slug]))
    assert response.status_code == 200, response.content
    comparison_id = response.json()["comparison_id"]
    assert Assignment.objects.filter(comparison_id=comparison_id, annotator__username="ann").exists()
    assert broker_down.called, "the lease asked for a refill, and the broker refused it"
    assert _enqueue_failures(caplog), "the refused enqueue is logged with its error"


def test_the_annotate_page_serves_a_comparison_while_the_broker_is_down(broker_down, client_for, make_member, caplog):
    study = study_with_queue(n_prompts=2, n_candidates=2, fill=False)
    client = client_for(_annotator(study, make_member))
    with caplog.at_level(logging.ERROR):
        response = client.get(reverse("annotate", args=[study.slug]))
    assert response.status_code == 200
    assert re.search(r'name="comparison_id" value="\d+"', response.content.decode())
    assert broker_down.called and _enqueue_failures(caplog)
