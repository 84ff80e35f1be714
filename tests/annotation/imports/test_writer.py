"""Writing records into a study: every prompt and candidate, deduplication by
content hash, all or nothing, and a bounded number of queries."""

from __future__ import annotations

import io
import json
import unicodedata

import pytest

from annotation.imports.jsonl import parse_jsonl
from annotation.imports.records import (
    ImportFileError,
    ImportResult,
    candidate_content_hash,
    prompt_content_hash,
)
from annotation.imports.writer import study_import_jsonl, study_import_records
from annotation.models import Candidate, Prompt, Study
from tests.annotation.imports.samples import CONVERSATION, GOOD_RECORDS, jsonl


@pytest.fixture
def study() -> Study:
    return Study.objects.create(name="Import target", slug="import-target")


# --- importing -------------------------------------------------------------


@pytest.mark.django_db
def test_good_file_imports_every_prompt_and_candidate(study: Study) -> None:
    """Each line becomes a prompt with its candidates, sources and metadata intact."""
    result = study_import_jsonl(study=study, fileobj=io.BytesIO(jsonl(*GOOD_RECORDS)))

    assert result == ImportResult(prompts_created=4, prompts_existing=0, candidates_created=8, duplicates_skipped=0)
    assert study.prompts.count() == 4
    assert study.candidates.count() == 8

    recursion = Prompt.objects.get(study=study, external_id="p1")
    assert recursion.format == Prompt.Format.TEXT
    assert recursion.metadata == {"topic": "cs"}
    assert recursion.content_hash == prompt_content_hash("Explain recursion.")
    by_text = {c.text: c for c in recursion.candidates.all()}
    assert set(by_text) == {
        "A function that calls itself.",
        "Recursion solves a problem via smaller copies of itself.",
        "It's a loop.",
    }
    assert by_text["A function that calls itself."].source == ""
    assert by_text["It's a loop."].source == "model-b"
    assert by_text["It's a loop."].metadata == {"temperature": 0.7}
    assert by_text["It's a loop."].content_hash == candidate_content_hash(
        prompt_hash=recursion.content_hash, text="It's a loop."
    )
    assert Prompt.objects.get(study=study, text="**Bold** question?").format == Prompt.Format.MARKDOWN
    assert Prompt.objects.get(study=study, external_id="42").format == Prompt.Format.CONVERSATION


@pytest.mark.django_db
def test_conversation_prompt_is_stored_as_json_message_list(study: Study) -> None:
    """A message list is inferred as a conversation and stored as its JSON dump, non-ASCII kept."""
    study_import_jsonl(study=study, fileobj=io.StringIO(jsonl(GOOD_RECORDS[2]).decode()))

    prompt = Prompt.objects.get(study=study)
    assert prompt.format == Prompt.Format.CONVERSATION
    assert prompt.text == json.dumps(CONVERSATION, ensure_ascii=False)
    assert "Où est la gare ?" in prompt.text
    assert json.loads(prompt.text) == CONVERSATION
    assert sorted(prompt.candidates.values_list("text", flat=True)) == ["Je ne sais pas.", "À gauche."]


@pytest.mark.django_db
def test_duplicate_candidates_in_one_file_are_skipped_and_counted(study: Study) -> None:
    """Same prompt + same (normalised) text is one candidate; the same text for another prompt is not."""
    decomposed = unicodedata.normalize("NFD", "Café au lait.")
    records = [
        {"prompt": "Order a drink.", "candidates": ["Café au lait.", "Tea.", "Tea."]},
        # The same prompt again, with one old and one new candidate, in NFD and padded.
        {"prompt": "  Order a drink.\n", "candidates": [f"  {decomposed} ", "Water."]},
        {"prompt": "Another prompt.", "candidates": ["Tea."]},
    ]
    result = study_import_jsonl(study=study, fileobj=io.BytesIO(jsonl(*records)))

    assert result == ImportResult(prompts_created=2, prompts_existing=0, candidates_created=4, duplicates_skipped=2)
    drink = Prompt.objects.get(study=study, text="Order a drink.")
    assert sorted(drink.candidates.values_list("text", flat=True)) == ["Café au lait.", "Tea.", "Water."]
    assert Candidate.objects.filter(study=study, text="Tea.").count() == 2


@pytest.mark.django_db
def test_reimporting_the_same_file_creates_nothing(study: Study) -> None:
    """A second import of the same file finds every prompt and skips every candidate."""
    data = jsonl(*GOOD_RECORDS)
    study_import_jsonl(study=study, fileobj=io.BytesIO(data))
    ids_before = set(Candidate.objects.values_list("id", flat=True))

    again = study_import_jsonl(study=study, fileobj=io.BytesIO(data))

    assert again == ImportResult(prompts_created=0, prompts_existing=4, candidates_created=0, duplicates_skipped=8)
    assert set(Candidate.objects.values_list("id", flat=True)) == ids_before
    assert Prompt.objects.count() == 4


@pytest.mark.django_db
def test_reimport_adds_only_new_candidates_to_existing_prompts(study: Study) -> None:
    study_import_jsonl(study=study, fileobj=io.BytesIO(jsonl(GOOD_RECORDS[0])))
    extended = {**GOOD_RECORDS[0], "candidates": [*GOOD_RECORDS[0]["candidates"], "Brand new answer."]}

    result = study_import_jsonl(study=study, fileobj=io.BytesIO(jsonl(extended)))

    assert result == ImportResult(prompts_created=0, prompts_existing=1, candidates_created=1, duplicates_skipped=3)
    new = Candidate.objects.get(text="Brand new answer.")
    assert new.prompt == Prompt.objects.get(external_id="p1")


@pytest.mark.django_db
def test_same_content_in_another_study_is_not_a_duplicate(study: Study) -> None:
    other = Study.objects.create(name="Other", slug="other")
    study_import_jsonl(study=study, fileobj=io.BytesIO(jsonl(*GOOD_RECORDS)))

    result = study_import_jsonl(study=other, fileobj=io.BytesIO(jsonl(*GOOD_RECORDS)))

    assert result.candidates_created == 8
    assert other.candidates.count() == 8


@pytest.mark.django_db
def test_bad_line_imports_nothing_and_names_line_and_field(study: Study) -> None:
    """Line 3 has a null candidate: the two good lines before it are not written either."""
    data = jsonl(GOOD_RECORDS[0], GOOD_RECORDS[1], {"prompt": "Third", "candidates": [None]})

    with pytest.raises(ImportFileError) as excinfo:
        study_import_jsonl(study=study, fileobj=io.BytesIO(data))

    assert excinfo.value.line == 3
    assert excinfo.value.field == "candidates[0]"
    assert str(excinfo.value) == 'line 3, field "candidates[0]": must be a string or an object with "text", got null'
    assert Prompt.objects.count() == 0
    assert Candidate.objects.count() == 0


@pytest.mark.django_db
def test_a_failed_write_rolls_back_prompts_already_inserted(study: Study, monkeypatch: pytest.MonkeyPatch) -> None:
    """All or nothing: if inserting candidates fails, the prompts inserted before are gone too."""

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(Candidate.objects, "bulk_create", fail)
    records = parse_jsonl(jsonl(*GOOD_RECORDS).splitlines())

    with pytest.raises(RuntimeError):
        study_import_records(study=study, records=records)

    assert Prompt.objects.count() == 0


@pytest.mark.django_db
def test_large_import_uses_batched_queries(study: Study, django_assert_max_num_queries) -> None:
    """3,000 candidates are written with a few dozen queries, not one per row."""
    records = [
        {"prompt": f"Prompt number {i}", "candidates": [f"Answer {i}.{j}" for j in range(5)]} for i in range(600)
    ]
    parsed = parse_jsonl(jsonl(*records).splitlines())

    with django_assert_max_num_queries(60):
        result = study_import_records(study=study, records=parsed)

    assert result.prompts_created == 600
    assert result.candidates_created == 3000
    assert Candidate.objects.filter(study=study, prompt__isnull=True).count() == 0
    assert Candidate.objects.get(text="Answer 599.4").prompt.text == "Prompt number 599"
