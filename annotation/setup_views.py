"""Study set-up pages for researchers: settings, status, members, invite link and
imports (with background jobs and their progress), without the Django admin.

Function views as in ``annotation.views``: each authorises through
``selectors.access_study_for_researcher`` (a 404 for annotators and strangers,
partials included), parses a form, calls one service and renders or redirects.
The progress partial has a plain twin: the job page, which refreshes itself
with a meta tag while the job runs.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation import selectors, services
from annotation.forms import ImportUploadForm, MemberAddForm, StudySettingsForm
from annotation.imports.jobs import import_job_skipped_report
from annotation.imports.records import ImportFileError, ImportResult, import_summary
from annotation.imports.upload import import_upload, study_create_from_upload
from annotation.models import ImportJob, Membership, Study
from annotation.organisations.forms import study_organisation_form
from annotation.organisations.selectors import organisations_for_study_creation, study_organisation
from annotation.organisations.services import study_create_in_organisation, study_organisation_set

# Import jobs listed on the settings page.
RECENT_JOBS = 5


def _locked_fields(study: Study) -> tuple[str, ...]:
    if selectors.study_has_judgments(study=study):
        return services.STUDY_SETTINGS_LOCKED_AFTER_JUDGMENTS
    return ()


def _add_service_errors(form: StudySettingsForm, exc: ValidationError) -> None:
    """Put a service's ValidationError on the fields it names (the form has them all)."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc)


def _settings_context(request: HttpRequest, study: Study, **overrides) -> dict:
    invite = request.build_absolute_uri(reverse("join", args=[study.invite_token]))
    context = {
        "study": study,
        "form": None,
        "locked": (),
        "import_form": ImportUploadForm(),
        "member_form": MemberAddForm(),
        "members": Membership.objects.filter(study=study).select_related("user").order_by("role", "user__username"),
        "jobs": ImportJob.objects.filter(study=study).order_by("-created_at")[:RECENT_JOBS],
        "invite_url": invite,
        # The Organisation card: where the study is, and where it may go.
        "study_org": study_organisation(study_id=study.pk),
        "move_orgs": organisations_for_study_creation(user=request.user),
    }
    context.update(overrides)
    return context


@login_required
@require_http_methods(["GET", "POST"])
def study_new(request: HttpRequest) -> HttpResponse:
    """Create a study from its settings (no data yet: import on the next page)."""
    org_form = study_organisation_form(request)
    if org_form is None and not selectors.user_can_create_study(user=request.user):
        raise PermissionDenied("Only staff, researchers and members of an organisation can create studies.")
    form = StudySettingsForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and (org_form is None or org_form.is_valid()):
        organisation = org_form.cleaned_data["organisation"] if org_form else None
        try:
            if organisation is None:
                study = services.study_settings_create(
                    name=form.cleaned_data["name"], settings=form.settings(), created_by=request.user
                )
            else:
                study = study_create_in_organisation(
                    organisation=organisation,
                    name=form.cleaned_data["name"],
                    settings=form.settings(),
                    created_by=request.user,
                )
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(request, f"Created study “{study.name}”. Import prompts and responses below.")
            return redirect("study_settings", slug=study.slug)
    status = 400 if _status(form) == 400 or (org_form is not None and org_form.errors) else 200
    context = {"study": None, "form": form, "locked": (), "org_form": org_form}
    return render(request, "annotation/study_settings.html", context, status=status)


def _status(form) -> int:
    return 400 if form.is_bound and form.errors else 200


@login_required
@require_http_methods(["GET", "POST"])
def study_settings(request: HttpRequest, slug: str) -> HttpResponse:
    """Edit a study's settings; also shows status, members, invite link and imports."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    locked = _locked_fields(study)
    # The form works on its own copy, so a refused edit leaves the page's study as stored.
    form = StudySettingsForm(request.POST or None, instance=Study.objects.get(pk=study.pk), locked=locked)
    if request.method == "POST" and form.is_valid():
        try:
            services.study_settings_update(study=study, changes=form.settings() | {"name": form.cleaned_data["name"]})
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("study_settings", slug=study.slug)
    return render(
        request,
        "annotation/study_settings.html",
        _settings_context(request, study, form=form, locked=locked),
        status=_status(form),
    )


@login_required
@require_POST
def study_status(request: HttpRequest, slug: str) -> HttpResponse:
    """Start, pause, close or reopen the study (a button on the study and settings pages)."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    status = request.POST.get("status", "")
    try:
        updated = services.study_status_set(study=study, status=status, by=request.user)
    except services.AnnotationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"The study is now {updated.get_status_display().lower()}.")
    return redirect(_back(request, study))


def _with_article(noun: str) -> str:
    """ "an annotator", "a researcher": the article English gives the word."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _back(request: HttpRequest, study: Study) -> str:
    """Back to the page the button was on (only our own two pages)."""
    pages = {
        "detail": reverse("study_detail", args=[study.slug]),
        "settings": reverse("study_settings", args=[study.slug]),
    }
    return pages.get(request.POST.get("next", ""), pages["settings"])


@login_required
@require_POST
def study_member_add(request: HttpRequest, slug: str) -> HttpResponse:
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    form = MemberAddForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a username and a role.")
        return redirect("study_settings", slug=study.slug)
    try:
        membership = services.membership_add_by_username(
            study=study, username=form.cleaned_data["username"], role=form.cleaned_data["role"], by=request.user
        )
    except services.AnnotationError as exc:
        messages.error(request, str(exc))
    else:
        role = membership.get_role_display().lower()
        messages.success(request, f"{membership.user.get_username()} is now {_with_article(role)}.")
    return redirect(reverse("study_settings", args=[study.slug]) + "#members")


@login_required
@require_POST
def study_invite_rotate(request: HttpRequest, slug: str) -> HttpResponse:
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    services.study_invite_rotate(study=study)
    messages.success(request, "New invite link made; the old one no longer works.")
    return redirect(reverse("study_settings", args=[study.slug]) + "#invite")


# --- imports -----------------------------------------------------------------------


def _import_summary(result: ImportResult) -> str:
    return import_summary(asdict(result))


def _form_errors(form) -> str:
    return " ".join(
        f"{form.fields[name].label if name in form.fields else 'File'}: {' '.join(errors)}"
        for name, errors in form.errors.items()
    )


@login_required
@require_POST
def study_import(request: HttpRequest, slug: str) -> HttpResponse:
    """Import an upload into a study: a small text file at once (the outcome is a
    message), anything else as a background job whose progress page follows."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    back = _back(request, study) if request.POST.get("next") else reverse("study_detail", args=[study.slug])
    form = ImportUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, f"Nothing imported. {_form_errors(form)}")
        return redirect(back)
    try:
        outcome = import_upload(
            study=study,
            upload=form.cleaned_data["file"],
            format=form.cleaned_data["format"],
            options=form.options(),
            by=request.user,
            skip_invalid=form.skip_invalid(),
        )
    except ImportFileError as exc:
        messages.error(request, f"Nothing imported: {exc}")
        return redirect(back)
    if outcome.job is not None:  # running in the background, or the report of skipped rows
        return redirect("import_job_detail", slug=study.slug, job_id=outcome.job.pk)
    messages.success(request, _import_summary(outcome.result))
    return redirect(back)


@login_required
@require_POST
def study_create_from_file(request: HttpRequest) -> HttpResponse:
    """Create a study from an upload. A small text file is imported at once and a
    bad one creates nothing; a large or binary one creates a draft study and an
    import job (if that job fails, the draft stays, empty, with the error shown)."""
    org_form = study_organisation_form(request)
    if org_form is None and not selectors.user_can_create_study(user=request.user):
        raise PermissionDenied("Only staff, researchers and members of an organisation can create studies.")
    form = ImportUploadForm(request.POST, request.FILES)
    if not form.is_valid() or (org_form is not None and not org_form.is_valid()):
        problems = " ".join(_form_errors(f) for f in (form, org_form) if f is not None and f.errors)
        messages.error(request, f"No study created. {problems}")
        return redirect("home")
    upload = form.cleaned_data["file"]
    name = form.cleaned_data["name"] or Path(upload.name).stem.removesuffix(".jsonl") or "Untitled study"
    organisation = org_form.cleaned_data["organisation"] if org_form else None
    try:
        # In its organisation from the start: the study and the link commit together.
        with transaction.atomic():
            outcome = study_create_from_upload(
                name=name,
                upload=upload,
                format=form.cleaned_data["format"],
                options=form.options(),
                by=request.user,
                skip_invalid=form.skip_invalid(),
            )
            if organisation is not None:
                study_organisation_set(study=outcome.study, organisation=organisation)
    except ImportFileError as exc:
        messages.error(request, f"No study created: {exc}")
        return redirect("home")
    study = outcome.study
    if outcome.job is not None and outcome.result is None:
        messages.info(request, f"Created the draft study “{study.name}”; its data is being imported.")
        return redirect("import_job_detail", slug=study.slug, job_id=outcome.job.pk)
    messages.success(request, f"Created study “{study.name}”. {_import_summary(outcome.result)}")
    if outcome.job is not None:  # the report of skipped rows
        return redirect("import_job_detail", slug=study.slug, job_id=outcome.job.pk)
    return redirect("study_detail", slug=study.slug)


@login_required
@require_GET
def import_job_detail(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    """An import's progress page; without JavaScript it refreshes itself until done."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    job = selectors.import_job_get(study=study, job_id=job_id)
    embedding = selectors.embedding_progress_get(study=study)
    return render(request, "annotation/import_job.html", {"study": study, "job": job, "embedding": embedding})


@login_required
@require_GET
def import_job_progress(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    """The progress bar, polled by htmx every second while the job runs; a plain
    GET goes to the job page."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    job = selectors.import_job_get(study=study, job_id=job_id)
    if not request.htmx:
        return redirect("import_job_detail", slug=study.slug, job_id=job.pk)
    return render(request, "annotation/_import_progress.html", {"study": study, "job": job})


@login_required
@require_GET
def embedding_progress(request: HttpRequest, slug: str) -> HttpResponse:
    """How far the study's candidates are embedded, polled by htmx while the
    worker embeds them; a plain GET goes to the study page."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    if not request.htmx:
        return redirect("study_detail", slug=study.slug)
    embedding = selectors.embedding_progress_get(study=study)
    return render(request, "annotation/_embedding_progress.html", {"study": study, "embedding": embedding})


@login_required
@require_GET
def import_job_skipped(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    """The rows an import skipped as a download: JSONL, or CSV with ``?as=csv``
    (line, field, error, and the raw row)."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    job = selectors.import_job_get(study=study, job_id=job_id)
    kind = "csv" if request.GET.get("as") == "csv" else "jsonl"
    content_type = "text/csv; charset=utf-8" if kind == "csv" else "application/x-ndjson; charset=utf-8"
    response = HttpResponse(import_job_skipped_report(job=job, kind=kind), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-import-{job.pk}-skipped.{kind}"'
    return response
