"""The API's two per-cycle replies are built without DRF serializers
(``annotation.serializers.next_comparison_data`` and ``judgment_data``): they
must say exactly what the serializers say, which the OpenAPI schema describes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User

from annotation import serializers
from annotation.models import Judgment
from annotation.rendering import Message
from annotation.selectors.annotating import CandidateDisplay, PromptDisplay, StudyProgress
from annotation.services import assignment_lease_next, judgment_submit
from tests.factories import UserFactory, study_with_queue

pytestmark = pytest.mark.django_db


def _payload(*, prompt, candidates, expires, quota, code="") -> dict:
    return {
        "comparison_id": 17 if candidates else None,
        "prompt": prompt.__dict__ if prompt else None,
        "candidates": [c.__dict__ for c in candidates],
        "lease_expires_at": expires,
        "progress": StudyProgress(mine=3, total=40, budget=100, quota=quota).__dict__,
        "completion_code": code,
    }


TURNS = (Message(role="user", content="Hi"), Message(role="assistant", content="Hello — <b>there</b>"))


@pytest.mark.parametrize(
    "payload",
    [
        _payload(
            prompt=PromptDisplay(format="text", text="Which is better?"),
            candidates=(
                CandidateDisplay(label="A", position=0, text="one", source="m1", image_url="https://x.test/a.png"),
                CandidateDisplay(label="B", position=1, text="two", source=""),
            ),
            expires=dt.datetime(2026, 12, 4, 10, 0, 0, 123456, tzinfo=dt.UTC),
            quota=None,
        ),
        _payload(
            prompt=PromptDisplay(format="conversation", text="[...]", messages=TURNS),
            candidates=(
                CandidateDisplay(label="A", position=0, text="x", messages=TURNS),
                CandidateDisplay(label="B", position=1, text="y"),
                CandidateDisplay(label="C", position=2, text="z"),
            ),
            expires=dt.datetime(2026, 12, 4, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            quota=25,
        ),
        _payload(prompt=None, candidates=(), expires=None, quota=10, code="DONE-123"),
    ],
    ids=["pair", "conversation-list", "finished"],
)
def test_the_next_comparison_reads_as_its_serializer_says(payload):
    assert serializers.next_comparison_data(payload) == serializers.NextComparisonOutput(payload).data


def test_a_judgment_reads_as_its_serializer_says_fresh_and_from_the_database():
    study = study_with_queue(ask_strength=True, ask_rationale="optional")
    user: User = UserFactory()
    lease = assignment_lease_next(study=study, annotator=user)
    submission = judgment_submit(
        study=study,
        annotator=user,
        comparison_id=lease.assignment.comparison_id,
        choice="b",
        strength="strong",
        rationale="  clearer  ",
        time_on_task_ms=4200,
    )
    fresh = submission.judgment
    fresh.created = True
    stored = Judgment.objects.get(id=fresh.id)
    stored.created = False
    for judgment in (fresh, stored):
        assert serializers.judgment_data(judgment) == serializers.JudgmentOutput(judgment).data
    # And the instance the answer returned is the row as stored.
    assert {**serializers.judgment_data(fresh), "created": False} == serializers.judgment_data(stored)
