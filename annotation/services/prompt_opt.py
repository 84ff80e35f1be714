"""Prompt optimisation (issue 17; the setting of APOHF, "Prompt Optimization with
Human Feedback"): the items a study compares are *instructions* for a task.

**The data.** A prompt-optimisation study has one prompt, the task's description
(``PromptOptimisation.task``), and its candidates are the instructions. Each
instruction is sent to the study's *target* source once per task input
(``PromptOptimisation.template`` joins the two), and the responses are kept
(``InstructionOutput``). A comparison is a pair of instructions and one task
input (``Comparison.task_input``, drawn by the refill); the annotate page shows
that input and the two responses, never the instructions. The answer is an
ordinary judgment between the two instructions, so the reward model, the
strategies (APOHF, a neural-UCB-style choice on instruction embeddings, by
default; double Thompson sampling and the others work too) and the study's
leaderboard of P(best) are the ones every study has.

**Ready instructions.** Only an instruction with a response for every task input
is compared (``ready_candidate_ids``, read by the refill); the ``generate``
worker fills the responses (:func:`outputs_run`), and a row that could not be
generated is counted with its reason and asked again next run.

**Rewriting.** After each new model, a study with a *rewriter* source asks it
for ``rewrite_per_round`` rewrites of the best instruction so far (the live
model's leaderboard), at most ``rewrite_rounds`` times in all
(:func:`rewrite_round_run`). Rewrites join the pool as candidates whose source
is the rewriter, are embedded as imports are, get their responses, and are
compared once ready: the pool grows around the current best, as in APOHF's
prompt generation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F

from annotation import loop
from annotation.imports.records import candidate_content_hash, prompt_content_hash
from annotation.imports.storable import text_problem
from annotation.models import (
    Candidate,
    Comparison,
    GenerationSource,
    InstructionOutput,
    Prompt,
    PromptOptimisation,
    RewardModelVersion,
    Study,
    TaskInput,
)
from annotation.services.generation import generation_cache, generator_for
from models_runtime.generation import (
    CachedGenerator,
    Generation,
    GenerationCache,
    GenerationRequest,
    Generator,
    Message,
    Sampling,
)

__all__ = [
    "DEFAULT_REWRITE",
    "OutputsOutcome",
    "best_instructions",
    "outputs_run",
    "prompt_optimisation_configure",
    "prompt_optimisation_status",
    "ready_candidate_ids",
    "rewrite_due",
    "rewrite_round_run",
    "task_input_ids",
]

logger = logging.getLogger(__name__)

DEFAULT_REWRITE = (
    "You improve instructions given to an AI assistant.\n\n[Task]\n{task}\n\n[Best instruction so far]\n"
    "{instruction}\n\nWrite one new instruction for the same task that is likely to produce responses people "
    "prefer: clearer, more specific, or differently phrased. Reply with the instruction only."
)
# Responses asked for in one request batch.
OUTPUT_BATCH = 16
# Seeds of rewrites: round r (from 0) asks REWRITE_SEED + 100·r + k, so a new round never gets the cache's old replies.
REWRITE_SEED = 1000
MAX_INSTRUCTIONS_AT_ONCE = 500
MAX_INPUTS_AT_ONCE = 200
_QUOTES = re.compile(r'^\s*(?:(?:new\s+)?instruction\s*:\s*)?["“”\']?(.*?)["“”\']?\s*$', re.I | re.S)


def _lines(texts: Sequence[str], *, what: str, most: int) -> list[str]:
    kept, seen = [], set()
    for n, raw in enumerate(texts, start=1):
        text = raw.strip()
        if not text or text in seen:
            continue
        problem = text_problem(text)
        if problem:
            raise ValidationError({what: f"Line {n}: the text {problem}."})
        seen.add(text)
        kept.append(text)
    if len(kept) > most:
        raise ValidationError({what: f"At most {most} at once ({len(kept)} given)."})
    return kept


def _source(study: Study, source_id: int | None, field_name: str) -> GenerationSource | None:
    if source_id is None:
        return None
    source = GenerationSource.objects.filter(id=source_id, study=study).first()
    if source is None:
        raise ValidationError({field_name: "That source belongs to another study."})
    return source


def _instructions_add(config: PromptOptimisation, texts: Sequence[str], *, source: str, metadata: dict) -> int:
    """Store new instructions as candidates of the task prompt (duplicates skipped)."""
    task = config.task
    rows = [
        Candidate(
            study_id=config.study_id,
            prompt=task,
            text=text,
            source=source,
            metadata=metadata,
            content_hash=candidate_content_hash(prompt_hash=task.content_hash, text=text),
        )
        for text in texts
    ]
    known = set(
        Candidate.objects.filter(study_id=config.study_id, content_hash__in=[r.content_hash for r in rows]).values_list(
            "content_hash", flat=True
        )
    )
    fresh = {r.content_hash: r for r in rows if r.content_hash not in known}
    Candidate.objects.bulk_create(fresh.values())
    return len(fresh)


@transaction.atomic
def prompt_optimisation_configure(
    *,
    study: Study,
    target_source_id: int,
    instructions: Sequence[str] = (),
    inputs: Sequence[str] = (),
    task: str = "",
    rewriter_source_id: int | None = None,
    template: str = "",
    rewrite_per_round: int = 3,
    rewrite_rounds: int = 5,
    rewrite_template: str = "",
    created_by: AbstractBaseUser | None = None,
) -> PromptOptimisation:
    """Make ``study`` a prompt-optimisation study, or change its settings and add
    instructions and task inputs (both are only ever added). The first time it
    needs a task description, two instructions or more and one input or more,
    and the study must have no candidates of its own yet; its strategy becomes
    APOHF. Every refusal is a ``ValidationError`` naming the field. The caller
    starts the responses' generation (``annotation.tasks.prompt_outputs_run``)."""
    config = PromptOptimisation.objects.filter(study=study).select_related("task").first()
    if study.mode != Study.Mode.PAIRWISE:
        raise ValidationError({"study": "Prompt optimisation compares two instructions at a time: a pairwise study."})
    target = _source(study, target_source_id, "target")
    rewriter = _source(study, rewriter_source_id, "rewriter")
    # A browser's textarea sends CRLF line ends: the target is sent plain newlines.
    template = template.replace("\r\n", "\n").strip() or "{instruction}\n\n{input}"
    missing = [name for name in ("{instruction}", "{input}") if name not in template]
    if missing:
        raise ValidationError({"template": f"The template must contain {' and '.join(missing)}."})
    rewrite_template = rewrite_template.replace("\r\n", "\n").strip()
    if rewrite_template and "{instruction}" not in rewrite_template:
        raise ValidationError({"rewrite_template": "The rewriting request must contain {instruction}."})
    unknown = set(re.findall(r"\{(\w+)\}", rewrite_template)) - {"instruction", "task"}
    if unknown:
        raise ValidationError(
            {"rewrite_template": f"The rewriting request may use {{instruction}} and {{task}}, not {{{min(unknown)}}}."}
        )
    instructions = _lines(instructions, what="instructions", most=MAX_INSTRUCTIONS_AT_ONCE)
    inputs = _lines(inputs, what="inputs", most=MAX_INPUTS_AT_ONCE)
    if not 1 <= rewrite_per_round <= 20 or not 0 <= rewrite_rounds <= 100:
        raise ValidationError({"rewrite": "Rewrites per round lie in 1–20, rounds in 0–100."})
    if config is None:
        task = task.replace("\r\n", "\n").strip()
        if not task:
            raise ValidationError({"task": "Describe the task the instructions are for."})
        if study.candidates.exists():
            raise ValidationError(
                {"study": "This study already has candidates: prompt optimisation needs a study of its own."}
            )
        if len(instructions) < 2:
            raise ValidationError({"instructions": "Give at least two instructions to compare."})
        if not inputs:
            raise ValidationError({"inputs": "Give at least one task input to try the instructions on."})
        prompt = Prompt.objects.create(
            study=study, text=task, content_hash=prompt_content_hash(task), metadata={"prompt_optimisation": True}
        )
        config = PromptOptimisation(study=study, task=prompt)
        Study.objects.filter(pk=study.pk).update(strategy="apohf")
        study.strategy = "apohf"
    config.target, config.rewriter, config.template = target, rewriter, template
    config.rewrite_per_round, config.rewrite_rounds = rewrite_per_round, rewrite_rounds
    config.rewrite_template = rewrite_template
    config.save()
    TaskInput.objects.bulk_create(TaskInput(study=study, text=text) for text in inputs)
    added = _instructions_add(config, instructions, source="", metadata={"origin": "given"})
    if added:
        study_id = study.id
        transaction.on_commit(lambda: loop.get().candidates_added(study_id=study_id))
    return config


def task_input_ids(*, study_id: int) -> list[int]:
    """The study's task inputs, oldest first (empty for other studies)."""
    return list(TaskInput.objects.filter(study_id=study_id).values_list("id", flat=True))


def ready_candidate_ids(*, study_id: int) -> set[int] | None:
    """The instructions that have a response for every task input (the refill
    compares only these); None for a study that is not a prompt-optimisation one."""
    config = PromptOptimisation.objects.filter(study_id=study_id).values("task_id").first()
    if config is None:
        return None
    n_inputs = TaskInput.objects.filter(study_id=study_id).count()
    return set(
        Candidate.objects.filter(study_id=study_id, prompt_id=config["task_id"])
        .annotate(n=Count("outputs"))
        .filter(n__gte=max(n_inputs, 1))
        .values_list("id", flat=True)
    )


@dataclass
class OutputsOutcome:
    """A responses run: rows asked for, stored, failed, tokens spent (none for
    cached replies), and the instructions ready after it."""

    requested: int = 0
    stored: int = 0
    failed: int = 0
    tokens: int = 0
    ready: int = 0
    errors: list[str] = field(default_factory=list)


def _request(config: PromptOptimisation, instruction: str, task_input: str) -> GenerationRequest:
    target = config.target
    text = config.template.replace("{instruction}", instruction).replace("{input}", task_input)
    turns = ([Message("system", target.system_prompt)] if target.system_prompt else []) + [Message("user", text)]
    return GenerationRequest(
        messages=tuple(turns), sampling=Sampling(temperature=target.temperature, max_tokens=target.max_tokens), seed=0
    )


def outputs_run(
    *, study_id: int, generator: Generator | None = None, cache: GenerationCache | None = None
) -> OutputsOutcome:
    """Generate every missing (instruction, task input) response through the
    study's target source, batch by batch; a failed row is counted and asked
    again next run. ``generator`` replaces the target's own (tests)."""
    outcome = OutputsOutcome()
    config = PromptOptimisation.objects.select_related("target").filter(study_id=study_id).first()
    if config is None:
        return outcome
    inputs = dict(TaskInput.objects.filter(study_id=study_id).values_list("id", "text"))
    instructions = dict(
        Candidate.objects.filter(study_id=study_id, prompt_id=config.task_id).order_by("id").values_list("id", "text")
    )
    have = set(
        InstructionOutput.objects.filter(candidate_id__in=list(instructions)).values_list(
            "candidate_id", "task_input_id"
        )
    )
    todo = [(c, i) for c in instructions for i in inputs if (c, i) not in have]
    ready_before = len(ready_candidate_ids(study_id=study_id) or ())
    if todo:
        try:
            asker = CachedGenerator(
                generator if generator is not None else generator_for(config.target),
                cache if cache is not None else generation_cache(),
            )
        except Exception as exc:  # a target that cannot run at all (its key unset, a bad model directory)
            reason = f"{type(exc).__name__}: {exc}"
            PromptOptimisation.objects.filter(pk=config.pk).update(
                outputs_failed=F("outputs_failed") + len(todo), last_error=reason[:2000]
            )
            outcome.requested, outcome.failed, outcome.errors = len(todo), len(todo), [reason]
            return outcome
        last_error = ""
        for start in range(0, len(todo), OUTPUT_BATCH):
            batch = todo[start : start + OUTPUT_BATCH]
            results = asker.generate([_request(config, instructions[c], inputs[i]) for c, i in batch])
            rows = []
            for (c, i), result in zip(batch, results, strict=True):
                if not isinstance(result, Generation):
                    outcome.failed += 1
                    last_error = result.message
                    continue
                problem = text_problem(result.text)
                if problem:
                    outcome.failed += 1
                    last_error = f"the generated text {problem}"
                    continue
                cost = 0 if result.cached else result.prompt_tokens + result.completion_tokens
                outcome.tokens += cost
                rows.append(InstructionOutput(candidate_id=c, task_input_id=i, text=result.text, tokens=cost))
            InstructionOutput.objects.bulk_create(rows, ignore_conflicts=True)
            outcome.requested += len(batch)
            outcome.stored += len(rows)
        if last_error:
            outcome.errors.append(last_error)
        PromptOptimisation.objects.filter(pk=config.pk).update(
            outputs_failed=F("outputs_failed") + outcome.failed,
            tokens=F("tokens") + outcome.tokens,
            last_error=last_error[:2000],
        )
    outcome.ready = len(ready_candidate_ids(study_id=study_id) or ())
    if outcome.ready > ready_before:
        loop.get().refill_request(study_id=study_id)
    return outcome


def _live_board(study_id: int, task_id: int) -> tuple[RewardModelVersion | None, dict[str, Any]]:
    live = RewardModelVersion.objects.filter(study_id=study_id).order_by("-version").first()
    board = ((live.recommendation or {}).get("prompts") or {}) if live else {}
    return live, board.get(str(task_id)) or {}


def best_instructions(*, study: Study, top: int = 5) -> dict[str, Any] | None:
    """The live model's best instructions with P(best) (the recommendation the
    version stores: posterior mean, sd, probability of being the best), best
    first, and the version; None for a study that is not a prompt-optimisation
    one or before its first model."""
    config = PromptOptimisation.objects.filter(study=study).values("task_id", "task__text").first()
    if config is None:
        return None
    live, entry = _live_board(study.id, config["task_id"])
    if live is None or not entry.get("leaderboard"):
        return None
    rows = entry["leaderboard"][:top]
    texts = {
        c.id: c
        for c in Candidate.objects.filter(id__in=[r["candidate"] for r in rows]).only(
            "id", "text", "source", "metadata"
        )
    }
    board = [
        {
            "candidate": r["candidate"],
            "instruction": texts[r["candidate"]].text,
            "origin": (texts[r["candidate"]].metadata or {}).get("origin", "given"),
            "source": texts[r["candidate"]].source,
            "p_best": r["p_best"],
            "mean": r["mean"],
            "std": r["std"],
        }
        for r in rows
        if r["candidate"] in texts
    ]
    if not board:
        return None
    return {"task": config["task__text"], "model_version": live.version, "best": board[0], "leaderboard": board}


def rewrite_due(*, study_id: int) -> bool:
    """Whether a new model should start a rewriting round: the study has a
    rewriter and rounds left (one query; False for other studies)."""
    return PromptOptimisation.objects.filter(
        study_id=study_id, rewriter__isnull=False, rewrite_rounds__gt=F("rewrite_rounds_used")
    ).exists()


def rewrite_round_run(
    *, study_id: int, generator: Generator | None = None, cache: GenerationCache | None = None
) -> int:
    """One rewriting round (see the module docstring): new instructions stored,
    or 0 when the study has no rewriter, its rounds are used up, or no model
    has a best instruction yet. The round is claimed first (one conditional
    UPDATE), so two new models never run one round twice."""
    config = PromptOptimisation.objects.select_related("rewriter", "task").filter(study_id=study_id).first()
    if config is None or config.rewriter is None or config.rewrite_rounds_used >= config.rewrite_rounds:
        return 0
    _, entry = _live_board(study_id, config.task_id)
    best = Candidate.objects.filter(id=entry.get("best"), study_id=study_id).first()
    if best is None:
        return 0
    used = config.rewrite_rounds_used
    claimed = PromptOptimisation.objects.filter(pk=config.pk, rewrite_rounds_used=used, rewrite_rounds__gt=used).update(
        rewrite_rounds_used=used + 1
    )
    if not claimed:
        return 0
    rewriter = config.rewriter
    request = config.rewrite_template or DEFAULT_REWRITE
    prompt = request.replace("{task}", config.task.text).replace("{instruction}", best.text)
    sampling = Sampling(temperature=max(rewriter.temperature, 0.7), max_tokens=rewriter.max_tokens)
    requests = [
        GenerationRequest(messages=(Message("user", prompt),), sampling=sampling, seed=REWRITE_SEED + used * 100 + k)
        for k in range(config.rewrite_per_round)
    ]
    try:
        asker = CachedGenerator(
            generator if generator is not None else generator_for(rewriter),
            cache if cache is not None else generation_cache(),
        )
        results = asker.generate(requests)
    except Exception as exc:
        logger.exception("study %s: the rewriter could not run", study_id)
        PromptOptimisation.objects.filter(pk=config.pk).update(last_error=f"rewriter: {type(exc).__name__}: {exc}")
        return 0
    texts = []
    for result in results:
        if isinstance(result, Generation):
            text = _QUOTES.match(result.text).group(1).strip()
            if text and not text_problem(text):
                texts.append(text)
        else:
            PromptOptimisation.objects.filter(pk=config.pk).update(last_error=f"rewriter: {result.message}"[:2000])
    metadata = {"origin": "rewrite", "parent": best.id, "round": used + 1}
    with transaction.atomic():
        added = _instructions_add(config, texts, source=rewriter.name, metadata=metadata)
        if added:
            transaction.on_commit(lambda: loop.get().candidates_added(study_id=study_id))
    return added


def prompt_optimisation_status(*, study: Study) -> dict[str, Any] | None:
    """The study page's prompt-optimisation card: settings, instructions (ready
    and in all), inputs, responses, the rewriting rounds and the best so far."""
    config = PromptOptimisation.objects.filter(study=study).select_related("task", "target", "rewriter").first()
    if config is None:
        return None
    instructions = Candidate.objects.filter(study=study, prompt_id=config.task_id).count()
    inputs = TaskInput.objects.filter(study=study).count()
    outputs = InstructionOutput.objects.filter(candidate__study=study).count()
    return {
        "config": config,
        "instructions": instructions,
        "ready": len(ready_candidate_ids(study_id=study.id) or ()),
        "inputs": inputs,
        "outputs": outputs,
        "outputs_wanted": instructions * inputs,
        "compared": Comparison.objects.filter(study=study, judgments__isnull=False).distinct().count(),
        "best": best_instructions(study=study),
    }
