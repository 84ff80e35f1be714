"""Studies answered through the real services, and helpers to read their exports.

``answered_studies`` is behind the ``studies`` fixture of this folder's tests
(``conftest.py``) and of the download views' tests.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field

from django.utils import timezone

from annotation.exports import registry
from annotation.exports.writers import CSV, JSONL
from annotation.models import Assignment, Candidate, ComparisonItem, Judgment, Membership, Study
from annotation.services import assignment_lease_next, assignment_skip, judgment_submit
from annotation.services.feedback import Feedback, SpanMark
from tests.factories import UserFactory, study_with_queue

TRICKY_RATIONALE = 'A is "clearer", shorter,\nand right.'
# The downloads that stream text, a chunk at a time.
TEXT_FORMATS = [export.key for export in registry.exports() if export.writer in (JSONL, CSV)]


@dataclass
class Given:
    """What the annotators answered, as the test saw it on their screens."""

    choice: str
    shown: list[int]  # candidate ids in the order the annotator saw them
    ranking: list[list[int]]  # positions on screen, best first (for lists)
    judgment_id: int = 0


@dataclass
class Studies:
    pairwise: Study
    listwise: Study
    researcher: object
    alice: object
    bob: object
    given: dict[int, Given] = field(default_factory=dict)
    skipped_shown: list[int] = field(default_factory=list)


def _lease(study: Study, user) -> Assignment:
    lease = assignment_lease_next(study=study, annotator=user)
    assert lease is not None, "the queue ran dry"
    return lease.assignment


def _answer(studies: Studies, study: Study, user, *, choice: str = "", ranking=None, flip: bool = False, **extra):
    assignment = _lease(study, user)
    if flip:
        # Show this annotator the queued order reversed, as a blind study may:
        # "A" is then the item queued second.
        items = list(
            ComparisonItem.objects.filter(comparison_id=assignment.comparison_id)
            .order_by("position")
            .values_list("candidate_id", flat=True)
        )
        Assignment.objects.filter(id=assignment.id).update(display_order=items[::-1])
        assignment.refresh_from_db()
    shown = list(assignment.display_order)
    if study.aspects:
        extra["aspect_ratings"] = {k: {"helpfulness": 1 + k} for k in range(len(shown))}
    submission = judgment_submit(
        study=study,
        annotator=user,
        comparison_id=assignment.comparison_id,
        choice=choice,
        ranking=ranking,
        time_on_task_ms=4200,
        client_info={"via": "test"},
        **extra,
    )
    judgment = submission.judgment
    studies.given[judgment.id] = Given(
        choice=judgment.choice, shown=shown, ranking=ranking or [], judgment_id=judgment.id
    )
    return judgment


def answered_studies(make_member) -> Studies:
    """A blind pairwise study answered A (on a flipped screen), B, tie, both bad and
    one skip; a listwise study of 3 answered with a strict and a tied ranking."""
    pairwise = study_with_queue(
        n_prompts=3, n_candidates=3, allow_both_bad=True, ask_strength=True, aspects=["helpfulness"],
        ask_rationale=Study.RationaleMode.OPTIONAL, blind=True, feedback_tags=["unsafe", "off topic"],
        tag_spans=True, allow_rewrite=True,
    )  # fmt: skip
    listwise = study_with_queue(n_prompts=2, n_candidates=4, mode=Study.Mode.LISTWISE, list_size=3, blind=True)
    researcher = make_member(pairwise, Membership.Role.RESEARCHER, username="res")
    Membership.objects.create(user=researcher, study=listwise, role=Membership.Role.RESEARCHER)
    alice = make_member(pairwise, username="alice")
    Membership.objects.create(user=alice, study=listwise, role=Membership.Role.ANNOTATOR)
    bob = make_member(pairwise, username="bob")
    s = Studies(pairwise=pairwise, listwise=listwise, researcher=researcher, alice=alice, bob=bob)

    _answer(s, pairwise, alice, choice="a", strength="strong", rationale=TRICKY_RATIONALE, flip=True)
    # With richer feedback: tags on both, a span of A, and a better response started from A.
    feedback = Feedback(
        tags={0: ["off topic", "unsafe"], 1: ["unsafe"]},
        spans=[SpanMark(position=0, start=0, end=4, tag="unsafe")],
        rewrite="A better reply, written by hand.",
        rewrite_of=0,
    )
    _answer(s, pairwise, alice, choice="b", strength="slight", feedback=feedback)
    _answer(s, pairwise, alice, choice="tie")
    _answer(s, pairwise, bob, choice="both_bad")
    skipped = _lease(pairwise, bob)
    assignment_skip(
        study=pairwise, annotator=bob, comparison_id=skipped.comparison_id, reason="broken", note="B is empty"
    )
    s.skipped_shown = list(skipped.display_order)
    _answer(s, listwise, alice, ranking=[[2], [0], [1]])
    _answer(s, listwise, alice, ranking=[[1, 2], [0]])
    return s


def body(study: Study, key: str, *, pseudonymise: bool = False, form: str | None = None) -> bytes:
    """The whole file of the download ``key`` (``judgments.jsonl``), in ``form``
    (the study's default when None) for a kind with forms."""
    export = registry.get(key)
    assert export is not None, key
    return b"".join(export.stream(study=study, pseudonymise=pseudonymise, form=form))


def jsonl(study: Study, key: str, **kwargs) -> list[dict]:
    return [json.loads(line) for line in body(study, key, **kwargs).decode("utf-8").splitlines()]


def csv_rows(study: Study, key: str, **kwargs) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body(study, key, **kwargs).decode("utf-8"), newline="")))


def text(candidate_id: int) -> str:
    return Candidate.objects.get(id=candidate_id).text


def bulk_judgments(study: Study, n: int, *, prefix: str) -> None:
    """``n`` judgments of the study's queued pairs by fresh annotators, written in bulk."""
    pairs: dict[int, list[int]] = {}
    for comparison_id, candidate_id in (
        ComparisonItem.objects.filter(comparison__study=study)
        .order_by("comparison_id", "position")
        .values_list("comparison_id", "candidate_id")
    ):
        pairs.setdefault(comparison_id, []).append(candidate_id)
    rows = []
    for k in range(math.ceil(n / len(pairs))):
        user = UserFactory(username=f"{prefix}{k}")
        for comparison_id, items in pairs.items():
            if len(rows) < n:
                rows.append(
                    Judgment(
                        study=study,
                        comparison_id=comparison_id,
                        annotator=user,
                        choice="b",
                        ranking=items[::-1],
                        shown_order=items,
                        time_on_task_ms=1000 + k,
                        created_at=timezone.now(),
                    )
                )
    Judgment.objects.bulk_create(rows)
