"""AI judges of a study (issue 17): their accounts, and the run that asks them
about the queue and routes what they settle.

A judge's answers are ordinary judgments, so it needs an annotator: a user of its
own that can never sign in (inactive, no usable password), linked one-to-one to
the :class:`~annotation.models.AIJudge` row that says which source it asks and
with what template. That link is how the fit, exports and agreement figures tell
a model annotator from a person (``activelearn.reliability.judge_user_ids``), and
each answer also carries ``Judgment.by_model`` so that what counts people's work
(the budget, a comparison's slots, progress) needs no join.

**The run** (:func:`judges_run`, the ``generate`` queue; the refill starts one
whenever it queues comparisons). Every active judge is asked about the queued
comparisons it has not answered, highest priority first, both orders each
(``models_runtime.generation.judge``: a pair in A-B and B-A order, a list in its
order and reversed, with the built-in listwise template; a judge's own template is
for pairs); a verdict becomes a judgment of the judge's account, and a comparison it
could not judge is counted as failed with the reason. Replies go through the
installation's generation cache, so a rerun pays for nothing it asked before.

**Routing** (``models_runtime.reliability``). After the judges answered, a queued
pair is *settled* without a person (a list never is: judges' rankings are weighted
votes only) when the votes of the judges the live model's fit trusts (weight above
0), combined at their estimated accuracies, are at least as likely right as a
typical person's answer, unless it is drawn for the audit
(``Study.judge_audit_rate`` of them still go to people, so every judge stays
measured against people), belongs to the evaluation set (held-out figures are
people's answers), or the judges already settled ``Study.judge_share`` of the
study's comparisons. A settled comparison is done: nobody is asked, no budget is
spent, and the fit learns from the judges' weighted votes. Until a fit has measured
a judge against people its weight is 0, so a new judge settles nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from annotation import loop
from annotation.models import (
    AIJudge,
    Comparison,
    ComparisonItem,
    GenerationSource,
    InstructionOutput,
    Judgment,
    Study,
)
from annotation.selectors.studies import judge_settled_counts, live_reliability, strict_pair
from annotation.services.answers import in_evaluation_set
from annotation.services.generation import generation_cache, generator_for
from models_runtime.evaluation import evaluation_draw
from models_runtime.generation import CachedGenerator, GenerationCache, Generator, Sampling
from models_runtime.generation.judge import (
    DEFAULT_PAIRWISE,
    JudgeTemplate,
    ListwiseJudge,
    PairwiseJudge,
    RankVerdict,
    Verdict,
)
from models_runtime.reliability import RoutingConfig, judges_verdict, settles

__all__ = [
    "JudgingOutcome",
    "ai_judge_create",
    "ai_judge_update",
    "judge_routing_configure",
    "judges_run",
    "study_has_active_judges",
]

logger = logging.getLogger(__name__)

# Comparisons a judge is asked about in one request batch, and in one run at most
# (the refill starts a run whenever it queues more, so a backlog is worked through).
JUDGE_BATCH = 16
RUN_MOST = 200
# A judge's replies kept on its judgment (client_info), each cut to this length.
REPLY_KEPT_CHARS = 2000


@transaction.atomic
def ai_judge_create(
    *,
    study: Study,
    source_id: int,
    name: str,
    template: str = "",
    created_by: AbstractBaseUser | None = None,
) -> AIJudge:
    """Add an AI judge to ``study``: the study's generation source ``source_id``
    asked with ``template`` (the built-in pairwise template when empty; it must
    contain ``{prompt}``, ``{first}`` and ``{second}``). Creates the judge's own
    account. Refuses a source of another study, an empty or taken name, and a
    template without its placeholders, each as a ``ValidationError`` naming the field."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the judge a name."})
    if len(name) > AIJudge._meta.get_field("name").max_length:
        raise ValidationError({"name": "A judge's name has at most 100 characters."})
    source = GenerationSource.objects.filter(id=source_id, study=study).first()
    if source is None:
        raise ValidationError({"source": "That source belongs to another study."})
    if AIJudge.objects.filter(study=study, name=name).exists():
        raise ValidationError({"name": f"This study already has a judge named “{name}”."})
    try:
        JudgeTemplate(pairwise=template or DEFAULT_PAIRWISE)
    except ValueError as exc:
        raise ValidationError({"template": f"The judging template is not usable: {exc}."}) from exc
    user_model = get_user_model()
    username = f"ai-judge-{study.id}-{slugify(name)[:40] or 'judge'}-{secrets.token_hex(4)}"
    user = user_model(**{user_model.USERNAME_FIELD: username}, is_active=False)
    user.set_unusable_password()
    user.save()
    return AIJudge.objects.create(
        study=study, source=source, user=user, name=name, template=template, created_by=created_by
    )


@transaction.atomic
def ai_judge_update(*, judge: AIJudge, active: bool | None = None, template: str | None = None) -> AIJudge:
    """Turn a judge on or off, or change its template (empty: the built-in one).
    A judge is never deleted once it has answered: its judgments stay, attributed."""
    if template is not None:
        try:
            JudgeTemplate(pairwise=template or DEFAULT_PAIRWISE)
        except ValueError as exc:
            raise ValidationError({"template": f"The judging template is not usable: {exc}."}) from exc
        judge.template = template
    if active is not None:
        judge.active = active
    judge.save(update_fields=["active", "template"])
    return judge


def judge_routing_configure(*, study: Study, share: float, audit_rate: float) -> Study:
    """Set how far judges may settle comparisons without a person (``share`` of
    the study's comparisons, at most 0.9; 0 turns routing off) and the share of
    those still sent to people (``audit_rate``)."""
    study.judge_share, study.judge_audit_rate = share, audit_rate
    study.full_clean(validate_unique=False, validate_constraints=False)
    study.save(update_fields=["judge_share", "judge_audit_rate"])
    return study


def study_has_active_judges(*, study_id: int) -> bool:
    return AIJudge.objects.filter(study_id=study_id, active=True).exists()


@dataclass
class JudgingOutcome:
    """What a run did: questions asked (judge × comparison), judgments written,
    comparisons a judge could not judge, tokens spent (none for cached replies),
    comparisons settled without a person, and those the audit sent to people
    although the judges could have settled them."""

    asked: int = 0
    judged: int = 0
    failed: int = 0
    tokens: int = 0
    settled: int = 0
    audited: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Shown:
    """A comparison as its judge is shown it: the items in position order, each
    (candidate id, text); two items make a pair, more a list."""

    comparison_id: int
    item_key: str
    prompt_id: int | None
    prompt: str
    items: tuple[tuple[int, str], ...]

    @property
    def ids(self) -> list[int]:
        return [cid for cid, _ in self.items]

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.items]


def _open_comparisons(*, study_id: int) -> Any:
    """The study's queued comparisons a person may still be asked about."""
    return Comparison.objects.filter(
        study_id=study_id, status=Comparison.Status.QUEUED, is_gold=False, settled_by_judges=False
    )


def _shown(comparison_ids: Sequence[int]) -> dict[int, _Shown]:
    """Texts of the comparisons as annotators see them, candidates in position
    order: for a prompt-optimisation comparison its task input and the two
    instructions' responses to it (three queries)."""
    heads = {}
    inputs = {}
    for cid, key, prompt_id, text, task_input_id, task_input_text in Comparison.objects.filter(
        id__in=comparison_ids
    ).values_list("id", "item_key", "prompt_id", "prompt__text", "task_input_id", "task_input__text"):
        heads[cid] = (key, prompt_id, task_input_text if task_input_id is not None else text or "")
        if task_input_id is not None:
            inputs[cid] = task_input_id
    outputs = (
        {
            (candidate_id, task_input_id): text
            for candidate_id, task_input_id, text in InstructionOutput.objects.filter(
                task_input_id__in=set(inputs.values())
            ).values_list("candidate_id", "task_input_id", "text")
        }
        if inputs
        else {}
    )
    items: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for cid, candidate_id, text in (
        ComparisonItem.objects.filter(comparison_id__in=comparison_ids)
        .order_by("comparison_id", "position")
        .values_list("comparison_id", "candidate_id", "candidate__text")
    ):
        if cid in inputs:
            text = outputs.get((candidate_id, inputs[cid]))
            if text is None:
                continue  # never expected: such an instruction is not compared
        items[cid].append((candidate_id, text))
    return {
        cid: _Shown(cid, key, prompt_id, prompt, tuple(items[cid]))
        for cid, (key, prompt_id, prompt) in heads.items()
        if len(items[cid]) >= 2
    }


def _answer(shown: _Shown, verdict: Verdict | RankVerdict) -> tuple[str, list, dict]:
    """The judgment's choice, stored ranking and what else the verdict says."""
    ids = shown.ids
    if isinstance(verdict, RankVerdict):
        ranking = [ids[place[0]] if len(place) == 1 else [ids[i] for i in place] for place in verdict.places or []]
        return Judgment.Choice.RANKED, ranking, {}
    a_id, b_id = ids
    extra = {"orders": list(verdict.orders)}
    if verdict.choice == "a":
        return Judgment.Choice.A, [a_id, b_id], extra
    if verdict.choice == "b":
        return Judgment.Choice.B, [b_id, a_id], extra
    return Judgment.Choice.TIE, [[a_id, b_id]], extra


def _judgment(study: Study, judge: AIJudge, shown: _Shown, verdict: Verdict | RankVerdict) -> Judgment:
    choice, ranking, extra = _answer(shown, verdict)
    return Judgment(
        study_id=study.id,
        comparison_id=shown.comparison_id,
        prompt_id=shown.prompt_id,
        annotator_id=judge.user_id,
        choice=choice,
        ranking=ranking,
        shown_order=shown.ids,
        client_info={
            "ai_judge": judge.name,
            "consistent": verdict.consistent,
            **extra,
            "replies": [r[:REPLY_KEPT_CHARS] for r in verdict.replies],
            **({"note": verdict.reason} if verdict.reason else {}),
        },
        evaluation=in_evaluation_set(study_id=study.id, item_key=shown.item_key, rate=study.evaluation_rate),
        by_model=True,
    )


def _verdicts(pairwise: PairwiseJudge, listwise: ListwiseJudge, batch: list[_Shown]) -> list[Verdict | RankVerdict]:
    """One batch's verdicts, pairs asked of the pairwise judge and lists of the listwise one."""
    pairs = [s for s in batch if len(s.items) == 2]
    lists = [s for s in batch if len(s.items) > 2]
    answers: dict[int, Verdict | RankVerdict] = {}
    if pairs:
        for s, v in zip(pairs, pairwise.judge([(s.prompt, *s.texts) for s in pairs]), strict=True):
            answers[s.comparison_id] = v
    if lists:
        for s, v in zip(lists, listwise.judge([(s.prompt, s.texts) for s in lists]), strict=True):
            answers[s.comparison_id] = v
    return [answers[s.comparison_id] for s in batch]


def _unanswered(verdict: Verdict | RankVerdict) -> bool:
    return (verdict.places if isinstance(verdict, RankVerdict) else verdict.choice) is None


def _ask(
    study: Study,
    judge: AIJudge,
    shown: list[_Shown],
    generator: Generator,
    cache: GenerationCache,
    outcome: JudgingOutcome,
) -> None:
    """Ask one judge about ``shown``, batch by batch; store its verdicts and counters."""
    cached = CachedGenerator(generator, cache)
    sampling = Sampling(temperature=0.0, max_tokens=judge.source.max_tokens)
    pairwise = PairwiseJudge(
        cached, template=JudgeTemplate(pairwise=judge.template or DEFAULT_PAIRWISE), sampling=sampling
    )
    listwise = ListwiseJudge(cached, sampling=sampling)
    failed, tokens, last_error = 0, 0, ""
    for start in range(0, len(shown), JUDGE_BATCH):
        batch = shown[start : start + JUDGE_BATCH]
        try:
            verdicts = _verdicts(pairwise, listwise, batch)
        except Exception as exc:  # a source that cannot run at all (its key unset, a bad model directory)
            logger.exception("AI judge %s could not run", judge.pk)
            verdicts = [Verdict(None, False, (None, None), reason=f"{type(exc).__name__}: {exc}")] * len(batch)
        rows = []
        for item, verdict in zip(batch, verdicts, strict=True):
            tokens += verdict.tokens
            if _unanswered(verdict):
                failed += 1
                last_error = verdict.reason
                continue
            rows.append(_judgment(study, judge, item, verdict))
        # Another run may have answered some meanwhile: the unique (comparison, annotator) keeps one.
        Judgment.objects.bulk_create(rows, ignore_conflicts=True)
        outcome.asked += len(batch)
        outcome.judged += len(rows)
    outcome.failed += failed
    outcome.tokens += tokens
    if last_error:
        outcome.errors.append(f"{judge.name}: {last_error}")
    AIJudge.objects.filter(pk=judge.pk).update(
        judged=Judgment.objects.filter(annotator_id=judge.user_id).count(),
        failed=F("failed") + failed,
        tokens=F("tokens") + tokens,
        last_error=last_error[:2000] if failed else "",
    )


def _trusted(study_id: int) -> tuple[dict[int, float], float]:
    """The judges the live model's fit trusts (user id → estimated accuracy, for
    those of weight above 0) and the study's reference accuracy, from the fit's
    ``metrics["reliability"]``; nobody before the first fit."""
    stored = live_reliability(study_id=study_id)
    trusted = {
        int(uid): float(row["accuracy"])
        for uid, row in (stored.get("annotators") or {}).items()
        if row.get("kind") == "model" and float(row.get("weight", 0.0)) > 0.0
    }
    return trusted, float(stored.get("reference", 1.0))


def _audited(study_id: int, item_key: str, rate: float) -> bool:
    return evaluation_draw(f"audit\x1f{study_id}\x1f{item_key}") < rate


def _route(study: Study, shown: Mapping[int, _Shown], outcome: JudgingOutcome) -> None:
    """Settle the pairs the trusted judges decide (see the module docstring); a
    list is never settled by judges: their rankings are votes only."""
    pairs = {cid: s for cid, s in shown.items() if len(s.items) == 2}
    routing = RoutingConfig(judge_share=study.judge_share, audit_rate=study.judge_audit_rate)
    if routing.judge_share <= 0.0 or not pairs:
        return
    trusted, reference = _trusted(study.id)
    if not trusted:
        return
    votes: dict[int, list[tuple[bool, float]]] = defaultdict(list)
    for cid, annotator_id, ranking in Judgment.objects.filter(
        comparison_id__in=list(pairs), annotator_id__in=list(trusted)
    ).values_list("comparison_id", "annotator_id", "ranking"):
        pair = strict_pair(ranking)
        if pair is not None:
            votes[cid].append((pair[0] < pair[1], trusted[annotator_id]))
    settled, total = judge_settled_counts(study_id=study.id)
    for cid in sorted(pairs, key=lambda c: -len(votes.get(c, ()))):
        pair = pairs[cid]
        if not votes.get(cid) or not settles(judges_verdict(votes[cid]), reference):
            continue
        if in_evaluation_set(study_id=study.id, item_key=pair.item_key, rate=study.evaluation_rate):
            continue  # held-out figures are people's answers
        if _audited(study.id, pair.item_key, routing.audit_rate):
            outcome.audited += 1
            continue
        if not routing.room(settled, total - 1):
            break
        done = Comparison.objects.filter(id=cid, status=Comparison.Status.QUEUED).update(
            status=Comparison.Status.DONE, settled_by_judges=True, completed_at=timezone.now()
        )
        settled += done
        outcome.settled += done


def judges_run(
    *,
    study_id: int,
    most: int = RUN_MOST,
    generators: Mapping[int, Generator] | None = None,
    cache: GenerationCache | None = None,
) -> JudgingOutcome:
    """Ask the study's active judges about its queued comparisons and settle what
    they may (see the module docstring); called by the ``judges_run`` task.
    ``generators`` (judge id → generator) replace the judges' sources (tests);
    the cache is the installation's unless one is given."""
    outcome = JudgingOutcome()
    study = Study.objects.filter(id=study_id).first()
    if study is None or study.status != Study.Status.ACTIVE:
        return outcome
    judges = list(AIJudge.objects.filter(study_id=study_id, active=True).select_related("source"))
    if not judges:
        return outcome
    cache = cache if cache is not None else generation_cache()
    queued = _open_comparisons(study_id=study_id).order_by("-priority", "id")
    todo = {
        judge.pk: list(queued.exclude(judgments__annotator_id=judge.user_id).values_list("id", flat=True)[:most])
        for judge in judges
    }
    shown = _shown(sorted({cid for ids in todo.values() for cid in ids}))
    for judge in judges:
        asked = [shown[cid] for cid in todo[judge.pk] if cid in shown]
        if not asked:
            continue
        try:
            generator = generators[judge.pk] if generators is not None else generator_for(judge.source)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            AIJudge.objects.filter(pk=judge.pk).update(failed=F("failed") + len(asked), last_error=reason[:2000])
            outcome.failed += len(asked)
            outcome.errors.append(f"{judge.name}: {reason}")
            continue
        _ask(study, judge, asked, generator, cache, outcome)
    _route(study, shown, outcome)
    if outcome.judged:
        loop.get().judgment_changed(study_id=study_id, queue_low_water=study.queue_refill_at)
    elif outcome.settled:
        loop.get().refill_request(study_id=study_id)
    return outcome
