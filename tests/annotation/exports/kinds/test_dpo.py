"""DPO pairs: the pairs the annotators preferred on their own screens, and every
strict pair a ranking implies."""

from __future__ import annotations

import pytest

from annotation.models import ComparisonItem, Prompt
from tests.annotation.exports.answered import Studies, csv_rows, jsonl, text

pytestmark = pytest.mark.django_db


def test_dpo_pairs_are_what_the_annotator_preferred_on_their_own_screen(studies: Studies):
    records = jsonl(studies.pairwise, "dpo.jsonl")
    # A and B give a pair each; the tie and "both bad" give none.
    assert sorted(r["choice"] for r in records) == ["a", "b"]
    for record in records:
        given = studies.given[record["judgment_id"]]
        winner, loser = (given.shown[0], given.shown[1]) if given.choice == "a" else (given.shown[1], given.shown[0])
        assert (record["chosen_id"], record["rejected_id"]) == (winner, loser)
        assert record["chosen"] == text(winner) and record["rejected"] == text(loser)
        assert record["prompt"] == Prompt.objects.get(candidates__id=winner).text
        assert record["n_pairs_in_judgment"] == 1 and (record["chosen_rank"], record["rejected_rank"]) == (1, 2)
    flipped = next(r for r in records if r["choice"] == "a")
    queued = list(
        ComparisonItem.objects.filter(comparison_id=flipped["comparison_id"])
        .order_by("position")
        .values_list("candidate_id", flat=True)
    )
    assert flipped["chosen_id"] == queued[1], "A on a flipped screen is the item queued second"


def test_dpo_pairs_of_a_ranking_are_every_strict_pair_it_implies(studies: Studies):
    records = jsonl(studies.listwise, "dpo.jsonl")
    strict_id, tied_id = sorted(studies.given)[-2:]
    strict, tied = studies.given[strict_id].shown, studies.given[tied_id].shown
    pairs = {(r["judgment_id"], r["chosen_id"], r["rejected_id"]) for r in records}
    assert pairs == {
        (strict_id, strict[2], strict[0]),
        (strict_id, strict[2], strict[1]),
        (strict_id, strict[0], strict[1]),
        (tied_id, tied[1], tied[0]),
        (tied_id, tied[2], tied[0]),
    }
    assert {r["judgment_id"]: r["n_pairs_in_judgment"] for r in records} == {strict_id: 3, tied_id: 2}
    assert all(r["chosen"] == text(r["chosen_id"]) and r["rejected"] == text(r["rejected_id"]) for r in records)
    rows = csv_rows(studies.listwise, "dpo.csv")
    assert [(int(r["chosen_id"]), int(r["rejected_id"])) for r in rows] == [
        (r["chosen_id"], r["rejected_id"]) for r in records
    ]
