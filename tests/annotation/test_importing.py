"""JSONL import: parsing, deduplication, all-or-nothing writes, and the commands
built on it (``import_study``, ``seed_demo``)."""

from __future__ import annotations

import io
import json
import unicodedata
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from annotation.forms import StudyImportForm
from annotation.importing import (
    ImportFileError,
    ImportResult,
    candidate_content_hash,
    parse_jsonl,
    prompt_content_hash,
    study_import_jsonl,
    study_import_records,
)
from annotation.models import Candidate, Membership, Prompt, Study
from annotation.services import study_create

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Où est la gare ?"},
    {"role": "assistant", "content": "Tout droit."},
    {"role": "user", "content": "Merci ! Et le musée ?"},
]
GOOD_RECORDS = [
    {
        "id": "p1",
        "prompt": "Explain recursion.",
        "metadata": {"topic": "cs"},
        "candidates": [
            "A function that calls itself.",
            {"text": "Recursion solves a problem via smaller copies of itself.", "source": "model-a"},
            {"text": "It's a loop.", "source": "model-b", "metadata": {"temperature": 0.7}},
        ],
    },
    {"prompt": "**Bold** question?", "format": "markdown", "candidates": ["Answer one", "Answer two"]},
    {"id": 42, "prompt": CONVERSATION, "candidates": ["À gauche.", "Je ne sais pas."]},
    {"prompt": "A prompt whose single candidate is compared across prompts.", "candidates": ["Only me"]},
]


def jsonl(*records: object) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


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
    """Line 3 has an empty candidate: the two good lines before it are not written either."""
    data = jsonl(GOOD_RECORDS[0], GOOD_RECORDS[1], {"prompt": "Third", "candidates": [""]})

    with pytest.raises(ImportFileError) as excinfo:
        study_import_jsonl(study=study, fileobj=io.BytesIO(data))

    assert excinfo.value.line == 3
    assert excinfo.value.field == "candidates[0]"
    assert str(excinfo.value) == 'line 3, field "candidates[0]": must be a non-empty string'
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


# --- parse errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "line", "field", "message"),
    [
        (['{"prompt": "a", "candidates": ["x"]}', '{"prompt": "b", "candidates": ["x"'], 2, None, "invalid JSON: "),
        (['["not", "an", "object"]'], 1, None, "expected a JSON object, got a list"),
        (['{"candidates": ["x"]}'], 1, "prompt", "is required"),
        (['{"prompt": "a"}'], 1, "candidates", "is required"),
        (['{"prompt": "a", "candidates": []}'], 1, "candidates", "at least one candidate"),
        (['{"prompt": "a", "candidates": "x"}'], 1, "candidates", "must be a list, got a string"),
        (['{"prompt": "   ", "candidates": ["x"]}'], 1, "prompt", "non-empty"),
        (['{"prompt": 7, "candidates": ["x"]}'], 1, "prompt", "got a number"),
        (['{"prompt": "a", "format": "html", "candidates": ["x"]}'], 1, "format", 'got "html"'),
        (['{"prompt": "a", "format": "conversation", "candidates": ["x"]}'], 1, "prompt", "list of"),
        (['{"prompt": [{"role": "user", "content": "hi"}], "format": "text", "candidates": ["x"]}'], 1, "format", ""),
        (['{"prompt": [{"role": "bot", "content": "hi"}], "candidates": ["x"]}'], 1, "prompt[0].role", 'got "bot"'),
        (['{"prompt": [{"role": "user", "content": ""}], "candidates": ["x"]}'], 1, "prompt[0].content", "non-empty"),
        (['{"prompt": [], "candidates": ["x"]}'], 1, "prompt", "at least one message"),
        (['{"prompt": "a", "candidates": ["x", {"text": "  "}]}'], 1, "candidates[1].text", "non-empty string"),
        (['{"prompt": "a", "candidates": ["x", {"source": "m"}]}'], 1, "candidates[1].text", "non-empty string"),
        (['{"prompt": "a", "candidates": [{"text": "x", "source": 3}]}'], 1, "candidates[0].source", "string"),
        (['{"prompt": "a", "candidates": [{"text": "x", "score": 3}]}'], 1, "candidates[0].score", "unknown"),
        (['{"prompt": "a", "candidates": [null]}'], 1, "candidates[0]", "got null"),
        (['{"prompt": "a", "metadata": [1], "candidates": ["x"]}'], 1, "metadata", "must be an object"),
        (['{"prompt": "a", "id": {"x": 1}, "candidates": ["x"]}'], 1, "id", "must be a string"),
        (['{"prompt": "a", "candidate": ["x"]}'], 1, "candidate", "unknown field"),
        (
            [b'{"prompt": "a", "candidates": ["x"]}\n', b'{"prompt": "caf\xe9", "candidates": ["x"]}\n'],
            2,
            None,
            "UTF-8",
        ),
        (["", "   \n", "\n"], None, None, "no records found"),
        ([], None, None, "no records found"),
    ],
)
def test_parse_errors_name_the_line_and_field(lines: list, line: int | None, field: str | None, message: str) -> None:
    with pytest.raises(ImportFileError) as excinfo:
        parse_jsonl(lines)

    error = excinfo.value
    assert (error.line, error.field) == (line, field)
    assert message in str(error)
    if line is not None:
        assert str(error).startswith(f"line {line}")


def test_blank_lines_are_skipped_and_line_numbers_count_them() -> None:
    """Line numbers are physical lines, so an error message points at the right place in an editor."""
    lines = ['\ufeff{"prompt": "a", "candidates": ["x"]}\n', "\n", "  \n", '{"prompt": "b", "candidates": ["y"]}']

    records = parse_jsonl(lines)

    assert [(r.text, r.line) for r in records] == [("a", 1), ("b", 4)]


def test_content_hashes_ignore_unicode_form_and_surrounding_whitespace() -> None:
    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    assert prompt_content_hash(f" {decomposed}\n") == prompt_content_hash(composed)
    assert len(prompt_content_hash(composed)) == 64

    first = prompt_content_hash("prompt one")
    second = prompt_content_hash("prompt two")
    assert candidate_content_hash(prompt_hash=first, text="same") != candidate_content_hash(
        prompt_hash=second, text="same"
    )
    assert candidate_content_hash(prompt_hash="", text="same") != prompt_content_hash("same")


# --- study_create and the form -----------------------------------------------


@pytest.mark.django_db
def test_study_create_makes_unique_slugs_and_a_researcher_membership() -> None:
    user = get_user_model().objects.create_user(username="rita", password="x")

    first = study_create(name="Summaries, round 1!", created_by=user, budget=50)
    second = study_create(name="Summaries, round 1!")
    third = study_create(name="Other name", slug="summaries-round-1")

    assert [first.slug, second.slug, third.slug] == ["summaries-round-1", "summaries-round-1-2", "summaries-round-1-3"]
    assert first.budget == 50
    assert first.created_by == user
    assert Membership.objects.get(study=first, user=user).role == Membership.Role.RESEARCHER
    assert not Membership.objects.filter(study=second).exists()


def test_import_form_requires_a_file_and_leaves_name_optional() -> None:
    upload = SimpleUploadedFile("prompts.jsonl", jsonl(GOOD_RECORDS[0]), content_type="application/jsonl")

    form = StudyImportForm(data={}, files={"file": upload})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["name"] == ""
    assert parse_jsonl(form.cleaned_data["file"])[0].external_id == "p1"

    assert not StudyImportForm(data={"name": "x"}, files={}).is_valid()


# --- import_study command ---------------------------------------------------


@pytest.mark.django_db
def test_import_study_command_creates_the_study_and_imports(tmp_path: Path) -> None:
    researcher = get_user_model().objects.create_user(username="res", password="x")
    data = tmp_path / "summaries.jsonl"
    data.write_bytes(jsonl(*GOOD_RECORDS))
    guidelines = tmp_path / "guide.md"
    guidelines.write_text("- Prefer **correct** answers.\n", encoding="utf-8")
    out = io.StringIO()

    call_command(
        "import_study", str(data), "--name", "Summaries v1", "--researcher", "res",
        "--guidelines-file", str(guidelines), stdout=out,
    )  # fmt: skip

    study = Study.objects.get(slug="summaries-v1")
    assert study.name == "Summaries v1"
    assert study.guidelines == "- Prefer **correct** answers.\n"
    assert study.created_by == researcher
    assert Membership.objects.get(study=study, user=researcher).role == Membership.Role.RESEARCHER
    assert (study.prompts.count(), study.candidates.count()) == (4, 8)
    assert "Imported 4 prompts (0 existing), 8 candidates, 0 duplicates skipped" in out.getvalue()
    assert "(summaries-v1)" in out.getvalue()

    out = io.StringIO()
    call_command("import_study", str(data), "--study", "summaries-v1", stdout=out)

    assert Study.objects.count() == 1
    assert study.candidates.count() == 8
    assert "Imported 0 prompts (4 existing), 0 candidates, 8 duplicates skipped" in out.getvalue()


@pytest.mark.django_db
def test_import_study_command_names_study_after_file_by_default(tmp_path: Path) -> None:
    data = tmp_path / "helpfulness-batch.jsonl"
    data.write_bytes(jsonl(GOOD_RECORDS[1]))

    call_command("import_study", str(data), stdout=io.StringIO())

    study = Study.objects.get()
    assert (study.name, study.slug) == ("helpfulness-batch", "helpfulness-batch")
    assert study.candidates.count() == 2


@pytest.mark.django_db
def test_import_study_command_on_bad_file_writes_nothing_not_even_the_study(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_bytes(jsonl(GOOD_RECORDS[0], GOOD_RECORDS[1]) + b'{"prompt": "x", "candidates": [""]}\n')

    with pytest.raises(CommandError, match=r'line 3, field "candidates\[0\]": must be a non-empty string'):
        call_command("import_study", str(data), "--study", "fresh", stdout=io.StringIO())

    assert not Study.objects.exists()
    assert not Prompt.objects.exists()


@pytest.mark.django_db
def test_import_study_command_rejects_unknown_researcher(tmp_path: Path) -> None:
    data = tmp_path / "ok.jsonl"
    data.write_bytes(jsonl(GOOD_RECORDS[0]))

    with pytest.raises(CommandError, match="nobody"):
        call_command("import_study", str(data), "--researcher", "nobody", stdout=io.StringIO())

    assert not Study.objects.exists()


# --- seed_demo command ------------------------------------------------------


def _seed_counts() -> tuple[int, ...]:
    return (
        get_user_model().objects.count(),
        Study.objects.count(),
        Membership.objects.count(),
        Prompt.objects.count(),
        Candidate.objects.count(),
    )


@pytest.mark.django_db
def test_seed_demo_creates_users_study_and_memberships_and_is_idempotent() -> None:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    first = _seed_counts()
    call_command("seed_demo", stdout=io.StringIO())

    assert _seed_counts() == first == (4, 1, 3, 30, 120)
    users = {u.username: u for u in get_user_model().objects.all()}
    assert users["annotator"].check_password("annotate-demo")
    assert users["annotator2"].check_password("annotate-demo")
    assert users["researcher"].check_password("research-demo")
    assert users["researcher"].is_staff and not users["researcher"].is_superuser
    assert users["admin"].is_superuser and users["admin"].check_password("admin-demo")
    assert not users["annotator"].is_staff

    study = Study.objects.get(slug="demo")
    assert study.name == "Demo: which answer is more helpful?"
    assert study.budget == 300
    assert "`1`" in study.guidelines and "tie" in study.guidelines
    roles = dict(study.memberships.values_list("user__username", "role"))
    assert roles == {"annotator": "annotator", "annotator2": "annotator", "researcher": "researcher"}
    assert study.prompts.filter(format=Prompt.Format.CONVERSATION).count() >= 2
    assert set(study.candidates.values_list("source", flat=True)) == {
        "model-alpha", "model-beta", "model-gamma", "model-delta",
    }  # fmt: skip
    assert "annotate-demo" in out.getvalue() and "admin-demo" in out.getvalue()


@pytest.mark.django_db
def test_seed_demo_reset_recreates_the_study() -> None:
    call_command("seed_demo", stdout=io.StringIO())
    old = Study.objects.get(slug="demo")
    old.prompts.first().delete()
    old.name = "Renamed by someone"
    old.save(update_fields=["name"])

    call_command("seed_demo", "--reset", stdout=io.StringIO())

    new = Study.objects.get(slug="demo")
    assert new.pk != old.pk
    assert new.name == "Demo: which answer is more helpful?"
    assert (new.prompts.count(), new.candidates.count(), new.memberships.count()) == (30, 120, 3)
    assert get_user_model().objects.count() == 4
