"""HH-RLHF imports: the shared transcript is the prompt, the last turns the candidates."""

from __future__ import annotations

import json

import pytest

from annotation.imports.hh_rlhf import parse_hh_rlhf
from annotation.imports.records import ImportFileError
from annotation.imports.registry import detect_format
from annotation.models import Prompt
from tests.annotation.imports.samples import HH_LINE, post_upload


def test_hh_rlhf_prompt_is_the_shared_transcript_and_candidates_the_last_turns(client_for, researcher, study):
    content = (json.dumps(HH_LINE) + "\n").encode()
    assert detect_format("train.jsonl", content) == "hh_rlhf"
    response = post_upload(client_for(researcher), study, "train.jsonl", content)
    assert "Imported 1 new prompts" in response.content.decode()
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
        ({**HH_LINE, "chosen": HH_LINE["chosen"].replace("Six minutes.", "  ")}, "chosen", "empty"),
        ({"chosen": HH_LINE["chosen"]}, "rejected", "required"),
    ],
)
def test_bad_hh_rlhf_lines_are_named(line, field, message):
    good = json.dumps(HH_LINE)
    with pytest.raises(ImportFileError) as caught:
        parse_hh_rlhf([good, good, json.dumps(line)])
    assert caught.value.line == 3 and caught.value.field == field
    assert message in str(caught.value)
