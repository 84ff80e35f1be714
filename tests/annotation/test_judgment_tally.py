"""The study's judgment count that every lease reads comes from a tally the
database keeps with triggers: it must equal COUNT(*) after anything that writes
or removes judgments, through the services or around them."""

from __future__ import annotations

import pytest
from django.db.models import Count, Sum

from annotation.models import TALLY_STRIPES, Judgment, JudgmentTally, Membership, Study
from annotation.services import (
    assignment_lease_next,
    judgment_submit,
    judgment_undo,
    study_judgment_count,
)
from tests.factories import study_with_queue

pytestmark = pytest.mark.django_db


def _agrees(*studies: Study) -> None:
    for study in studies:
        counted = Judgment.objects.filter(study=study).count()
        assert study_judgment_count(study_id=study.id) == counted, study
    stripes = JudgmentTally.objects.values_list("stripe", flat=True)
    assert all(0 <= s < TALLY_STRIPES for s in stripes)


def _answer(study: Study, user) -> Judgment:
    lease = assignment_lease_next(study=study, annotator=user)
    assert lease is not None
    return judgment_submit(
        study=study, annotator=user, comparison_id=lease.assignment.comparison_id, choice="a"
    ).judgment


def test_the_tally_follows_answers_undos_bulk_writes_and_deletions(make_member):
    study, other = study_with_queue(n_prompts=4, n_candidates=4), study_with_queue(n_prompts=2, n_candidates=3)
    users = [make_member(study, Membership.Role.ANNOTATOR) for _ in range(5)]
    _agrees(study, other)
    assert study_judgment_count(study_id=study.id) == 0

    given = [_answer(study, user) for user in users for _ in range(2)]
    _agrees(study, other)
    assert study_judgment_count(study_id=study.id) == 10

    judgment_undo(study=study, annotator=users[0], judgment_id=given[0].id)
    _agrees(study, other)
    assert study_judgment_count(study_id=study.id) == 9

    # Around the services: a bulk insert in one statement, a queryset delete.
    copies = [
        Judgment(study=other, comparison=comparison, annotator=j.annotator, choice="b")
        for j, comparison in zip(Judgment.objects.filter(study=study)[:4], other.comparisons.all()[:4], strict=True)
    ]
    Judgment.objects.bulk_create(copies)
    _agrees(study, other)
    assert study_judgment_count(study_id=other.id) == 4
    Judgment.objects.filter(study=study, annotator__in=users[1:3]).delete()
    _agrees(study, other)
    assert study_judgment_count(study_id=study.id) == 5

    # Deleting a study takes its judgments and its tally, and leaves the other's.
    study.delete()
    assert not JudgmentTally.objects.filter(study_id=study.id).exists()
    _agrees(other)
    assert study_judgment_count(study_id=other.id) == 4


def test_annotators_share_no_stripe_until_there_are_more_of_them_than_stripes(make_member):
    study = study_with_queue(n_prompts=6, n_candidates=4)
    users = [make_member(study, Membership.Role.ANNOTATOR) for _ in range(3)]
    for user in users:
        _answer(study, user)
    per_stripe = dict(JudgmentTally.objects.filter(study=study).values_list("stripe", "n"))
    assert per_stripe == {user.pk % TALLY_STRIPES: 1 for user in users}
    total = JudgmentTally.objects.filter(study=study).aggregate(total=Sum("n"))["total"]
    by_annotator = Judgment.objects.filter(study=study).values("annotator").annotate(n=Count("id"))
    assert total == sum(row["n"] for row in by_annotator) == 3


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_the_judgments_a_study_already_has(make_member):
    """Judgments made before the tally existed are counted when it arrives
    (back to 0022, which drops the tally and its triggers, and forward again)."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    study = study_with_queue(n_prompts=4, n_candidates=4)
    users = [make_member(study, Membership.Role.ANNOTATOR) for _ in range(3)]
    for user in users:
        for _ in range(2):
            _answer(study, user)
    MigrationExecutor(connection).migrate([("annotation", "0022_study_apohf_on_kernel")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # back to the latest schema, for the tests after this one
    _agrees(study)
    assert study_judgment_count(study_id=study.id) == 6
    _answer(study, users[0])  # and the triggers count from there
    assert study_judgment_count(study_id=study.id) == 7
