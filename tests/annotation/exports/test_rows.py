"""Reading a study for export: pseudonyms, and work that grows with the number of
chunks (three queries each), never with the number of judgments in one."""

from __future__ import annotations

import json
import math

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.exports import rows
from annotation.models import Judgment, Study
from tests.annotation.exports.answered import TEXT_FORMATS, Studies, body, bulk_judgments, jsonl
from tests.factories import study_with_queue

pytestmark = pytest.mark.django_db


def test_pseudonyms_are_stable_in_a_study_unlinkable_across_studies_and_hide_usernames(studies: Studies, settings):
    pairwise = jsonl(studies.pairwise, "judgments.jsonl", pseudonymise=True)
    listwise = jsonl(studies.listwise, "judgments.jsonl", pseudonymise=True)
    alice_here = {r["annotator"] for r in pairwise if r["choice"] in ("a", "b", "tie")}
    assert len(alice_here) == 1
    (alice_here,) = alice_here
    (bob_here,) = {r["annotator"] for r in pairwise if r["choice"] == "both_bad"}
    (alice_there,) = {r["annotator"] for r in listwise}
    assert len({alice_here, bob_here, alice_there}) == 3
    assert "alice" not in alice_here and "bob" not in bob_here
    assert alice_here == rows.annotator_pseudonym(study_id=studies.pairwise.id, user_id=studies.alice.id)
    assert {r["annotator"] for r in jsonl(studies.pairwise, "dpo.jsonl", pseudonymise=True)} <= {alice_here}
    (skip,) = jsonl(studies.pairwise, "skips.jsonl", pseudonymise=True)
    assert skip["annotator"] == bob_here
    for key in TEXT_FORMATS:
        for study in (studies.pairwise, studies.listwise):
            data = body(study, key, pseudonymise=True)
            assert b"alice" not in data and b"bob" not in data, key
    assert b"alice" in body(studies.pairwise, "judgments.csv")
    settings.SECRET_KEY = "another-secret-key-for-this-test-0123456789abcdefghijklmnop"
    assert jsonl(studies.listwise, "judgments.jsonl", pseudonymise=True)[0]["annotator"] != alice_there


def _queries(study: Study, key: str) -> tuple[int, bytes]:
    with CaptureQueriesContext(connection) as captured:
        data = body(study, key)
    return len(captured), data


@pytest.mark.parametrize("key", ["judgments.jsonl", "dpo.csv", "rankings.jsonl"])
def test_export_queries_do_not_grow_with_the_number_of_judgments(key: str, django_assert_max_num_queries):
    study = study_with_queue(n_prompts=3, n_candidates=3)
    # Three per chunk; DPO pairs ask one more, whether the study has conversations (their default form).
    most = 4 if key.startswith("dpo") else 3
    bulk_judgments(study, 10, prefix="few")
    with django_assert_max_num_queries(most):
        few, _ = _queries(study, key)
    bulk_judgments(study, 190, prefix="many")
    with django_assert_max_num_queries(most):
        many, data = _queries(study, key)
    assert few == many
    assert data.count(b"\n") >= 200


def test_chunks_cover_every_judgment_once_in_order(monkeypatch):
    study = study_with_queue(n_prompts=3, n_candidates=3)
    bulk_judgments(study, 200, prefix="chunked")
    monkeypatch.setattr(rows, "CHUNK_SIZE", 7)
    queries, data = _queries(study, "judgments.jsonl")
    ids = [json.loads(line)["judgment_id"] for line in data.decode().splitlines()]
    assert ids == sorted(Judgment.objects.filter(study=study).values_list("id", flat=True))
    assert queries == 3 * math.ceil(200 / 7)  # judgments, candidates and prompts per chunk
