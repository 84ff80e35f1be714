"""Generators (issue 17): a local Hugging Face model through transformers, a real
chat-completions server on 127.0.0.1 answering with it, faults on the wire, and
the cache that keeps a re-run from paying twice."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from models_runtime.generation import (
    CachedGenerator,
    Generation,
    GenerationCache,
    GenerationFailure,
    GenerationRequest,
    Message,
    Sampling,
    request_key,
)
from models_runtime.generation.local_hf import LocalGenerator, LocalModelConfig
from models_runtime.generation.openai_compat import ChatCompletionsGenerator, EndpointConfig
from tests.chat_server import ChatServer, Fault, tiny_model_dir

GREEDY = Sampling(temperature=0.0, max_tokens=12)
PROMPTS = ["How do I bake bread?", "Say something kind to a friend who failed an exam today.", "Hi"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def local(model_dir: Path) -> LocalGenerator:
    return LocalGenerator(LocalModelConfig(str(model_dir), device="cpu", batch_size=4))


@pytest.fixture
def server(local: LocalGenerator):
    with ChatServer(generator=local) as running:
        yield running


def endpoint(server: ChatServer, **options) -> tuple[ChatCompletionsGenerator, list[float]]:
    """A client of ``server`` whose waits between attempts are recorded, not slept."""
    slept: list[float] = []
    config = EndpointConfig(base_url=server.base_url, model=server.model, **options)
    return ChatCompletionsGenerator(config, sleep=slept.append, rng=random.Random(0)), slept


def asked(prompt: str, sampling: Sampling = GREEDY, seed: int | None = None) -> GenerationRequest:
    return GenerationRequest.from_prompt(prompt, sampling=sampling, seed=seed)


# --- the local model ----------------------------------------------------------


def test_a_local_model_answers_a_batch_as_it_answers_each_request_alone(local: LocalGenerator) -> None:
    together = local.generate([asked(p) for p in PROMPTS])
    alone = [local.generate([asked(p)])[0] for p in PROMPTS]
    assert all(isinstance(r, Generation) for r in together)
    # Left padding and the attention mask keep a short prompt's answer the same beside a long one.
    assert [r.text for r in together] == [r.text for r in alone]
    for result in together:
        assert 0 < result.completion_tokens <= GREEDY.max_tokens and result.prompt_tokens > 0
        assert result.source == local.key and not result.cached
        assert result.finish_reason in ("stop", "length")
    assert len({r.prompt_tokens for r in together}) > 1, "each row counts its own prompt, not the padding"


def test_sampling_with_a_seed_repeats_and_another_seed_differs(local: LocalGenerator) -> None:
    warm = Sampling(temperature=1.0, max_tokens=16)
    first = [r.text for r in local.generate([asked(p, warm, seed=7) for p in PROMPTS])]
    again = [r.text for r in local.generate([asked(p, warm, seed=7) for p in PROMPTS])]
    other = [r.text for r in local.generate([asked(p, warm, seed=8) for p in PROMPTS])]
    assert first == again
    assert first != other


def test_a_stop_string_ends_the_text_before_it(local: LocalGenerator) -> None:
    (free,) = local.generate([asked(PROMPTS[0], Sampling(temperature=0.0, max_tokens=24))])
    stop = next((c for c in free.text if c != free.text[0]), None)
    assert stop is not None, f"the tiny model repeats one character: {free.text!r}"
    (stopped,) = local.generate([asked(PROMPTS[0], Sampling(temperature=0.0, max_tokens=24, stop=(stop,)))])
    assert stopped.text == free.text[: free.text.find(stop)]
    assert stopped.finish_reason == "stop"

    # The prompt ends "assistant:": a stop string that spans into it is not in the generated text.
    across = ":" + free.text[0]
    (kept,) = local.generate([asked(PROMPTS[0], Sampling(temperature=0.0, max_tokens=24, stop=(across,)))])
    assert kept.text == (free.text[: free.text.find(across)] if across in free.text else free.text)


def test_the_chat_template_is_used_when_the_model_has_one(tmp_path: Path) -> None:
    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]"
    generator = LocalGenerator(LocalModelConfig(str(tiny_model_dir(tmp_path, chat_template=template)), device="cpu"))
    request = GenerationRequest(messages=(Message("system", "Be brief."), Message("user", "Hello")), sampling=GREEDY)
    (result,) = generator.generate([request])
    assert isinstance(result, Generation)
    assert generator.prompt_text(request) == "[system] Be brief.\n[user] Hello\n[assistant]"


def test_a_directory_that_is_not_a_model_fails_every_row_and_names_it(tmp_path: Path) -> None:
    generator = LocalGenerator(LocalModelConfig(str(tmp_path / "nowhere"), device="cpu"))
    results = generator.generate([asked("a"), asked("b")])
    assert all(isinstance(r, GenerationFailure) and r.kind == "model" for r in results)
    assert str(tmp_path / "nowhere") in results[0].message


# --- the chat-completions protocol --------------------------------------------


def test_an_endpoint_carries_the_request_and_the_reply_through_the_protocol(server, local) -> None:
    client, slept = endpoint(server, concurrency=2)
    requests = [asked(p, Sampling(temperature=0.0, max_tokens=10, stop=("\n\n",)), seed=3) for p in PROMPTS]
    results = client.generate(requests)
    assert [r.text for r in results] == [r.text for r in local.generate(requests)], "the model's own answers"
    assert all(isinstance(r, Generation) and r.source == client.key for r in results)
    assert all(r.completion_tokens > 0 and r.prompt_tokens > 0 for r in results), "usage is recorded"
    sent = sorted(server.received, key=lambda r: r["body"]["messages"][0]["content"])
    assert {r["body"]["model"] for r in sent} == {"tiny"}
    assert {(r["body"]["seed"], r["body"]["max_tokens"], tuple(r["body"]["stop"]), r["body"]["n"]) for r in sent} == {
        (3, 10, ("\n\n",), 1)
    }
    assert sorted(r["body"]["messages"][0]["content"] for r in sent) == sorted(PROMPTS)
    assert slept == []


def test_the_api_key_comes_from_the_environment_and_a_refusal_is_not_retried(local, monkeypatch) -> None:
    with ChatServer(generator=local, api_key="sk-test-123") as server:
        client, slept = endpoint(server, api_key_env="PREFLOOP_TEST_GENERATOR_KEY")
        monkeypatch.delenv("PREFLOOP_TEST_GENERATOR_KEY", raising=False)
        (refused,) = client.generate([asked("hello")])
        assert isinstance(refused, GenerationFailure)
        assert (refused.kind, refused.status, refused.attempts) == ("http", 401, 1)
        assert "Incorrect API key provided" in refused.message and slept == []

        monkeypatch.setenv("PREFLOOP_TEST_GENERATOR_KEY", "sk-test-123")
        (answered,) = client.generate([asked("hello")])
        assert isinstance(answered, Generation)
        assert server.received[-1]["authorization"] == "Bearer sk-test-123"
        assert "sk-test-123" not in client.key and "sk-test-123" not in request_key(client.key, asked("hello"))


def test_429_waits_as_the_server_asks_and_5xx_backs_off_doubling(server) -> None:
    client, slept = endpoint(server, backoff_s=1.0, max_backoff_s=30.0)
    server.fail_next(Fault(status=429, retry_after=7))
    (result,) = client.generate([asked("hello")])
    assert isinstance(result, Generation) and slept == [7.0]

    slept.clear()
    server.fail_next(Fault(status=500), Fault(status=503))
    (result,) = client.generate([asked("hello")])
    assert isinstance(result, Generation)
    assert len(slept) == 2 and 0.5 <= slept[0] <= 1.0 and 1.0 <= slept[1] <= 2.0, slept


def test_a_server_that_keeps_failing_gives_a_failure_after_the_retries(server) -> None:
    client, slept = endpoint(server, max_retries=2)
    server.fail_next(*[Fault(status=500)] * 3)
    (result,) = client.generate([asked("hello")])
    assert isinstance(result, GenerationFailure)
    assert (result.kind, result.status, result.attempts) == ("http", 500, 3)
    assert "injected 500" in result.message and len(slept) == 2


def test_a_stalled_reply_times_out(server) -> None:
    client, _ = endpoint(server, timeout_s=0.3, max_retries=0)
    server.fail_next(Fault(stall_s=30))
    (result,) = client.generate([asked("hello")])
    assert isinstance(result, GenerationFailure) and result.kind == "timeout"
    assert "0.3 s" in result.message


def test_a_reply_that_is_not_a_chat_completion_fails_its_row_only(server) -> None:
    client, slept = endpoint(server, concurrency=1)
    server.fail_next(Fault(malformed=True))
    results = client.generate([asked(p) for p in PROMPTS])
    assert isinstance(results[0], GenerationFailure) and results[0].kind == "malformed"
    assert results[0].attempts == 1 and slept == [], "a malformed reply is not asked again"
    assert all(isinstance(r, Generation) for r in results[1:]), "the other rows stand"


def test_an_unknown_model_and_an_unreachable_server_say_so(server) -> None:
    config = EndpointConfig(base_url=server.base_url, model="no-such-model")
    (unknown,) = ChatCompletionsGenerator(config, sleep=lambda s: None).generate([asked("hello")])
    assert isinstance(unknown, GenerationFailure) and unknown.status == 404 and "no-such-model" in unknown.message

    closed = EndpointConfig(base_url="http://127.0.0.1:9/v1", model="tiny", max_retries=1)
    slept: list[float] = []
    (unreachable,) = ChatCompletionsGenerator(closed, sleep=slept.append).generate([asked("hello")])
    assert isinstance(unreachable, GenerationFailure) and unreachable.kind == "connection"
    assert unreachable.attempts == 2 and len(slept) == 1


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        EndpointConfig(base_url="ftp://example.org", model="m")
    with pytest.raises(ValueError, match="model"):
        EndpointConfig(base_url="http://127.0.0.1/v1", model="")
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=-1)
    with pytest.raises(ValueError, match="role"):
        Message("robot", "beep")


# --- the cache -----------------------------------------------------------------


def test_a_rerun_is_answered_from_the_cache_and_a_failure_is_asked_again(server, tmp_path: Path) -> None:
    client, _ = endpoint(server, concurrency=1)
    cache_path = tmp_path / "generations.sqlite3"
    cached = CachedGenerator(client, GenerationCache(cache_path))
    requests = [asked(p, Sampling(temperature=0.9, max_tokens=8), seed=k) for k, p in enumerate(PROMPTS)]

    server.fail_next(Fault(status=400))
    first = cached.generate(requests)
    assert isinstance(first[0], GenerationFailure) and all(isinstance(r, Generation) for r in first[1:])
    assert len(server.received) == 3 and len(cached.cache) == 2

    # Another process, the same file: only the failed row goes to the server.
    again = CachedGenerator(client, GenerationCache(cache_path)).generate(requests)
    assert len(server.received) == 4
    assert [r.text for r in again[1:]] == [r.text for r in first[1:]]
    assert [r.cached for r in again] == [False, True, True]


def test_the_same_request_twice_in_a_batch_is_generated_once(server) -> None:
    client, _ = endpoint(server)
    cached = CachedGenerator(client, GenerationCache())
    results = cached.generate([asked("hello", seed=1), asked("hello", seed=1), asked("hello", seed=2)])
    assert len(server.received) == 2
    assert results[0].text == results[1].text and (results[0].cached, results[1].cached) == (False, True)


def test_the_cache_key_names_everything_that_changes_the_answer() -> None:
    base = asked("hello", Sampling(temperature=0.7), seed=1)
    keys = {
        request_key("a", base),
        request_key("b", base),
        request_key("a", asked("hello", Sampling(temperature=0.8), seed=1)),
        request_key("a", asked("hello", Sampling(temperature=0.7), seed=2)),
        request_key("a", asked("hello!", Sampling(temperature=0.7), seed=1)),
        request_key("a", GenerationRequest.from_prompt("hello", system="Be brief.", sampling=Sampling(0.7), seed=1)),
    }
    assert len(keys) == 6
    assert request_key("a", base) == request_key("a", asked("hello", Sampling(temperature=0.7), seed=1))


def test_a_reply_is_cut_where_the_model_runs_out_of_positions(local: LocalGenerator) -> None:
    # The tiny model reads 256 positions; asking for 1,000 new tokens is cut there, not an error.
    (long,) = local.generate([asked(PROMPTS[0], Sampling(temperature=1.0, max_tokens=1000), seed=1)])
    assert isinstance(long, Generation)
    assert long.prompt_tokens + long.completion_tokens <= 256
    assert long.finish_reason in ("stop", "length")
    (too_long,) = local.generate([asked("bread " * 400)])
    assert isinstance(too_long, GenerationFailure) and "at most 256" in too_long.message
