"""Skipped comparisons: their own export, with the reason, the note and the candidates as shown."""

from __future__ import annotations

import json

import pytest

from annotation.exports.kinds import skips
from annotation.models import Prompt
from tests.annotation.exports.answered import Studies, body, csv_rows, jsonl, text

pytestmark = pytest.mark.django_db


def test_skips_are_their_own_export_with_reason_note_and_shown_candidates(studies: Studies):
    (skip,) = jsonl(studies.pairwise, "skips.jsonl")
    assert (skip["annotator"], skip["skip_reason"], skip["skip_note"]) == ("bob", "broken", "B is empty")
    assert skip["shown_order"] == studies.skipped_shown
    assert [c["text"] for c in skip["candidates"]] == [text(i) for i in studies.skipped_shown]
    assert skip["prompt"] == Prompt.objects.get(candidates__id=studies.skipped_shown[0]).text
    (row,) = csv_rows(studies.pairwise, "skips.csv")
    assert row["skip_reason"] == "broken" and json.loads(row["shown_order"]) == studies.skipped_shown
    assert jsonl(studies.listwise, "skips.jsonl") == []
    assert body(studies.listwise, "skips.csv").decode() == ",".join(skips.SCHEMA.names) + "\r\n"  # the header alone
