"""HH-RLHF imports: the shared transcript is the prompt, the last turns the candidates."""

from __future__ import annotations

import json

import pytest

from activelearn import refill
from annotation.imports.hh_rlhf import parse_hh_rlhf
from annotation.imports.records import ImportFileError, PromptRecord, prompt_content_hash, record_prompt_hash
from annotation.imports.registry import detect_format
from annotation.imports.writer import study_import_records
from annotation.models import Comparison, Prompt, Study
from tests.annotation.imports.samples import HH_LINE, HH_PREFIX, post_upload


def test_hh_rlhf_prompt_is_the_shared_transcript_and_candidates_the_last_turns(client_for, researcher, study):
    content = (json.dumps(HH_LINE) + "\n").encode()
    assert detect_format("train.jsonl", content) == "hh_rlhf"
    response = post_upload(client_for(researcher), study, "train.jsonl", content)
    assert "Imported 1 new prompt (0 already there)" in response.content.decode()
    prompt = Prompt.objects.get(study=study, text__startswith="Human: How do I boil")
    assert prompt.text.endswith("Human: Soft.")
    assert "Assistant: Which kind?" in prompt.text
    chosen, rejected = prompt.candidates.order_by("id")
    assert (chosen.text, chosen.metadata) == ("Six minutes.", {"preference": "chosen"})
    assert (rejected.text, rejected.metadata) == ("Microwave it.", {"preference": "rejected"})


def test_hh_rlhf_without_recording_the_preference():
    (record,) = parse_hh_rlhf([json.dumps(HH_LINE)], record_preference=False)
    assert record.metadata == {} and all(c.metadata == {} for c in record.candidates)


def test_hh_rlhf_transcripts_that_part_early_keep_what_they_share_as_the_prompt():
    line = {**HH_LINE, "rejected": HH_LINE["rejected"].replace("Soft.", "Hard.")}
    (record,) = parse_hh_rlhf([json.dumps(HH_LINE), json.dumps(line)])[1:]
    assert record.text == "Human: How do I boil an egg?"
    better, worse = record.candidates
    assert better.text == "Which kind?\n\nHuman: Soft.\n\nAssistant: Six minutes."
    assert worse.text == "Which kind?\n\nHuman: Hard.\n\nAssistant: Microwave it."
    assert record.metadata == {"transcripts_diverge_early": True, "known_preference": ["chosen", "rejected"]}
    (usual,) = parse_hh_rlhf([json.dumps(HH_LINE)])
    assert "transcripts_diverge_early" not in usual.metadata


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ({**HH_LINE, "rejected": HH_LINE["rejected"].replace("boil", "fry")}, "rejected", "first"),
        ({**HH_LINE, "chosen": "\n\nHuman: hi"}, "chosen", "Assistant"),
        ({**HH_LINE, "chosen": "  "}, "chosen", "non-empty transcript"),
        ({"chosen": HH_LINE["chosen"]}, "rejected", "required"),
    ],
)
def test_bad_hh_rlhf_lines_are_named(line, field, message):
    good = json.dumps(HH_LINE)
    with pytest.raises(ImportFileError) as caught:
        parse_hh_rlhf([good, good, json.dumps(line)])
    assert caught.value.line == 3 and caught.value.field == field
    assert message in str(caught.value)


def test_an_empty_last_assistant_turn_is_an_empty_response():
    """Four rows of the public test split end in an empty chosen reply; the whole file was refused."""
    line = {**HH_LINE, "chosen": HH_PREFIX + "\n\nAssistant: "}

    (record,) = parse_hh_rlhf([json.dumps(line)])

    assert [c.text for c in record.candidates] == ["", "Microwave it."]
    assert record.candidates[0].metadata == {"preference": "chosen"}


def _pair(good: str, bad: str) -> str:
    return json.dumps({"chosen": HH_PREFIX + f"\n\nAssistant: {good}", "rejected": HH_PREFIX + f"\n\nAssistant: {bad}"})


@pytest.mark.django_db
def test_rows_with_the_same_prompt_keep_their_pairs_and_the_queue_never_mixes_them():
    """Two rows with the same prompt text merged into one prompt of four candidates, and the
    queue could pair row 1's chosen with row 2's rejected, which no one compared."""
    study = Study.objects.create(name="HH pairs", slug="hh-pairs", queue_target=50)
    lines = [
        _pair("Six minutes.", "Microwave it."),
        _pair("Ten minutes.", "Fry it."),
        _pair("Six minutes.", "Microwave it."),  # the same row again: found, not added
    ]

    result = study_import_records(study=study, records=parse_hh_rlhf(lines))
    again = study_import_records(study=study, records=parse_hh_rlhf(lines))

    assert (result.prompts_created, result.prompts_existing, result.candidates_created) == (2, 0, 4)
    assert (again.prompts_created, again.prompts_existing, again.candidates_created) == (0, 2, 0)
    prompts = list(Prompt.objects.filter(study=study).order_by("id"))
    assert [sorted(p.candidates.values_list("text", flat=True)) for p in prompts] == [
        ["Microwave it.", "Six minutes."],
        ["Fry it.", "Ten minutes."],
    ]
    rows = [set(p.candidates.values_list("id", flat=True)) for p in prompts]

    queued = refill.queue_refill(study_id=study.pk, use_model=False, seed=0)

    pairs = [set(c.candidates.values_list("id", flat=True)) for c in Comparison.objects.filter(study=study)]
    assert queued == len(pairs) == 2  # one comparison per row: its chosen against its rejected
    assert all(pair in rows for pair in pairs)


def test_a_pair_row_is_its_own_prompt_but_plain_rows_of_one_prompt_merge():
    """A judged pair's prompt hash includes its replies; a row without one is its prompt text."""
    (one,) = parse_hh_rlhf([_pair("a", "b")])
    (two,) = parse_hh_rlhf([_pair("b", "a")])
    assert record_prompt_hash(one) != record_prompt_hash(two) != prompt_content_hash(one.text)
    plain = PromptRecord(external_id="", text=one.text, format="text", metadata={}, candidates=(), line=1)
    assert record_prompt_hash(plain) == prompt_content_hash(one.text)


@pytest.mark.django_db
def test_an_hh_rlhf_file_whose_first_record_is_longer_than_the_head_read_to_tell_its_format(researcher, study):
    """Telling the format reads the first 64 KB; a longer first record was cut
    there, could not be read as JSON, and the file was taken for plain JSONL
    and refused (found by the import fuzz section)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotation.imports.upload import import_upload

    long_line = {**HH_LINE, "chosen": HH_LINE["chosen"] + " and more" * 10_000}
    content = (json.dumps(long_line) + "\n" + json.dumps(HH_LINE) + "\n").encode()
    assert detect_format("long.jsonl", content[:65536]) == "hh_rlhf"
    assert detect_format("cut.jsonl", b'{"prompt": "p", "candidates": ["' + b"x" * 70_000) == "jsonl"
    outcome = import_upload(
        study=study, upload=SimpleUploadedFile("long.jsonl", content), format=None, options={}, by=researcher
    )
    assert outcome.result.candidates_created == 4
