"""Embedding at import time, in batches, on its own queue, with progress; refills never embed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest
from django.db import transaction

from activelearn import embedding, features, refill, services, tasks, triggers
from annotation.imports.records import CandidateRecord, PromptRecord
from annotation.imports.writer import study_import_records
from annotation.models import Candidate, Comparison, EmbeddingProgress, Judgment, Prompt, Study
from models_runtime.embedding import CachedEmbedder
from webapp.celery import app as celery_app


class CountingEmbedder:
    """A small deterministic embedder that records every call (and can fail on one).

    ``on_call`` runs before each batch is encoded, so a test can look at the
    progress the task has written so far, or add candidates mid-run."""

    model_key = "counting-16"
    dim = 16

    def __init__(self, fail_on_call: int | None = None, on_call=None) -> None:
        self.calls: list[int] = []
        self.fail_on_call = fail_on_call
        self.on_call = on_call

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        if self.on_call is not None:
            self.on_call(len(self.calls))
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("encoder crashed")
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            vec = np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(vec / np.linalg.norm(vec))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)


@pytest.fixture
def use_embedder(monkeypatch):
    """Make the loop use ``CountingEmbedder`` instances over the real database cache."""

    def use(fake: CountingEmbedder) -> CountingEmbedder:
        cached = CachedEmbedder(fake, features.DatabaseEmbeddingCache())
        monkeypatch.setattr(features, "embedder_get", lambda: cached)
        return fake

    return use


def _cached_count(study: Study) -> int:
    cached = features.embedder_get()
    keys = [cached.key_for(item.text) for item in features.study_embedding_inputs(study_id=study.id)]
    return len(features.cached_keys(cached, keys))


def _records(n_prompts: int, tag: str = "") -> list[PromptRecord]:
    return [
        PromptRecord(
            external_id="",
            text=f"prompt {tag}{p}",
            format=Prompt.Format.TEXT,
            metadata={},
            candidates=tuple(CandidateRecord(text=f"reply {tag}{p}.{c}", source="m", metadata={}) for c in range(2)),
            line=p + 1,
        )
        for p in range(n_prompts)
    ]


@pytest.mark.django_db
def test_an_import_asks_the_loop_to_embed_on_commit_only(loop_calls, django_capture_on_commit_callbacks):
    study = Study.objects.create(name="Imported", slug="imported")
    with django_capture_on_commit_callbacks() as callbacks:
        study_import_records(study=study, records=_records(3))
        assert loop_calls.embed == [], "nothing is enqueued before the import commits"
    for callback in callbacks:
        callback()
    assert loop_calls.embed == [study.id]

    with django_capture_on_commit_callbacks() as later:
        with pytest.raises(RuntimeError), transaction.atomic():
            study_import_records(study=study, records=_records(2, tag="rolled back "))
            raise RuntimeError("the import's transaction fails")
        study_import_records(study=study, records=_records(3))  # nothing new
    assert later == [], "neither a rolled-back import nor a duplicate one asks again"


@pytest.mark.django_db
def test_the_embed_task_fills_the_cache_batch_by_batch_and_progress_reaches_total(make_study, use_embedder):
    study = make_study(embedded=False)
    seen_done: list[int] = []
    fake = use_embedder(
        CountingEmbedder(on_call=lambda _: seen_done.append(EmbeddingProgress.objects.get(study=study).done))
    )
    assert embedding.embedding_claim(study_id=study.id)
    assert tasks.embed_study.apply(args=(study.id,)).get() == 20

    assert fake.calls == [4, 4, 4, 4, 4], "batches of PREFLOOP_EMBED_BATCH_SIZE"
    assert seen_done == [0, 4, 8, 12, 16], "progress is written after every batch"
    progress = EmbeddingProgress.objects.get(study=study)
    assert (progress.status, progress.done, progress.total) == ("done", 20, 20)
    assert progress.claimed_at is None and progress.finished_at is not None
    assert progress.embedder_key == "counting-16"
    assert _cached_count(study) == 20
    # Idempotent: a second run finds everything cached and encodes nothing.
    assert embedding.study_embed(study_id=study.id).embedded == 0
    assert len(fake.calls) == 5


@pytest.fixture(autouse=True)
def _small_batches(settings):
    settings.PREFLOOP_EMBED_BATCH_SIZE = 4


@pytest.mark.django_db
def test_a_crash_keeps_the_finished_batches_and_a_rerun_continues(make_study, use_embedder):
    study = make_study(embedded=False)
    use_embedder(CountingEmbedder(fail_on_call=3))
    embedding.embedding_claim(study_id=study.id)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        embedding.study_embed(study_id=study.id)
    progress = EmbeddingProgress.objects.get(study=study)
    assert (progress.status, progress.done, progress.total) == ("failed", 8, 20)
    assert "encoder crashed" in progress.error
    assert progress.claimed_at is None, "a failed run releases its claim, so the next request starts one"
    assert _cached_count(study) == 8

    again = use_embedder(CountingEmbedder())
    assert embedding.embedding_claim(study_id=study.id)
    assert embedding.study_embed(study_id=study.id).embedded == 12
    assert sum(again.calls) == 12, "only what is still missing is encoded"
    progress.refresh_from_db()
    assert (progress.status, progress.done, progress.total, progress.error) == ("done", 20, 20, "")


@pytest.mark.django_db
def test_candidates_added_during_a_run_are_embedded_by_the_same_task(make_study, use_embedder):
    study = make_study(embedded=False)
    claims: list[bool] = []
    started: list = []

    def add_one(call: int) -> None:
        if call == 1:
            started.append(EmbeddingProgress.objects.get(study=study).started_at)
            prompt = Prompt.objects.filter(study=study).first()
            Candidate.objects.create(study=study, prompt=prompt, text="a late reply", content_hash="late")
            claims.append(embedding.embedding_claim(study_id=study.id) is not None)

    fake = use_embedder(CountingEmbedder(on_call=add_one))
    assert embedding.embedding_claim(study_id=study.id)
    outcome = embedding.study_embed(study_id=study.id)
    assert claims == [False], "a second request while the task runs starts no second task"
    assert (outcome.embedded, outcome.total) == (21, 21) and sum(fake.calls) == 21
    progress = EmbeddingProgress.objects.get(study=study)
    assert (progress.status, progress.done, progress.total, progress.pending) == ("done", 21, 21, False)
    assert progress.started_at == started[0], "the run's start is kept across its rounds"


@pytest.mark.django_db
@pytest.mark.loop
def test_embed_requests_are_debounced_and_enqueued_on_commit(
    make_study, monkeypatch, django_capture_on_commit_callbacks
):
    study = make_study(embedded=False)
    enqueued: list[int] = []
    monkeypatch.setattr(tasks.embed_study, "delay", lambda study_id, claim: enqueued.append(study_id))
    with django_capture_on_commit_callbacks(execute=True):
        assert triggers.embed_request(study_id=study.id)
        assert enqueued == [], "not before the commit"
    assert not triggers.embed_request(study_id=study.id), "one task per study at a time"
    assert enqueued == [study.id]
    assert EmbeddingProgress.objects.get(study=study).status == "queued"


def test_embedding_has_a_queue_of_its_own_apart_from_imports_and_refills():
    route = celery_app.amqp.router.route
    assert route({}, "activelearn.tasks.embed_study")["queue"].name == "embed"
    assert route({}, "annotation.tasks.import_job_run")["queue"].name == "default"
    assert route({}, "activelearn.tasks.refill_queue")["queue"].name == "select"
    assert "embed" in {queue.name for queue in celery_app.conf.task_queues}


@pytest.mark.django_db
def test_refills_and_retrains_do_not_embed_what_the_embed_queue_has_not_reached(
    make_study, annotators, member, use_embedder, loop_calls, judge
):
    study = make_study(embedded=False, queue_target=8)
    member(study)
    fake = use_embedder(CountingEmbedder())
    assert refill.queue_refill(study_id=study.id, seed=0) == 8
    assert fake.calls == [], "the cold-start refill needs no embeddings"
    assert loop_calls.embed == []

    judge(study, annotators[0], 6)
    judged = features.study_judged_candidate_ids(study_id=study.id)
    version = services.reward_model_fit(study_id=study.id)
    assert version is not None and version.n_judgments == Judgment.objects.filter(study=study).count()
    assert sum(fake.calls) == len(judged) < 20, "a retrain embeds the judged candidates only"

    fake.calls.clear()
    created = refill.queue_refill(study_id=study.id, seed=1)
    assert fake.calls == [], "a refill never runs the encoder"
    assert created > 0
    assert Comparison.objects.filter(study=study, model_version=version, status="queued").exists()
    picked = set(
        Comparison.objects.filter(study=study, model_version=version, strategy="uncertainty").values_list(
            "items__candidate_id", flat=True
        )
    )
    assert picked <= judged, "the model steers among the embedded candidates only"
    assert loop_calls.embed == [study.id], "the missing embeddings are asked for again"
