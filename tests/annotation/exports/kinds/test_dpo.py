"""DPO pairs: the pairs the annotators preferred on their own screens, and every
strict pair a ranking implies."""

from __future__ import annotations

import pytest

from annotation.exports import registry
from annotation.exports.errors import ExportError
from annotation.models import ComparisonItem, Prompt
from tests.annotation.exports.answered import Studies, csv_rows, jsonl, text
from tests.annotation.exports.chats import CHAT_LINE, HH_ROWS, chat_study, hh_study, text_study

pytestmark = pytest.mark.django_db


def test_dpo_pairs_are_what_the_annotator_preferred_on_their_own_screen(studies: Studies):
    records = jsonl(studies.pairwise, "dpo.jsonl")
    # A and B give a pair each; the tie and "both bad" give none.
    assert sorted(r["choice"] for r in records) == ["a", "b"]
    for record in records:
        given = studies.given[record["judgment_id"]]
        winner, loser = (given.shown[0], given.shown[1]) if given.choice == "a" else (given.shown[1], given.shown[0])
        assert (record["chosen_id"], record["rejected_id"]) == (winner, loser)
        # Plain-text prompts: the text form, whose replies start with a space (TRL joins prompt + chosen).
        assert record["form"] == "text"
        assert record["chosen"] == " " + text(winner) and record["rejected"] == " " + text(loser)
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
    assert all(
        r["chosen"] == " " + text(r["chosen_id"]) and r["rejected"] == " " + text(r["rejected_id"]) for r in records
    )
    rows = csv_rows(studies.listwise, "dpo.csv")
    assert [(int(r["chosen_id"]), int(r["rejected_id"])) for r in rows] == [
        (r["chosen_id"], r["rejected_id"]) for r in records
    ]


# --- the two forms: conversations keep their turn boundaries ---------------------------


def _originals() -> set[str]:
    return {row[side] for row in HH_ROWS for side in ("chosen", "rejected")}


def test_text_form_of_an_hh_conversation_keeps_the_assistant_cue_and_joins_back_into_the_transcript():
    records = jsonl(hh_study(), "dpo.jsonl", form="text")
    assert len(records) == len(HH_ROWS)
    for record in records:
        assert record["form"] == "text"
        assert record["prompt"].startswith("\n\nHuman: ") and record["prompt"].endswith("\n\nAssistant:")
        assert record["chosen"].startswith(" ") and record["rejected"].startswith(" ")
        # What TRL trains on is prompt + reply: the original HH transcripts, word for word.
        assert {record["prompt"] + record["chosen"], record["prompt"] + record["rejected"]} <= _originals()
    beer = next(r for r in records if "beer" in r["prompt"])
    assert "25Is it" not in beer["prompt"] + beer["chosen"]


def test_conversational_form_is_trls_message_lists_and_the_default_for_conversations():
    study = hh_study()
    records = jsonl(study, "dpo.jsonl")
    assert records == jsonl(study, "dpo.jsonl", form="conversational")
    beer = next(r for r in records if "beer" in r["prompt"][0]["content"])
    assert beer["form"] == "conversational"
    assert beer["prompt"] == [
        {"role": "user", "content": "How old do you have to be to buy beer?"},
        {"role": "assistant", "content": "Where do you live?"},
        {"role": "user", "content": "25"},
    ]
    assert {beer["chosen"][0]["content"], beer["rejected"][0]["content"]} == {
        "Is it an adult person who is buying it for you?",
        "Just buy it.",
    }
    assert [m["role"] for r in records for m in r["chosen"] + r["rejected"]] == ["assistant"] * 2 * len(records)


def test_a_message_list_prompt_keeps_its_system_message_in_both_forms():
    study = chat_study()
    (conversational,) = jsonl(study, "dpo.jsonl")
    assert conversational["prompt"] == CHAT_LINE["prompt"]
    assert conversational["prompt_format"] == "conversation"
    (text,) = jsonl(study, "dpo.jsonl", form="text")
    assert (
        text["prompt"]
        == "You are terse.\n\nHuman: Name a prime.\n\nAssistant: Which size?\n\nHuman: Small.\n\nAssistant:"
    )
    assert {text["chosen"], text["rejected"]} == {" 7", " Eight"}


def test_plain_text_prompts_default_to_text_with_replies_that_do_not_run_into_the_prompt():
    study = text_study()
    records = jsonl(study, "dpo.jsonl")
    assert records and all(r["form"] == "text" for r in records)
    for record in records:
        stored = Prompt.objects.get(id=record["prompt_id"]).text
        assert record["prompt"] == stored, "a plain-text prompt is exported as it is"
        assert record["chosen"] == " " + text(record["chosen_id"]), "TRL joins prompt + chosen with nothing between"
        assert record["rejected"] == " " + text(record["rejected_id"])
    conversational = jsonl(study, "dpo.jsonl", form="conversational")
    assert [r["prompt"] for r in conversational] == [[{"role": "user", "content": r["prompt"]}] for r in records]
    assert [r["chosen"] for r in conversational] == [
        [{"role": "assistant", "content": text(r["chosen_id"])}] for r in records
    ]


def test_the_form_is_in_the_file_name_and_an_unknown_form_is_refused(studies: Studies):
    export = registry.get("dpo.parquet")
    assert export.forms == ("conversational", "text")
    assert export.file_name(slug="s", form="text", pseudonymise=True) == "s-dpo-text-pseudonymised.parquet"
    with pytest.raises(ExportError, match="conversational or text"):
        export.records_kind(study=studies.pairwise, form="chatml")
    with pytest.raises(ExportError, match="one form only"):
        registry.get("judgments.jsonl").records_kind(study=studies.pairwise, form="text")
