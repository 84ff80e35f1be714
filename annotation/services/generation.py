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

import ipaddress
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotation import loop
from annotation.imports.records import candidate_content_hash
from annotation.imports.storable import text_problem
from annotation.models import Candidate, GenerationJob, GenerationSource, Prompt, RewardModelVersion, Study
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
from models_runtime.generation.local_hf import LocalGenerator, LocalModelConfig
from models_runtime.generation.openai_compat import ChatCompletionsGenerator, EndpointConfig

__all__ = [
    "GenerationOutcome",
    "GenerationRowError",
    "generation_cache",
    "generation_job_create",
    "generation_job_run",
    "generation_source_create",
    "generator_for",
    "metadata_host",
    "next_free_seed",
    "prompt_messages",
    "prompts_unclear",
    "regeneration_configure",
    "regeneration_round_start",
    "regeneration_rounds_used",
    "study_generate",
]

logger = logging.getLogger(__name__)

# Environment variables any source may name for its key, besides PREFLOOP_GENERATOR_KEY_VARS.
KEY_VAR_PREFIX = "PREFLOOP_GENERATOR_KEY_"
# A job left running this long by a dead worker may be claimed again.
STALE_AFTER = timedelta(hours=2)
# Failed rows a job keeps for its page (all are counted).
JOB_ERRORS_KEPT = 50

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


# --- sources and jobs ------------------------------------------------------------


def _key_var_allowed(name: str) -> bool:
    return name in settings.PREFLOOP_GENERATOR_KEY_VARS or (
        name.startswith(KEY_VAR_PREFIX) and re.fullmatch(r"[A-Z0-9_]+", name) is not None
    )


def metadata_host(url: str) -> bool:
    """Whether ``url`` names a link-local address or a cloud metadata host, which
    hand out the machine's credentials (a failed row's message quotes the reply)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("metadata", "metadata.google.internal"):
        return True
    try:
        return ipaddress.ip_address(host).is_link_local
    except ValueError:
        return False


def generation_source_create(
    *,
    study: Study,
    name: str,
    kind: str,
    base_url: str = "",
    model: str = "",
    api_key_env: str = "",
    model_path: str = "",
    system_prompt: str = "",
    temperature: float = 0.7,
    max_tokens: int = 512,
    created_by: AbstractBaseUser | None = None,
) -> GenerationSource:
    """Add a source to ``study`` after checking it can be used: an endpoint needs
    an http(s) URL and a model name, and its key variable must be one the
    installation allows (``PREFLOOP_GENERATOR_KEY_VARS``, or a name beginning
    ``PREFLOOP_GENERATOR_KEY_``); a local directory must lie under
    ``PREFLOOP_LOCAL_MODELS_DIR`` and hold a ``config.json``. Raises
    ``ValidationError`` with the field at fault."""
    source = GenerationSource(
        study=study,
        name=name.strip(),
        kind=kind,
        base_url=base_url.strip(),
        model=model.strip(),
        api_key_env=api_key_env.strip(),
        model_path=model_path.strip(),
        system_prompt=system_prompt,
        temperature=temperature,
        max_tokens=max_tokens,
        created_by=created_by,
    )
    errors: dict[str, str] = {}
    if source.kind == GenerationSource.Kind.ENDPOINT:
        if not re.match(r"^https?://[^\s/]+", source.base_url):
            errors["base_url"] = "Give the endpoint's base URL, e.g. http://127.0.0.1:8000/v1."
        elif metadata_host(source.base_url):
            errors["base_url"] = "That address is a cloud metadata service, not a model endpoint."
        if not source.model:
            errors["model"] = "Give the model's name as the endpoint knows it."
        if source.api_key_env and not _key_var_allowed(source.api_key_env):
            allowed = ", ".join([*settings.PREFLOOP_GENERATOR_KEY_VARS, KEY_VAR_PREFIX + "…"])
            errors["api_key_env"] = f"Keys may be read only from these environment variables: {allowed}."
        source.model_path = ""
    elif source.kind == GenerationSource.Kind.LOCAL:
        root = Path(settings.PREFLOOP_LOCAL_MODELS_DIR).resolve()
        path = (root / source.model_path).resolve() if source.model_path else root
        if not source.model_path or not path.is_relative_to(root) or path == root:
            errors["model_path"] = f"Give a model directory inside {root}."
        elif not (path / "config.json").is_file():
            errors["model_path"] = f"{path} is not a Hugging Face model directory (no config.json)."
        else:
            source.model_path = str(path)
        source.base_url = source.model = source.api_key_env = ""
    else:
        errors["kind"] = "Choose an endpoint or a local model directory."
    if source.name and GenerationSource.objects.filter(study=study, name=source.name).exists():
        errors["name"] = f"This study already has a source named {source.name!r}."
    try:
        source.full_clean(exclude=[field for field in ("study", "created_by")] + list(errors))
    except ValidationError as exc:
        errors.update({field: " ".join(messages) for field, messages in exc.message_dict.items()})
    if errors:
        raise ValidationError(errors)
    source.save()
    return source


def generator_for(source: GenerationSource) -> Generator:
    """The generator a source names (see ``models_runtime.generation``)."""
    if source.kind == GenerationSource.Kind.LOCAL:
        return LocalGenerator(LocalModelConfig(source.model_path))
    return ChatCompletionsGenerator(
        EndpointConfig(base_url=source.base_url, model=source.model, api_key_env=source.api_key_env)
    )


def prompts_unclear(*, study: Study, limit: int) -> list[int]:
    """The prompts worth new responses under the live model, most in need first
    (regeneration, as in online exploration: the pool grows where the model
    cannot yet tell the best response). First prompts with fewer than two
    candidates, which cannot be compared at all; then those whose best
    candidate's lead over the runner-up is uncertain (the 95% interval of the
    share of annotators preferring it reaches 50%), lowest P(best) first. A
    prompt whose best is clear is never chosen. Without a model: the prompts
    with fewer than two candidates only."""
    counts = dict(Prompt.objects.filter(study=study).annotate(n=Count("candidates")).values_list("pk", "n"))
    chosen = [pid for pid, n in sorted(counts.items()) if n < 2]
    version = RewardModelVersion.objects.filter(study=study).order_by("-version").first()
    boards = (version.recommendation or {}).get("prompts", {}) if version is not None else {}
    unclear: list[tuple[float, int]] = []
    for key, board in boards.items():
        pid = int(key)
        runner_up = board.get("runner_up")
        if pid not in counts or counts[pid] < 2 or runner_up is None or runner_up["low"] > 0.5:
            continue
        unclear.append((board["leaderboard"][0]["p_best"], pid))
    chosen += [pid for _, pid in sorted(unclear)]
    return chosen[:limit]


def next_free_seed(*, source: GenerationSource) -> int:
    """A seed after every seed the source's runs used, so a new run asks for new responses (the
    cache would answer a seed used before with the response it gave then)."""
    ends = [job.seed + job.per_prompt for job in source.jobs.only("seed", "per_prompt")]
    return max(ends, default=0)


def generation_job_create(
    *,
    study: Study,
    source: GenerationSource,
    per_prompt: int,
    seed: int | None = None,
    prompts: str = "all",
    limit: int = 50,
    created_by: AbstractBaseUser | None = None,
) -> GenerationJob:
    """Record a generation run for the worker (the caller enqueues
    ``annotation.tasks.generation_job_run`` on commit). ``prompts`` is "all"
    (every prompt of the study) or "unclear" (at most ``limit`` prompts from
    :func:`prompts_unclear`); ``seed`` None takes the source's next free seed."""
    if source.study_id != study.pk:
        raise ValidationError({"source": "That source belongs to another study."})
    if prompts not in ("all", "unclear"):
        raise ValidationError({"prompts": 'Choose "all" or "unclear".'})
    prompt_ids: list[int] = []
    if prompts == "unclear":
        prompt_ids = prompts_unclear(study=study, limit=limit)
        if not prompt_ids:
            raise ValidationError(
                {"prompts": "No prompt needs new responses: every prompt's best response is already clear."}
            )
    job = GenerationJob(
        study=study,
        source=source,
        per_prompt=per_prompt,
        seed=next_free_seed(source=source) if seed is None else seed,
        prompt_ids=prompt_ids,
        reason=prompts,
        created_by=created_by,
    )
    job.full_clean(exclude=["study", "source", "created_by"])
    job.save()
    return job


# GenerationJob.reason of a round the loop started itself.
REGENERATION_REASON = "auto"
REGENERATION_FIELDS = ("regenerate_source", "regenerate_per_prompt", "regenerate_prompts", "regenerate_rounds")


@transaction.atomic
def regeneration_configure(*, study: Study, source_id: int | None, per_prompt: int, prompts: int, rounds: int) -> Study:
    """Set the study's automatic regeneration: after each published model the loop
    asks source ``source_id`` (None: never) for ``per_prompt`` new responses to at
    most ``prompts`` unclear prompts, for at most ``rounds`` rounds in the study's
    life (:func:`regeneration_round_start`). Each value is checked against its
    field's limits, and the source must be one of the study's; a ``ValidationError``
    names every bad field."""
    source = None
    if source_id is not None:
        source = GenerationSource.objects.filter(pk=source_id, study=study).first()
        if source is None:
            raise ValidationError({"regenerate_source": "That source belongs to another study."})
    study.regenerate_source = source
    study.regenerate_per_prompt, study.regenerate_prompts, study.regenerate_rounds = per_prompt, prompts, rounds
    exclude = [f.name for f in Study._meta.fields if f.name not in REGENERATION_FIELDS]
    study.full_clean(exclude=exclude, validate_constraints=False)
    study.save(update_fields=list(REGENERATION_FIELDS))
    return study


def regeneration_rounds_used(*, study: Study) -> int:
    """The automatic regeneration rounds the study has had."""
    return GenerationJob.objects.filter(study=study, reason=REGENERATION_REASON).count()


def regeneration_round_start(*, study_id: int) -> GenerationJob | None:
    """After a model was published (``activelearn.tasks.retrain_study``): record an
    automatic round for the worker when the study asks for one, or None. A round
    needs a regeneration source, rounds left, no generation of the study still
    queued or running (one round at a time, so a burst of new models never piles
    runs up), and prompts the new model leaves unclear (:func:`prompts_unclear`).
    The caller enqueues the run. This is online exploration's loop: the pool grows
    where the reward model cannot yet tell the best response."""
    study = Study.objects.select_related("regenerate_source").filter(pk=study_id).first()
    if study is None or study.regenerate_source is None:
        return None
    if regeneration_rounds_used(study=study) >= study.regenerate_rounds:
        return None
    unfinished = (GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING)
    if GenerationJob.objects.filter(study=study, status__in=unfinished).exists():
        return None
    prompt_ids = prompts_unclear(study=study, limit=study.regenerate_prompts)
    if not prompt_ids:
        return None
    source = study.regenerate_source
    return GenerationJob.objects.create(
        study=study,
        source=source,
        per_prompt=study.regenerate_per_prompt,
        seed=next_free_seed(source=source),
        prompt_ids=prompt_ids,
        reason=REGENERATION_REASON,
    )


def generation_job_run(*, job_id: int, generator: Generator | None = None) -> GenerationJob | None:
    """Run a queued generation job; called by the ``generation_job_run`` task.

    Claims the job first (queued → running, one conditional UPDATE; a job left
    running by a dead worker for ``STALE_AFTER`` may be claimed again), then
    generates batch by batch, writing the prompts done after each, and ends
    done with the counts, tokens and first failed rows; a job whose generator
    could not run at all ends failed with the reason. Candidates already
    stored stay whatever happens. ``generator`` replaces the source's own (tests).
    """
    now = timezone.now()
    claimable = Q(status=GenerationJob.Status.QUEUED) | Q(
        status=GenerationJob.Status.RUNNING, started_at__lt=now - STALE_AFTER
    )
    claimed = GenerationJob.objects.filter(claimable, pk=job_id).update(
        status=GenerationJob.Status.RUNNING, started_at=now, prompts_done=0, error=""
    )
    job = GenerationJob.objects.select_related("study", "source").filter(pk=job_id).first()
    if not claimed or job is None:
        return job
    source = job.source

    def progress(done: int, total: int) -> None:
        GenerationJob.objects.filter(pk=job_id).update(prompts_done=done, prompts_total=total)

    try:
        outcome = study_generate(
            study=job.study,
            generator=generator if generator is not None else generator_for(source),
            source=source.name,
            per_prompt=job.per_prompt,
            sampling=Sampling(temperature=source.temperature, max_tokens=source.max_tokens),
            system=source.system_prompt,
            seed=job.seed,
            prompt_ids=job.prompt_ids or None,
            on_progress=progress,
        )
    except Exception as exc:
        logger.exception("generation job %s failed", job_id)
        GenerationJob.objects.filter(pk=job_id).update(
            status=GenerationJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=timezone.now()
        )
        job.refresh_from_db()
        return job
    counts = {k: v for k, v in asdict(outcome).items() if k != "errors"}
    errors = [asdict(e) for e in outcome.errors[:JOB_ERRORS_KEPT]]
    everything_failed = outcome.requested and outcome.failed == outcome.requested
    GenerationJob.objects.filter(pk=job_id).update(
        status=GenerationJob.Status.FAILED if everything_failed else GenerationJob.Status.DONE,
        error=f"No response could be generated: {errors[0]['message']}" if everything_failed else "",
        prompts_total=outcome.prompts,
        prompts_done=outcome.prompts,
        result=counts,
        errors=errors,
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    return job
