"""Quality control: gold comparisons and attention checks with known answers,
served at the study's rate, and annotators flagged (never dropped) when they miss."""

from __future__ import annotations

import io
import json

import pytest
from django.urls import reverse

from activelearn.refill import queue_refill
from annotation import services
from annotation.dashboard import selectors as dashboard
from annotation.imports.records import ImportFileError
from annotation.imports.writer import study_import_jsonl
from annotation.models import Assignment, Comparison, Judgment, Membership
from annotation.selectors import queue_waiting_count
from tests.annotation.test_views import HTMX, annotate_url, comparison_id_in
from tests.factories import StudyFactory

pytestmark = pytest.mark.django_db

GOOD, BAD = "Paris is the capital of France.", "The capital of France is Berlin."


def _lines(n_gold: int = 3, attention: bool = True) -> bytes:
    lines = [
        {"prompt": f"Ordinary prompt {k}", "candidates": [f"Answer {k}a", f"Answer {k}b", f"Answer {k}c"]}
        for k in range(3)
    ]
    for k in range(n_gold):
        lines.append(
            {
                "prompt": f"Gold prompt {k}: capital of France?",
                "candidates": [BAD, GOOD],
                "gold": {"better": 1, "worse": 0},
            }
        )
    if attention:
        lines.append(
            {
                "prompt": "Attention check",
                "candidates": ["Please choose this response (B).", "Do not choose this one."],
                "gold": {"better": 0, "worse": 1, "kind": "attention"},
            }
        )
    return "\n".join(json.dumps(line) for line in lines).encode() + b"\n"


def _study(**fields):
    study = StudyFactory(**fields)
    study_import_jsonl(study=study, fileobj=io.BytesIO(_lines()))
    queue_refill(study_id=study.id, use_model=False, seed=0)
    return study


def test_gold_lines_become_known_answer_comparisons_outside_the_queue():
    study = _study()
    gold = Comparison.objects.filter(study=study, is_gold=True)
    assert gold.count() == 4
    kinds = sorted(c.gold_answer["kind"] for c in gold)
    assert kinds == ["attention", "gold", "gold", "gold"]
    for comparison in gold:
        items = set(comparison.items.values_list("candidate__text", flat=True))
        assert len(items) == 2 and comparison.item_key.startswith("gold:")
    # The strategy's queue holds only ordinary pairs; importing again adds nothing.
    assert queue_waiting_count(study_id=study.id) == Comparison.objects.filter(study=study, is_gold=False).count()
    study_import_jsonl(study=study, fileobj=io.BytesIO(_lines()))
    assert gold.count() == 4


@pytest.mark.parametrize(
    ("gold", "field"),
    [
        ({"better": 2, "worse": 0}, "gold.better"),
        ({"better": 1, "worse": 1}, "gold.worse"),
        ({"better": 1, "worse": 0, "kind": "trap"}, "gold.kind"),
        ({"better": 1, "worse": 0, "answer": "b"}, "gold.answer"),
        ("b", "gold"),
    ],
)
def test_bad_gold_entries_name_the_line_and_field_and_import_nothing(gold, field):
    study = StudyFactory()
    line = {"prompt": "p", "candidates": [BAD, GOOD], "gold": gold}
    data = json.dumps({"prompt": "ok", "candidates": ["x", "y"]}) + "\n" + json.dumps(line) + "\n"
    with pytest.raises(ImportFileError) as info:
        study_import_jsonl(study=study, fileobj=io.BytesIO(data.encode()))
    assert info.value.line == 2 and info.value.field == field
    assert not Comparison.objects.exists() and not study.prompts.exists()


def test_gold_is_served_at_the_rate_to_every_annotator_once(client_for, make_member, monkeypatch):
    study = _study(gold_rate=0.5)
    monkeypatch.setattr(services.leasing.random, "random", lambda: 0.0)  # always draw gold while any is left
    users = [make_member(study), make_member(study)]
    for user in users:
        client = client_for(user)
        html = client.get(annotate_url(study)).content.decode()
        served = []
        for _ in range(6):
            comparison_id = comparison_id_in(html)
            served.append(Comparison.objects.get(id=comparison_id).is_gold)
            html = client.post(
                reverse("annotate_submit", args=[study.slug]), {"comparison_id": comparison_id, "choice": "a"}, **HTMX
            ).content.decode()
        # Four gold items first (each once), then the ordinary queue.
        assert served == [True] * 4 + [False] * 2
    gold_judgments = Judgment.objects.filter(comparison__is_gold=True)
    assert gold_judgments.count() == 8
    assert all(c.status == Comparison.Status.QUEUED for c in Comparison.objects.filter(is_gold=True))


def test_no_gold_without_a_rate(make_member):
    study = _study()
    user = make_member(study)
    for _ in range(5):
        lease = services.assignment_lease_or_refill(study=study, annotator=user)
        assert not lease.assignment.comparison.is_gold
        services.judgment_submit(study=study, annotator=user, comparison_id=lease.assignment.comparison_id, choice="a")


def _answer_gold(study, user, *, correct: bool, kind: str) -> None:
    for comparison in Comparison.objects.filter(study=study, is_gold=True, gold_answer__kind=kind):
        answer = comparison.gold_answer
        shown = [answer["better"], answer["worse"]]
        Assignment.objects.create(
            study=study, comparison=comparison, annotator=user, leased_at=comparison.created_at,
            expires_at=comparison.created_at, display_order=shown,
        )  # fmt: skip
        services.judgment_submit(
            study=study, annotator=user, comparison_id=comparison.id, choice="a" if correct else "b"
        )


def test_annotators_who_miss_gold_or_attention_checks_are_flagged_not_dropped(client_for, make_member):
    study = _study(gold_min_accuracy=0.7)
    careful, careless, inattentive = (make_member(study, username=n) for n in ("careful", "careless", "inattentive"))
    _answer_gold(study, careful, correct=True, kind="gold")
    _answer_gold(study, careful, correct=True, kind="attention")
    _answer_gold(study, careless, correct=False, kind="gold")
    _answer_gold(study, inattentive, correct=True, kind="gold")
    _answer_gold(study, inattentive, correct=False, kind="attention")

    quality = {q.name: q for q in dashboard.annotator_quality(study=study)}
    assert quality["careful"].flags == () and quality["careful"].gold_accuracy == 1.0
    assert quality["careless"].flags == ("gold accuracy 0/3 is under 70%",)
    assert quality["inattentive"].flags == ("failed 1 of 1 attention check",)
    flagged_first = {q.name for q in dashboard.annotator_quality(study=study)[:2]}
    assert flagged_first == {"careless", "inattentive"}
    # Their judgments stay in the study: researchers decide.
    assert Judgment.objects.filter(annotator=careless).count() == 3

    researcher = make_member(study, Membership.Role.RESEARCHER)
    html = client_for(researcher).get(reverse("study_detail", args=[study.slug])).content.decode()
    assert "2 flagged for review" in html and "gold accuracy 0/3 is under 70%" in html
