"""Listwise rankings: responses best first, tied responses sharing a place; pairs are rankings too."""

from __future__ import annotations

import pytest

from tests.annotation.exports.answered import Studies, jsonl, text

pytestmark = pytest.mark.django_db


def test_rankings_list_responses_best_first_with_tied_responses_sharing_a_place(studies: Studies):
    records = jsonl(studies.listwise, "rankings.jsonl")
    strict, tied = records
    shown = studies.given[strict["judgment_id"]].shown
    assert [[x["id"] for x in place] for place in strict["responses"]] == [[shown[2]], [shown[0]], [shown[1]]]
    assert strict["responses"][0][0]["text"] == text(shown[2])
    shown = studies.given[tied["judgment_id"]].shown
    assert [[x["id"] for x in place] for place in tied["responses"]] == [[shown[1], shown[2]], [shown[0]]]
    pairs = {r["choice"]: r for r in jsonl(studies.pairwise, "rankings.jsonl")}
    assert [len(place) for place in pairs["a"]["responses"]] == [1, 1]
    assert [len(place) for place in pairs["tie"]["responses"]] == [2]
    assert [len(place) for place in pairs["both_bad"]["responses"]] == [2]
