"""All judgments: every judgment with its answer, the order it was shown in, and
how its comparison was chosen, in JSON lines and in CSV."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from annotation.exports.kinds import judgments
from annotation.models import GenerationSource, Judgment, Prompt
from annotation.services.judging import ai_judge_create
from tests.annotation.exports.answered import TRICKY_RATIONALE, Studies, csv_rows, jsonl, text

pytestmark = pytest.mark.django_db


def test_judgments_jsonl_has_every_judgment_with_its_answer_order_and_selection(studies: Studies):
    records = jsonl(studies.pairwise, "judgments.jsonl")
    assert [r["judgment_id"] for r in records] == sorted(
        Judgment.objects.filter(study=studies.pairwise).values_list("id", flat=True)
    )
    assert [r["choice"] for r in records] == ["a", "b", "tie", "both_bad"]
    by_choice = {r["choice"]: r for r in records}
    a = by_choice["a"]
    given = studies.given[a["judgment_id"]]
    assert a["shown_order"] == given.shown
    assert [c["id"] for c in a["candidates"]] == given.shown
    assert [c["shown_position"] for c in a["candidates"]] == [0, 1]
    assert a["candidates"][0]["text"] == text(given.shown[0])
    assert a["ranking"] == [[given.shown[0]], [given.shown[1]]]
    assert a["strength"] == "strong" and a["rationale"] == TRICKY_RATIONALE
    assert a["aspect_ratings"] == {str(given.shown[0]): {"helpfulness": 1}, str(given.shown[1]): {"helpfulness": 2}}
    assert a["annotator"] == "alice" and a["time_on_task_ms"] == 4200 and a["client_info"] == {"via": "test"}
    assert a["strategy"] == "random" and a["model_version"] is None and a["is_gold"] is False
    assert "propensity" in a and "score" in a
    assert datetime.fromisoformat(a["created_at"]).tzinfo is not None
    prompt = Prompt.objects.get(id=a["prompt_id"])
    assert a["prompt"] == prompt.text and a["prompt_format"] == "text"
    assert by_choice["tie"]["ranking"] == [studies.given[by_choice["tie"]["judgment_id"]].shown]
    assert by_choice["both_bad"]["annotator"] == "bob"
    assert {r["annotator_kind"] for r in records} == {"person"}
    listwise = jsonl(studies.listwise, "judgments.jsonl")
    assert [len(r["ranking"]) for r in listwise] == [3, 2]
    assert all(r["choice"] == "ranked" and len(r["candidates"]) == 3 for r in listwise)


def test_judgments_csv_parses_with_the_csv_module_and_keeps_free_text_intact(studies: Studies):
    rows = csv_rows(studies.pairwise, "judgments.csv")
    assert tuple(rows[0].keys()) == judgments.SCHEMA.names
    assert [row["choice"] for row in rows] == ["a", "b", "tie", "both_bad"]
    assert rows[0]["rationale"] == TRICKY_RATIONALE
    assert json.loads(rows[0]["shown_order"]) == studies.given[int(rows[0]["judgment_id"])].shown
    assert [c["shown_position"] for c in json.loads(rows[0]["candidates"])] == [0, 1]
    assert rows[0]["is_gold"] == "false" and rows[0]["model_version"] == ""


def test_an_ai_judges_answers_are_exported_as_a_model_annotators(studies: Studies):
    """People and AI judges are never mixed up: each record says which it is."""
    study = studies.pairwise
    source = GenerationSource.objects.create(study=study, name="s", base_url="http://127.0.0.1:9/v1", model="m")
    judge = ai_judge_create(study=study, source_id=source.id, name="llm judge")
    person = Judgment.objects.filter(study=study).first()
    Judgment.objects.create(
        study=study, comparison_id=person.comparison_id, annotator=judge.user, choice="a", ranking=person.ranking
    )
    kinds = {r["annotator"]: r["annotator_kind"] for r in jsonl(study, "judgments.jsonl")}
    assert kinds[judge.user.username] == "model" and kinds["alice"] == kinds["bob"] == "person"
    assert {row["annotator_kind"] for row in csv_rows(study, "judgments.csv")} == {"person", "model"}
