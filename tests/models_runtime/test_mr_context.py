"""What text a reward model sees of a candidate (models_runtime.context), no Django."""

from __future__ import annotations

import json

import pytest

from models_runtime import context
from models_runtime.context import WhitespaceTokens, context_of, embedded_text, feature_text, turns_of

HH = "Human: What is a good pie?\n\nAssistant: Apple pie.\n\nHuman: And for dinner?"


def test_an_hh_transcript_splits_into_turns() -> None:
    assert turns_of(HH, "text") == [
        ("Human", "What is a good pie?"),
        ("Assistant", "Apple pie."),
        ("Human", "And for dinner?"),
    ]


def test_a_conversation_prompt_reads_its_json_messages() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert turns_of(json.dumps(messages), "conversation") == [("System", "Be brief."), ("Human", "Hi")]


def test_plain_text_is_one_human_turn() -> None:
    assert turns_of("Write a haiku about rain.", "text") == [("Human", "Write a haiku about rain.")]


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ("response", ""),
        ("last_turn", "Human: And for dinner?"),
        ("conversation", "Human: What is a good pie?\n\nAssistant: Apple pie.\n\nHuman: And for dinner?"),
    ],
)
def test_each_choice_places_its_context_before_the_response(features: str, expected: str) -> None:
    item = embedded_text(
        prompt_text=HH, prompt_format="text", response="Soup.", features=features, tokens=WhitespaceTokens(256)
    )
    assert context_of(HH, "text", features) == expected
    assert item.text == (f"{expected}\n\nAssistant: Soup." if expected else "Soup.")
    assert not item.truncated


def test_the_response_alone_is_embedded_unchanged() -> None:
    """Studies that keep "response only" embed exactly what they did before the setting
    existed, so their cached embeddings and warm starts stay valid."""
    response = "  Soup, then pie. "
    item = embedded_text(
        prompt_text=HH, prompt_format="text", response=response, features="response", tokens=WhitespaceTokens()
    )
    assert item.text == "  Soup, then pie. "


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="last_turn"):
        context_of(HH, "text", "everything")


def test_a_long_context_keeps_its_end_and_the_response_its_start() -> None:
    ctx = "Human: " + " ".join(f"c{i}" for i in range(100))
    response = " ".join(f"r{i}" for i in range(100))
    item = feature_text(ctx, response, WhitespaceTokens(40))
    kept_context, _, kept_response = item.text.partition("\n\nAssistant: ")
    # The cue "Assistant:" costs one word token; of the 39 left the response keeps
    # half (19), the context the rest (20).
    assert kept_response.split() == [f"r{i}" for i in range(19)]
    assert kept_context.split() == [f"c{i}" for i in range(80, 100)]
    assert item.context_tokens_dropped == 81  # "Human:" and c0…c79
    assert item.response_tokens_dropped == 81
    assert len(item.text.split()) == 40


def test_a_short_response_leaves_the_rest_of_the_budget_to_the_context() -> None:
    ctx = " ".join(f"c{i}" for i in range(100))
    item = feature_text(ctx, "Yes.", WhitespaceTokens(40))
    kept_context, _, kept_response = item.text.partition("\n\nAssistant: ")
    assert kept_response == "Yes."
    assert kept_context.split() == [f"c{i}" for i in range(62, 100)]
    assert (item.context_tokens_dropped, item.response_tokens_dropped) == (62, 0)


def test_a_long_response_alone_counts_what_the_encoder_will_cut() -> None:
    item = feature_text("", " ".join(["word"] * 50), WhitespaceTokens(30))
    assert item.response_tokens_dropped == 20
    assert item.context_tokens_dropped == 0


def test_the_default_choice_is_one_of_the_choices() -> None:
    assert context.DEFAULT_FEATURES in context.FEATURES
    assert [value for value, _ in context.FEATURE_CHOICES] == list(context.FEATURES)
