"""Generated candidates (issue 17): a study's prompts answered by a chat-completions
server on 127.0.0.1 (a tiny random GPT-2 built in the test) or by the local model
itself, stored as candidates of their prompts, with failures reported per row."""

from __future__ import annotations

import json
import shutil
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


# --- sources and runs from the study page ---------------------------------------


@pytest.fixture
def models_root(settings, tmp_path, model_dir) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(model_dir, root / "tiny")
    (root / "escape").symlink_to(model_dir, target_is_directory=True)  # resolves outside the folder
    settings.PREFLOOP_LOCAL_MODELS_DIR = root
    settings.PREFLOOP_VAR_DIR = tmp_path
    return root


def test_a_source_is_checked_before_it_is_kept(study, models_root, settings) -> None:
    from django.core.exceptions import ValidationError

    from annotation.services.generation import generation_source_create

    def refused(**fields) -> dict:
        with pytest.raises(ValidationError) as caught:
            generation_source_create(study=study, **{"name": "s", "kind": "endpoint", **fields})
        return caught.value.message_dict

    assert set(refused(base_url="", model="")) == {"base_url", "model"}
    # Any variable would let a researcher send the worker's secrets to the URL they typed.
    assert "api_key_env" in refused(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="SECRET_KEY")
    assert "base_url" in refused(base_url="http://169.254.169.254/latest", model="m")
    assert "base_url" in refused(base_url="http://metadata.google.internal/v1", model="m")
    assert "model_path" in refused(kind="local", model_path="../../etc")
    assert "model_path" in refused(kind="local", model_path="missing")
    assert "model_path" in refused(kind="local", model_path="escape")
    assert "temperature" in refused(base_url="http://127.0.0.1:9/v1", model="m", temperature=9.0)

    settings.PREFLOOP_GENERATOR_KEY_VARS = ("OPENAI_API_KEY",)
    for name, key in (("a", "OPENAI_API_KEY"), ("b", "PREFLOOP_GENERATOR_KEY_LAB")):
        generation_source_create(
            study=study, name=name, kind="endpoint", base_url="http://h/v1", model="m", api_key_env=key
        )
    local = generation_source_create(study=study, name="local", kind="local", model_path="tiny")
    assert local.model_path == str((models_root / "tiny").resolve())
    assert "name" in refused(name="a", base_url="http://h/v1", model="m")


def test_a_researcher_adds_a_source_starts_a_run_and_sees_it_finish(
    server, study, client_for, make_member, models_root, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    from annotation.models import GenerationJob, GenerationSource, Membership
    from webapp.celery import app as celery_app

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", True)
    client = client_for(make_member(study, role=Membership.Role.RESEARCHER))
    page = f"/s/{study.slug}/"

    added = client.post(
        f"/s/{study.slug}/generation/sources/",
        {
            "name": "tiny-api",
            "kind": "endpoint",
            "base_url": server.base_url,
            "model": "tiny",
            "temperature": "1.0",
            "max_tokens": "6",
        },
        follow=True,
    )
    assert "Source &#x27;tiny-api&#x27; added" in added.content.decode()
    source = GenerationSource.objects.get(study=study)
    assert (source.model, source.max_tokens) == ("tiny", 6)
    html = client.get(page).content.decode()
    assert 'id="generation-start"' in html and server.base_url in html
    assert f"<title>{study.name} · prefloop</title>" in html, "the card lives in the page's content, not its title"

    refused = client.post(f"/s/{study.slug}/generation/sources/", {"name": "x", "kind": "endpoint"}, follow=True)
    assert "Source not added" in refused.content.decode() and "Endpoint URL" in refused.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            f"/s/{study.slug}/generation/start/", {"source": source.pk, "per_prompt": "2", "seed": "0"}, follow=True
        )
    assert "Generating 2 response(s) for each of 3 prompt(s)" in started.content.decode()
    job = GenerationJob.objects.get(study=study)
    assert (job.status, job.prompts_done, job.prompts_total) == ("done", 3, 3)
    assert job.result["requested"] == 6 and job.result["failed"] == 0
    assert Candidate.objects.filter(study=study, source="tiny-api").count() == job.result["candidates_created"] > 0

    listed = client.get(f"/s/{study.slug}/generation/jobs/", HTTP_HX_REQUEST="true").content.decode()
    assert f'id="generation-job-{job.pk}"' in listed and "hx-trigger" not in listed, "a finished run is not polled"
    assert f"{job.result['candidates_created']} added" in listed


def test_a_run_whose_every_row_fails_says_why_and_a_running_one_is_polled(study, models_root, client_for, make_member):
    from annotation.models import GenerationJob, Membership
    from annotation.services.generation import generation_job_create, generation_job_run, generation_source_create

    source = generation_source_create(
        study=study, name="down", kind="endpoint", base_url="http://127.0.0.1:9/v1", model="m"
    )
    job = generation_job_create(study=study, source=source, per_prompt=1)
    client = client_for(make_member(study, role=Membership.Role.RESEARCHER))
    assert (
        'hx-trigger="every 2s"'
        in client.get(f"/s/{study.slug}/generation/jobs/", HTTP_HX_REQUEST="true").content.decode()
    )

    unreachable = client_of_config(EndpointConfig(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0))
    done = generation_job_run(job_id=job.pk, generator=unreachable)
    assert done.status == GenerationJob.Status.FAILED
    assert done.error.startswith("No response could be generated: could not reach")
    assert len(done.errors) == 3 and done.errors[0]["kind"] == "connection"
    assert generation_job_run(job_id=job.pk, generator=unreachable).status == "failed", "a finished job is left alone"


def client_of_config(config: EndpointConfig) -> ChatCompletionsGenerator:
    return ChatCompletionsGenerator(config, sleep=lambda seconds: None)


def test_the_api_adds_a_source_starts_a_run_and_reports_it(
    server, study, make_member, models_root, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    from annotation.models import Membership
    from tests.annotation.test_api import api_as
    from webapp.celery import app as celery_app

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", True)
    client = api_as(make_member(study, role=Membership.Role.RESEARCHER))
    base = f"/api/v1/studies/{study.slug}"

    refused = client.post(f"{base}/generation-sources/", {"name": "k", "base_url": server.base_url, "model": "tiny",
                                                          "api_key_env": "DATABASE_URL"}, format="json")  # fmt: skip
    assert refused.status_code == 400 and "api_key_env" in refused.json()["fields"]
    created = client.post(
        f"{base}/generation-sources/",
        {"name": "tiny-api", "base_url": server.base_url, "model": "tiny", "max_tokens": 6},
        format="json",
    )
    assert created.status_code == 201, created.json()
    source = created.json()
    assert (source["kind"], source["model"], source["max_tokens"]) == ("endpoint", "tiny", 6)
    assert [s["name"] for s in client.get(f"{base}/generation-sources/").json()] == ["tiny-api"]

    assert client.post(f"{base}/generation-jobs/", {"source": 999999}, format="json").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        accepted = client.post(f"{base}/generation-jobs/", {"source": source["id"], "per_prompt": 1}, format="json")
    assert accepted.status_code == 202 and accepted["Location"] == accepted.json()["url"]
    run = client.get(accepted.json()["url"]).json()
    assert (run["status"], run["source"], run["prompts_done"], run["percent"]) == ("done", "tiny-api", 3, 100)
    assert run["result"]["requested"] == 3 and run["errors"] == []
    assert [r["id"] for r in client.get(f"{base}/generation-jobs/").json()] == [run["id"]]
    assert client.get(f"{base}/generation-jobs/999999/").status_code == 404


def test_regeneration_asks_only_where_the_best_response_is_unclear(server, study, models_root) -> None:
    from django.core.exceptions import ValidationError

    from annotation.models import RewardModelVersion
    from annotation.services.generation import (
        generation_job_create,
        generation_job_run,
        generation_source_create,
        prompts_unclear,
    )

    lonely, clear, close = Prompt.objects.filter(study=study).order_by("pk")
    closest = PromptFactory(study=study, text="Question 3")
    for prompt in (clear, close, closest):
        for k in range(3):
            CandidateFactory(prompt=prompt, text=f"Answer {k} to {prompt.pk}")
    CandidateFactory(prompt=lonely, text="The only answer.")

    def board(p_best: float, low: float) -> dict:
        return {"runner_up": {"candidate": 0, "preferred": 0.7, "low": low, "high": 0.9},
                "leaderboard": [{"candidate": 0, "mean": 0.0, "std": 1.0, "p_best": p_best}]}  # fmt: skip

    assert prompts_unclear(study=study, limit=10) == [lonely.pk], "without a model: prompts that cannot be compared"
    RewardModelVersion.objects.create(
        study=study, version=1, model_type="kernel_bt", embedder_key="k", n_judgments=30, checkpoint_path="/nowhere",
        recommendation={"prompts": {str(clear.pk): board(0.95, 0.8), str(close.pk): board(0.5, 0.3),
                                    str(closest.pk): board(0.4, 0.45)}},
    )  # fmt: skip
    assert prompts_unclear(study=study, limit=10) == [lonely.pk, closest.pk, close.pk]
    assert prompts_unclear(study=study, limit=2) == [lonely.pk, closest.pk]

    # Greedy: the random model's sampled bytes may hold a NUL, a row the database cannot store.
    source = generation_source_create(
        study=study, name="tiny", kind="endpoint", base_url=server.base_url, model="tiny", temperature=0.0, max_tokens=8
    )
    first = generation_job_create(study=study, source=source, per_prompt=2)
    again = generation_job_create(study=study, source=source, per_prompt=1, prompts="unclear", limit=2)
    assert (first.seed, again.seed) == (0, 2), "a new run asks for new responses, not the cached ones"
    asked = len(server.received)
    done = generation_job_run(job_id=again.pk, generator=client_of(server))
    assert done.status == "done", done.error
    assert done.result["prompts"] == 2 and len(server.received) == asked + 2
    assert set(Candidate.objects.filter(source="tiny").values_list("prompt_id", flat=True)) <= {lonely.pk, closest.pk}

    RewardModelVersion.objects.filter(study=study).update(recommendation={"prompts": {}})
    Candidate.objects.create(study=study, prompt=lonely, text="A second answer.", content_hash="x" * 64)
    with pytest.raises(ValidationError, match="already clear"):
        generation_job_create(study=study, source=source, per_prompt=1, prompts="unclear")


def test_a_response_the_database_cannot_store_is_a_failed_row(study) -> None:
    class Nul:
        key = "nul"

        def generate(self, requests):
            from models_runtime.generation import Generation

            return [Generation("bad\x00text", "stop", 1, 1, "nul") for _ in requests]

    outcome = study_generate(
        study=study, generator=Nul(), source="nul", per_prompt=1, sampling=WARM, cache=GenerationCache()
    )
    assert outcome.failed == 3 and outcome.errors[0].kind == "unstorable" and "NUL" in outcome.errors[0].message
    assert not Candidate.objects.filter(study=study).exists()


def _unclear_study(study) -> list[int]:
    """Three prompts whose best response the live model cannot tell, least clear first."""
    from annotation.models import RewardModelVersion

    prompts = list(Prompt.objects.filter(study=study).order_by("pk"))
    for prompt in prompts:
        for k in range(2):
            CandidateFactory(prompt=prompt, text=f"Answer {k} to {prompt.pk}")
    board = {"runner_up": {"candidate": 0, "preferred": 0.6, "low": 0.4, "high": 0.8},
             "leaderboard": [{"candidate": 0, "mean": 0.0, "std": 1.0, "p_best": 0.5}]}  # fmt: skip
    RewardModelVersion.objects.create(
        study=study, version=1, model_type="kernel", embedder_key="k", n_judgments=30, checkpoint_path="/nowhere",
        recommendation={"prompts": {str(p.pk): board for p in prompts}},
    )  # fmt: skip
    return [p.pk for p in prompts]


def test_the_loop_regenerates_after_a_new_model_one_round_at_a_time_within_its_rounds(study) -> None:
    from django.core.exceptions import ValidationError

    from annotation.models import GenerationJob, GenerationSource
    from annotation.services.generation import regeneration_configure, regeneration_round_start

    unclear = _unclear_study(study)
    source = GenerationSource.objects.create(study=study, name="tiny", base_url="http://127.0.0.1:9/v1", model="m")
    assert regeneration_round_start(study_id=study.pk) is None, "off until a source is chosen"

    regeneration_configure(study=study, source_id=source.pk, per_prompt=3, prompts=2, rounds=2)
    first = regeneration_round_start(study_id=study.pk)
    assert first is not None and first.reason == "auto" and first.source == source
    assert first.per_prompt == 3 and first.prompt_ids == unclear[:2]
    assert regeneration_round_start(study_id=study.pk) is None, "one round at a time"
    GenerationJob.objects.filter(pk=first.pk).update(status=GenerationJob.Status.DONE)
    second = regeneration_round_start(study_id=study.pk)
    assert second is not None and second.seed == first.seed + 3, "new seeds: new responses, not cached ones"
    GenerationJob.objects.filter(pk=second.pk).update(status=GenerationJob.Status.DONE)
    assert regeneration_round_start(study_id=study.pk) is None, "two rounds at most"

    other = StudyFactory()
    foreign = GenerationSource.objects.create(study=other, name="x", base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ValidationError, match="another study"):
        regeneration_configure(study=study, source_id=foreign.pk, per_prompt=1, prompts=1, rounds=1)
    with pytest.raises(ValidationError) as refused:
        regeneration_configure(study=study, source_id=source.pk, per_prompt=9, prompts=0, rounds=1)
    assert set(refused.value.message_dict) == {"regenerate_per_prompt", "regenerate_prompts"}


def test_a_published_model_starts_a_round_in_the_worker(study, monkeypatch) -> None:
    """The retrain task asks for a round after publishing and enqueues its run."""
    from types import SimpleNamespace

    from activelearn import services as loop_services
    from activelearn import tasks as loop_tasks
    from activelearn import triggers
    from annotation import tasks as annotation_tasks
    from annotation.models import GenerationSource
    from annotation.services.generation import regeneration_configure

    _unclear_study(study)
    source = GenerationSource.objects.create(study=study, name="tiny", base_url="http://127.0.0.1:9/v1", model="m")
    regeneration_configure(study=study, source_id=source.pk, per_prompt=1, prompts=5, rounds=1)
    version = SimpleNamespace(version=2)
    outcome = SimpleNamespace(version=version, again_in=None, claim=None)
    monkeypatch.setattr(loop_services, "reward_model_retrain", lambda **kwargs: outcome)
    monkeypatch.setattr(triggers, "refill_request", lambda **kwargs: None)
    sent = []
    monkeypatch.setattr(annotation_tasks.generation_job_run, "delay", lambda job_id: sent.append(job_id))
    assert loop_tasks.retrain_study(study.pk) == 2
    assert len(sent) == 1 and study.generation_jobs.get().pk == sent[0]
    assert loop_tasks.retrain_study(study.pk) == 2 and len(sent) == 1, "no second round while one is unfinished"


def test_a_researcher_turns_regeneration_on_and_off_from_the_study_page(study, client_for, make_member) -> None:
    from django.urls import reverse

    from annotation.models import GenerationSource, Membership

    researcher = make_member(study, role=Membership.Role.RESEARCHER)
    source = GenerationSource.objects.create(study=study, name="tiny", base_url="http://127.0.0.1:9/v1", model="m")
    client = client_for(researcher)
    page = client.get(reverse("study_detail", args=[study.slug])).content.decode()
    assert 'id="regeneration-form"' in page and "<strong>Off</strong>" in page
    url = reverse("regeneration_set", args=[study.slug])
    answer = client.post(url, {"source": source.pk, "per_prompt": 2, "prompts": 5, "rounds": 3}, follow=True)
    assert "After each new model, &#x27;tiny&#x27; will be asked for 2 response(s)" in answer.content.decode()
    study.refresh_from_db()
    assert (study.regenerate_source, study.regenerate_per_prompt, study.regenerate_rounds) == (source, 2, 3)
    assert "<strong>On</strong>: 0 of 3 rounds used" in answer.content.decode()
    refused = client.post(url, {"source": source.pk, "per_prompt": 20, "prompts": 5, "rounds": 3}, follow=True)
    assert "Regeneration not changed. Responses per prompt:" in refused.content.decode()
    client.post(url, {"source": "", "per_prompt": 2, "prompts": 5, "rounds": 3})
    study.refresh_from_db()
    assert study.regenerate_source is None


def test_the_api_reads_and_sets_automatic_regeneration(study, make_member) -> None:
    from rest_framework.test import APIClient

    from annotation.models import GenerationSource, Membership

    researcher = make_member(study, role=Membership.Role.RESEARCHER)
    source = GenerationSource.objects.create(study=study, name="tiny", base_url="http://127.0.0.1:9/v1", model="m")
    api = APIClient()
    api.force_authenticate(researcher)
    url = f"/api/v1/studies/{study.slug}/regeneration/"
    assert api.get(url).json() == {"source": None, "per_prompt": 2, "prompts": 10, "rounds": 3, "rounds_used": 0}
    answer = api.put(url, {"source": source.pk, "per_prompt": 4, "prompts": 5, "rounds": 1}, format="json")
    assert answer.status_code == 200 and answer.json()["source"] == source.pk and answer.json()["per_prompt"] == 4
    foreign = GenerationSource.objects.create(
        study=StudyFactory(), name="x", base_url="http://127.0.0.1:9/v1", model="m"
    )
    refused = api.put(url, {"source": foreign.pk}, format="json")
    assert refused.status_code == 400 and "another study" in refused.json()["detail"]
    assert api.put(url, {"source": None}, format="json").json()["source"] is None
