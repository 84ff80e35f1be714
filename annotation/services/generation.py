"""Generating candidate responses for a study's prompts (issue 17).

``study_generate`` asks a generator (``models_runtime.generation``: an
OpenAI-compatible endpoint or a local model) for ``per_prompt`` responses to
each prompt, seeds ``seed`` … ``seed + per_prompt − 1``, and stores each as a
candidate of its prompt. Work goes in batches of ``batch_prompts`` prompts,
each written in a transaction of its own, so a stopped run keeps what it
stored and a re-run, whose requests the generation cache answers, adds only
what is missing. A row that could not be generated (the server refused, timed
out, or the text cannot be stored) is reported and the others are kept. New
candidates go to the loop as an import's do: embedded in the background, and
the queue refilled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from annotation import loop
from annotation.imports.records import candidate_content_hash
from annotation.imports.storable import text_problem
from annotation.models import Candidate, Prompt, Study
from models_runtime.context import turns_of
from models_runtime.generation import (
    CachedGenerator,
    Generation,
    GenerationCache,
    GenerationRequest,
    Generator,
    Message,
    Sampling,
)

__all__ = ["GenerationOutcome", "GenerationRowError", "generation_cache", "prompt_messages", "study_generate"]

# The roles of models_runtime.context.turns_of's speakers in a chat request.
_ROLES = {"Human": "user", "Assistant": "assistant", "System": "system"}
# Failures a run keeps in detail (all are counted).
ERRORS_KEPT = 200


@dataclass(frozen=True)
class GenerationRowError:
    """One response that could not be had: its prompt, its seed and why."""

    prompt_id: int
    seed: int
    kind: str
    message: str


@dataclass
class GenerationOutcome:
    """What a run did; tokens are those the generator reported for fresh generations."""

    prompts: int = 0
    requested: int = 0
    candidates_created: int = 0
    duplicates_skipped: int = 0
    from_cache: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed: int = 0
    errors: list[GenerationRowError] = field(default_factory=list)


def generation_cache() -> GenerationCache:
    """The generation cache every run of this installation shares (``<PREFLOOP_VAR_DIR>/generations.sqlite3``)."""
    return GenerationCache(settings.PREFLOOP_VAR_DIR / "generations.sqlite3")


def prompt_messages(prompt: Prompt, *, system: str = "") -> tuple[Message, ...]:
    """A prompt as a chat request's messages: a conversation's turns as they are,
    an HH transcript split at its markers, any other text one user turn;
    ``system`` first when given."""
    turns = [Message("system", system)] if system else []
    for speaker, text in turns_of(prompt.text, prompt.format):
        turns.append(Message(_ROLES.get(speaker, "user"), text))
    return tuple(turns)


def study_generate(
    *,
    study: Study,
    generator: Generator,
    source: str,
    per_prompt: int,
    sampling: Sampling,
    system: str = "",
    seed: int = 0,
    prompt_ids: Sequence[int] | None = None,
    batch_prompts: int = 16,
    cache: GenerationCache | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> GenerationOutcome:
    """Generate ``per_prompt`` responses for each of the study's prompts (or of
    ``prompt_ids``) and store them as candidates whose ``source`` is ``source``
    (see the module docstring). ``on_progress(prompts done, prompts)`` is called
    after each batch. The cache is the installation's unless one is given."""
    if per_prompt < 1:
        raise ValueError(f"per_prompt must be at least 1, not {per_prompt}")
    if not source.strip():
        raise ValueError("a generation run needs a source name (shown to researchers, stored on each candidate)")
    cached = CachedGenerator(generator, cache if cache is not None else generation_cache())
    prompts = Prompt.objects.filter(study=study).order_by("pk")
    if prompt_ids is not None:
        prompts = prompts.filter(pk__in=list(prompt_ids))
    prompts = list(prompts.only("pk", "text", "format", "content_hash"))
    outcome = GenerationOutcome(prompts=len(prompts))
    for start in range(0, len(prompts), batch_prompts):
        batch = prompts[start : start + batch_prompts]
        asked = [(p, seed + k) for p in batch for k in range(per_prompt)]
        requests = [GenerationRequest(prompt_messages(p, system=system), sampling, s) for p, s in asked]
        results = cached.generate(requests)
        outcome.requested += len(requests)
        stored: list[tuple[Prompt, int, Generation]] = []
        for (prompt, row_seed), result in zip(asked, results, strict=True):
            if not isinstance(result, Generation):
                _failed(outcome, prompt, row_seed, result.kind, result.message)
                continue
            problem = text_problem(result.text)
            if problem:
                _failed(outcome, prompt, row_seed, "unstorable", f"the generated text {problem}")
                continue
            stored.append((prompt, row_seed, result))
            if result.cached:
                outcome.from_cache += 1
            else:
                outcome.prompt_tokens += result.prompt_tokens
                outcome.completion_tokens += result.completion_tokens
        created, duplicates = _candidates_store(study=study, source=source, stored=stored)
        outcome.candidates_created += created
        outcome.duplicates_skipped += duplicates
        if on_progress is not None:
            on_progress(min(start + batch_prompts, len(prompts)), len(prompts))
    return outcome


def _failed(outcome: GenerationOutcome, prompt: Prompt, seed: int, kind: str, message: str) -> None:
    outcome.failed += 1
    if len(outcome.errors) < ERRORS_KEPT:
        outcome.errors.append(GenerationRowError(prompt.pk, seed, kind, message))


@transaction.atomic
def _candidates_store(*, study: Study, source: str, stored: list[tuple[Prompt, int, Generation]]) -> tuple[int, int]:
    """Insert the generations not already candidates of their prompt; (inserted, duplicates)."""
    planned = [candidate_content_hash(prompt_hash=p.content_hash, text=g.text) for p, _, g in stored]
    seen = set(
        Candidate.objects.filter(study=study, content_hash__in=set(planned)).values_list("content_hash", flat=True)
    )
    new = []
    for (prompt, row_seed, generation), content_hash in zip(stored, planned, strict=True):
        if content_hash in seen:
            continue
        seen.add(content_hash)
        metadata = {
            "generated": {
                "by": generation.source,
                "seed": row_seed,
                "finish_reason": generation.finish_reason,
                "completion_tokens": generation.completion_tokens,
            }
        }
        new.append(
            Candidate(
                study=study,
                prompt_id=prompt.pk,
                text=generation.text,
                source=source,
                metadata=metadata,
                content_hash=content_hash,
            )
        )
    Candidate.objects.bulk_create(new)
    if new:
        study_id = study.pk
        transaction.on_commit(lambda: loop.get().candidates_added(study_id=study_id))
        transaction.on_commit(lambda: loop.get().refill_request(study_id=study_id))
    return len(new), len(stored) - len(new)
