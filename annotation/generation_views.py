"""The study page's "Generate responses", "AI judges" and "Prompt optimisation"
cards (issue 17): a study's sources, runs started from it and their progress;
its AI judges and how far they may settle comparisons without a person; its
instructions, task inputs and best prompt so far.

Researchers only (``selectors.access_study_for_researcher``: a 404 for anyone
else, partials included). Adding a source and starting a run are plain form
posts that redirect back to the card with a message; the run itself happens in
the worker (``annotation.tasks.generation_job_run``, the ``generate`` queue),
and the card's job list polls while a run is unfinished.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotation import selectors, tasks
from annotation.forms import (
    AIJudgeForm,
    GenerationJobForm,
    GenerationSourceForm,
    JudgeRoutingForm,
    PromptOptimisationForm,
    RegenerationForm,
)
from annotation.models import AIJudge, PromptOptimisation, Study
from annotation.services.generation import generation_job_create, generation_source_create, regeneration_configure
from annotation.services.judging import (
    ai_judge_create,
    ai_judge_update,
    judge_routing_configure,
    study_has_active_judges,
)
from annotation.services.prompt_opt import best_instructions, prompt_optimisation_configure


def _back(study: Study) -> str:
    return reverse("study_detail", args=[study.slug]) + "#generate"


def _errors(errors: dict[str, list[str]], labels: dict[str, str]) -> str:
    return " ".join(
        f"{labels.get(field, field.replace('_', ' ').capitalize())}: {' '.join(e)}" for field, e in errors.items()
    )


@login_required
@require_POST
def generation_source_add(request: HttpRequest, slug: str) -> HttpResponse:
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    form = GenerationSourceForm(request.POST)
    labels = {name: str(field.label or name.replace("_", " ").capitalize()) for name, field in form.fields.items()}
    if not form.is_valid():
        messages.error(request, f"Source not added. {_errors(form.errors, labels)}")
        return redirect(_back(study))
    try:
        source = generation_source_create(study=study, created_by=request.user, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, f"Source not added. {_errors(exc.message_dict, labels)}")
        return redirect(_back(study))
    messages.success(request, f"Source {source.name!r} added: {source.where}.")
    return redirect(_back(study))


@login_required
@require_POST
def generation_job_start(request: HttpRequest, slug: str) -> HttpResponse:
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    form = GenerationJobForm(request.POST, study=study)
    if not form.is_valid():
        labels = {name: str(field.label or name.capitalize()) for name, field in form.fields.items()}
        messages.error(request, f"Nothing started. {_errors(form.errors, labels)}")
        return redirect(_back(study))
    try:
        with transaction.atomic():
            job = generation_job_create(study=study, created_by=request.user, **form.cleaned_data)
            job_id = job.pk
            transaction.on_commit(lambda: tasks.generation_job_run.delay(job_id))
    except ValidationError as exc:
        messages.error(request, f"Nothing started. {' '.join(exc.messages)}")
        return redirect(_back(study))
    prompts = len(job.prompt_ids) if job.prompt_ids else study.prompts.count()
    messages.success(
        request,
        f"Generating {job.per_prompt} response(s) for each of {prompts} prompt(s) with {job.source.name!r} "
        f"(seeds from {job.seed}); progress is below.",
    )
    return redirect(_back(study))


@login_required
@require_POST
def regeneration_set(request: HttpRequest, slug: str) -> HttpResponse:
    """Turn automatic regeneration on or off, or change its limits."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    form = RegenerationForm(request.POST, study=study, sources=list(study.generation_sources.all()))
    labels = {name: str(field.label) for name, field in form.fields.items()}
    if not form.is_valid():
        messages.error(request, f"Regeneration not changed. {_errors(form.errors, labels)}")
        return redirect(_back(study))
    data = form.cleaned_data
    try:
        study = regeneration_configure(
            study=study,
            source_id=data["source"],
            per_prompt=data["per_prompt"],
            prompts=data["prompts"],
            rounds=data["rounds"],
        )
    except ValidationError as exc:
        messages.error(request, f"Regeneration not changed. {' '.join(exc.messages)}")
        return redirect(_back(study))
    source = study.regenerate_source
    if source is None:
        messages.success(request, "Automatic regeneration is off.")
    else:
        messages.success(
            request,
            f"After each new model, {source.name!r} will be asked for {data['per_prompt']} response(s) to up to "
            f"{data['prompts']} unclear prompt(s), for at most {data['rounds']} round(s).",
        )
    return redirect(_back(study))


@login_required
@require_GET
def generation_jobs(request: HttpRequest, slug: str) -> HttpResponse:
    """The run list, polled by htmx while a run is unfinished; a plain GET goes to the study page."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    if not request.htmx:
        return redirect(_back(study))
    return render(
        request, "annotation/_generation_jobs.html", {"study": study, **selectors.generation_overview(study=study)}
    )


def _judges_back(study: Study) -> str:
    return reverse("study_detail", args=[study.slug]) + "#judges"


@login_required
@require_POST
def judge_add(request: HttpRequest, slug: str) -> HttpResponse:
    """Add an AI judge; it is asked about the queue at once (in the worker)."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    form = AIJudgeForm(request.POST, sources=list(study.generation_sources.all()))
    labels = {name: str(field.label) for name, field in form.fields.items()}
    if not form.is_valid():
        messages.error(request, f"Judge not added. {_errors(form.errors, labels)}")
        return redirect(_judges_back(study))
    data = form.cleaned_data
    try:
        with transaction.atomic():
            judge = ai_judge_create(
                study=study, source_id=data["source"], name=data["name"], template=data["template"],
                created_by=request.user,
            )  # fmt: skip
            transaction.on_commit(lambda: tasks.judges_run.delay(study.id))
    except ValidationError as exc:
        messages.error(request, f"Judge not added. {_errors(exc.message_dict, labels)}")
        return redirect(_judges_back(study))
    messages.success(
        request,
        f"Judge {judge.name!r} added: it answers the queued comparisons now and those the loop queues next. "
        "It settles none alone until a fit has measured it against people.",
    )
    return redirect(_judges_back(study))


@login_required
@require_POST
def judge_active_set(request: HttpRequest, slug: str, judge_id: int) -> HttpResponse:
    """Turn a judge off (it is asked nothing more; its answers stay) or on again."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    judge = get_object_or_404(AIJudge, pk=judge_id, study=study)
    active = request.POST.get("active") == "1"
    with transaction.atomic():
        ai_judge_update(judge=judge, active=active)
        if active:
            transaction.on_commit(lambda: tasks.judges_run.delay(study.id))
    messages.success(request, f"Judge {judge.name!r} is {'on' if active else 'off'}.")
    return redirect(_judges_back(study))


@login_required
@require_POST
def judge_routing_set(request: HttpRequest, slug: str) -> HttpResponse:
    """Set the share of comparisons judges may settle and the audit rate."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    form = JudgeRoutingForm(request.POST, study=study)
    if not form.is_valid():
        labels = {name: str(field.label) for name, field in form.fields.items()}
        messages.error(request, f"Routing not changed. {_errors(form.errors, labels)}")
        return redirect(_judges_back(study))
    share, audit = form.cleaned_data["share"], form.cleaned_data["audit"]
    judge_routing_configure(study=study, share=share / 100, audit_rate=audit / 100)
    if share:
        messages.success(
            request,
            f"Judges may settle up to {share}% of the comparisons when the ones the model trusts agree; "
            f"{audit}% of those still go to people.",
        )
    else:
        messages.success(request, "Judges settle nothing alone now: their answers only add weighted votes.")
    return redirect(_judges_back(study))


@login_required
@require_POST
def judges_ask(request: HttpRequest, slug: str) -> HttpResponse:
    """Ask the active judges about the queue now (the loop also does after each refill)."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    if not study_has_active_judges(study_id=study.id):
        messages.error(request, "No judge is on: add one or turn one on first.")
        return redirect(_judges_back(study))
    transaction.on_commit(lambda: tasks.judges_run.delay(study.id))
    messages.success(request, "The judges are looking at the queued comparisons; reload for their counts.")
    return redirect(_judges_back(study))


def _po_back(study: Study) -> str:
    return reverse("study_detail", args=[study.slug]) + "#prompt-optimisation"


@login_required
@require_POST
def prompt_optimisation_set(request: HttpRequest, slug: str) -> HttpResponse:
    """Make the study a prompt-optimisation one, change its settings, or add
    instructions and task inputs; their responses are generated in the worker."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    config = PromptOptimisation.objects.filter(study=study).first()
    form = PromptOptimisationForm(request.POST, sources=list(study.generation_sources.all()), config=config)
    labels = {name: str(field.label) for name, field in form.fields.items()}
    if not form.is_valid():
        messages.error(request, f"Prompt optimisation not changed. {_errors(form.errors, labels)}")
        return redirect(_po_back(study))
    data = form.cleaned_data
    try:
        with transaction.atomic():
            config = prompt_optimisation_configure(
                study=study,
                target_source_id=data["target"],
                rewriter_source_id=data["rewriter"],
                template=data["template"],
                task=data.get("task", ""),
                instructions=data["instructions"].splitlines(),
                inputs=data["inputs"].splitlines(),
                rewrite_per_round=data["rewrite_per_round"],
                rewrite_rounds=data["rewrite_rounds"],
                rewrite_template=data["rewrite_template"],
                created_by=request.user,
            )
            transaction.on_commit(lambda: tasks.prompt_outputs_run.delay(study.id))
    except ValidationError as exc:
        messages.error(request, f"Prompt optimisation not changed. {_errors(exc.message_dict, labels)}")
        return redirect(_po_back(study))
    messages.success(
        request,
        f"Prompt optimisation saved: {config.target.name!r} is generating the responses; instructions are compared "
        "as soon as theirs exist.",
    )
    return redirect(_po_back(study))


@login_required
@require_GET
def prompt_optimisation_best(request: HttpRequest, slug: str) -> HttpResponse:
    """The best instruction so far and the live model's top five, as a JSON download."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    best = best_instructions(study=study)
    if best is None:
        # 409: the study is there, its ranking is not yet (a 404 would read as no access).
        return JsonResponse({"detail": "No model has ranked this study's instructions yet."}, status=409)
    response = JsonResponse({"study": study.slug, **best}, json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-best-prompt.json"'
    return response
