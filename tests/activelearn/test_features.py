"""What the loop embeds for a candidate: the study's ``features`` choice (activelearn.features)."""

from __future__ import annotations

import pytest

from activelearn import features
from annotation.models import Candidate, Prompt, Study
from annotation.services import study_settings_update
from models_runtime import context

LONG_CHAT = (
    "Human: "
    + "Tell me everything about the history of bread. " * 60
    + "\n\nAssistant: Bread is old.\n\nHuman: Which flour for a sourdough?"
)


@pytest.fixture
def chat_study(make_study):
    def make(choice: str) -> tuple[Study, Candidate]:
        study = make_study(embedded=False, features=choice, slug=f"chat-{choice}")
        prompt = Prompt.objects.create(study=study, text=LONG_CHAT, content_hash=f"chat-{choice}")
        answer = Candidate.objects.create(
            study=study, prompt=prompt, text="Strong white flour with some rye.", content_hash=f"answer-{choice}"
        )
        return study, answer

    return make


def _input(study: Study, candidate: Candidate) -> features.EmbeddingInput:
    return next(i for i in features.study_embedding_inputs(study_id=study.id) if i.candidate_id == candidate.id)


def test_new_studies_see_the_measured_default() -> None:
    assert Study._meta.get_field("features").default == context.DEFAULT_FEATURES


@pytest.mark.django_db
def test_response_only_embeds_the_response_text(chat_study) -> None:
    study, answer = chat_study(context.RESPONSE)
    item = _input(study, answer)
    assert item.text == "Strong white flour with some rye."
    assert not item.truncated


@pytest.mark.django_db
def test_last_turn_embeds_the_question_with_the_response(chat_study) -> None:
    study, answer = chat_study(context.LAST_TURN)
    item = _input(study, answer)
    assert item.text == "Human: Which flour for a sourdough?\n\nAssistant: Strong white flour with some rye."


@pytest.mark.django_db
def test_a_conversation_longer_than_the_encoder_keeps_its_end(chat_study) -> None:
    """All-MiniLM-L6-v2 reads 256 tokens: the ~600-token conversation loses its
    beginning, keeps the last question and the whole (short) response, and the loss
    is counted, for the study page."""
    study, answer = chat_study(context.CONVERSATION)
    item = _input(study, answer)
    assert item.text.endswith("Which flour for a sourdough?\n\nAssistant: Strong white flour with some rye.")
    assert not item.text.startswith("Human: Tell me")
    assert item.context_tokens_dropped > 300 and item.response_tokens_dropped == 0
    tokens = features.embedder_get().tokens()
    assert len(tokens.spans(item.text)) <= tokens.budget


@pytest.mark.django_db
def test_the_choice_is_part_of_the_features_key() -> None:
    """A version fitted on other features is not warm-started from (its key differs);
    response-only keeps the key versions had before the choice existed."""
    assert features.features_key("minilm-max256", context.RESPONSE) == "minilm-max256"
    assert features.features_key("minilm-max256", context.LAST_TURN) != "minilm-max256"


@pytest.mark.django_db(transaction=True)
def test_a_new_choice_asks_for_the_candidates_to_be_embedded_again(make_study, loop_calls) -> None:
    """Other texts mean other embeddings: changing ``features`` queues the background
    embedding, as an import does; another setting does not."""
    study = make_study(embedded=False, features=context.RESPONSE)
    study_settings_update(study=study, changes={"budget": 50})
    assert loop_calls.embed == []
    study_settings_update(study=study, changes={"features": context.LAST_TURN})
    assert loop_calls.embed == [study.id]
