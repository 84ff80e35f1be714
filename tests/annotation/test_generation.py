"""Generated candidates (issue 17): a study's prompts answered by a chat-completions
server on 127.0.0.1 (a tiny random GPT-2 built in the test) or by the local model
itself, stored as candidates of their prompts, with failures reported per row."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Candidate, Prompt
from annotation.services.generation import prompt_messages, study_generate
from models_runtime.generation import GenerationCache, Sampling
from models_runtime.generation.local_hf import LocalGenerator, LocalModelConfig
from models_runtime.generation.openai_compat import ChatCompletionsGenerator, EndpointConfig
from tests.chat_server import ChatServer, Fault, tiny_model_dir
from tests.factories import CandidateFactory, PromptFactory, StudyFactory

pytestmark = pytest.mark.django_db

WARM = Sampling(temperature=1.0, max_tokens=8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def server(model_dir: Path):
    with ChatServer(generator=LocalGenerator(LocalModelConfig(str(model_dir), device="cpu"))) as running:
        yield running


@pytest.fixture
def study():
    study = StudyFactory()
    for k in range(3):
        PromptFactory(study=study, text=f"Question {k}: how do I bake bread?")
    return study


def client_of(server: ChatServer, **options) -> ChatCompletionsGenerator:
    config = EndpointConfig(base_url=server.base_url, model=server.model, **options)
    return ChatCompletionsGenerator(config, sleep=lambda seconds: None)


def test_each_prompt_gets_its_responses_as_candidates_and_the_loop_hears_of_them(
    server, study, loop_calls, django_capture_on_commit_callbacks
) -> None:
    CandidateFactory(prompt=Prompt.objects.filter(study=study).first(), text="An imported answer.")
    asked_before = len(server.received)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = study_generate(
            study=study, generator=client_of(server), source="tiny", per_prompt=2, sampling=WARM, seed=5,
            cache=GenerationCache(),
        )  # fmt: skip
    assert (outcome.prompts, outcome.requested, outcome.failed) == (3, 6, 0)
    assert len(server.received) - asked_before == 6
    generated = Candidate.objects.filter(study=study, source="tiny")
    assert generated.count() == outcome.candidates_created > 0
    assert outcome.candidates_created + outcome.duplicates_skipped == 6
    assert outcome.completion_tokens > 0 and outcome.prompt_tokens > 0
    for prompt in Prompt.objects.filter(study=study):
        seeds = sorted(c.metadata["generated"]["seed"] for c in generated.filter(prompt=prompt))
        assert set(seeds) <= {5, 6} and seeds, "each prompt's own responses, seeds 5 and 6"
    assert generated.first().metadata["generated"]["by"] == client_of(server).key
    assert loop_calls.embed == [study.id] and study.id in loop_calls.refill


def test_a_rerun_asks_for_nothing_and_adds_nothing(server, study) -> None:
    cache = GenerationCache()
    first = study_generate(
        study=study, generator=client_of(server), source="tiny", per_prompt=2, sampling=WARM, cache=cache
    )
    asked = len(server.received)
    again = study_generate(
        study=study, generator=client_of(server), source="tiny", per_prompt=2, sampling=WARM, cache=cache
    )
    assert len(server.received) == asked, "every response came from the cache"
    assert (again.candidates_created, again.from_cache) == (0, 6)
    assert again.duplicates_skipped == 6 and again.completion_tokens == 0
    assert Candidate.objects.filter(study=study).count() == first.candidates_created


def test_a_failed_row_is_reported_and_the_others_are_kept(server, study) -> None:
    server.fail_next(Fault(status=400))
    outcome = study_generate(
        study=study, generator=client_of(server, concurrency=1), source="tiny", per_prompt=1, sampling=WARM,
        cache=GenerationCache(),
    )  # fmt: skip
    assert outcome.failed == 1 and len(outcome.errors) == 1
    error = outcome.errors[0]
    first = Prompt.objects.filter(study=study).order_by("pk").first()
    assert (error.prompt_id, error.seed, error.kind) == (first.pk, 0, "http")
    assert "400" in error.message
    assert Candidate.objects.filter(study=study).exclude(prompt=first).count() == 2
    assert not Candidate.objects.filter(prompt=first).exists()


def test_a_conversation_is_sent_turn_by_turn_after_the_system_message(server) -> None:
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Help me"},
    ]
    prompt = PromptFactory(text=json.dumps(turns), format=Prompt.Format.CONVERSATION)
    messages = prompt_messages(prompt, system="Be brief.")
    assert [(m.role, m.content) for m in messages] == [
        ("system", "Be brief."),
        *[(t["role"], t["content"]) for t in turns],
    ]
    transcript = PromptFactory(text="Human: Hi\n\nAssistant: Hello!\n\nHuman: Help me")
    assert [(m.role, m.content) for m in prompt_messages(transcript)] == [(t["role"], t["content"]) for t in turns]


def test_the_command_generates_from_an_endpoint_and_from_a_local_model(server, study, model_dir, settings, tmp_path):
    settings.PREFLOOP_VAR_DIR = tmp_path
    out = StringIO()
    call_command(
        "generate_responses", study.slug, "--endpoint", server.base_url, "--model", "tiny", "--n", "2",
        "--max-tokens", "6", stdout=out, stderr=StringIO(),
    )  # fmt: skip
    assert "3 prompts, 6 responses asked" in out.getvalue() and "0 failed" in out.getvalue()
    assert Candidate.objects.filter(study=study, source="tiny").exists()
    assert (tmp_path / "generations.sqlite3").is_file()

    out = StringIO()
    call_command(
        "generate_responses", study.slug, "--local", str(model_dir), "--n", "1", "--source", "local-tiny",
        "--max-tokens", "6", "--device", "cpu", stdout=out, stderr=StringIO(),
    )  # fmt: skip
    assert "3 prompts, 3 responses asked" in out.getvalue()
    assert Candidate.objects.filter(study=study, source="local-tiny").exists()


def test_the_command_refuses_what_it_cannot_use(study, tmp_path) -> None:
    with pytest.raises(CommandError, match="No study"):
        call_command("generate_responses", "nope", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m")
    with pytest.raises(CommandError, match="--model"):
        call_command("generate_responses", study.slug, "--endpoint", "http://127.0.0.1:9/v1")
    with pytest.raises(CommandError, match="not a Hugging Face model directory"):
        call_command("generate_responses", study.slug, "--local", str(tmp_path))
    with pytest.raises(CommandError, match="Nothing was generated"):
        call_command(
            "generate_responses", study.slug, "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--retries", "0",
            stdout=StringIO(), stderr=StringIO(),
        )  # fmt: skip
