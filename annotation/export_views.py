"""Researcher downloads: a study's data in every export format, and reward-model checkpoints.

Function views, like the rest of the annotation pages: authorise through
``access_study_for_researcher`` (annotators of the study and strangers get the
same 404 as for a study that does not exist), look the download up in
``annotation.exports.registry`` and stream it. Nothing is held in memory or on
disk longer than the download (see ``annotation.exports.writers``).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from annotation import selectors
from annotation.exports import registry
from annotation.exports.archives import checkpoint_archive
from annotation.exports.errors import ExportError
from annotation.exports.registry import Export
from annotation.models import RewardModelVersion, Study

_YES = {"1", "true", "on", "yes"}
_NO = {"0", "false", "off", "no"}


def formula_escape_wanted(value: str | None) -> bool:
    """Whether a download's ``formula_escape`` parameter leaves CSV formula
    escaping on: it is on unless the parameter says 0, false, off or no."""
    return (value or "").strip().lower() not in _NO


def _download(blocks: Iterable[bytes], *, content_type: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(blocks, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
    # Research data with people's answers: no shared cache keeps a copy.
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def study_export(request: HttpRequest, slug: str, fmt: str) -> HttpResponse:
    """Download the study's data as ``fmt`` (a key of the export registry);
    ``?pseudonymise=1`` replaces usernames with per-study pseudonyms, ``?form=``
    picks the form of a kind that has several (DPO pairs: conversational or text),
    ``?formula_escape=off`` keeps CSV text that starts like a spreadsheet formula
    as it was (it gets a leading quote by default)."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    export = registry.get(fmt)
    if export is None:
        raise Http404("No such export format.")
    pseudonymise = request.GET.get("pseudonymise", "").lower() in _YES
    try:
        return export_response(
            study=study,
            export=export,
            pseudonymise=pseudonymise,
            form=request.GET.get("form"),
            escape_formulas=formula_escape_wanted(request.GET.get("formula_escape")),
        )
    except ExportError as exc:  # e.g. nothing to export yet, or a form the kind does not have
        messages.info(request, str(exc))
        return redirect("study_detail", slug=study.slug)


def export_response(
    *, study: Study, export: Export, pseudonymise: bool, form: str | None = None, escape_formulas: bool = True
) -> StreamingHttpResponse:
    """The download of one export (pages and the REST API share it), in ``form``
    or the study's default form when the kind has several, named in the file
    name, CSV text that starts like a formula quoted unless ``escape_formulas``
    is False; ExportError, before anything is sent, when it cannot be made."""
    kind = export.records_kind(study=study, form=form)
    blocks = export.stream(study=study, pseudonymise=pseudonymise, form=kind.form, escape_formulas=escape_formulas)
    filename = export.file_name(slug=study.slug, pseudonymise=pseudonymise, form=kind.form)
    return _download(blocks, content_type=export.content_type, filename=filename)


@login_required
@require_GET
def model_checkpoint(request: HttpRequest, slug: str, version: int) -> StreamingHttpResponse:
    """Download one reward-model version of the study as a zip of its checkpoint folder."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    model = selectors.model_version_get(study=study, version=version)
    if model is None:
        raise Http404("No such model version.")
    try:
        return checkpoint_response(model, study=study)
    except ExportError as exc:
        raise Http404(str(exc)) from None


def checkpoint_response(model: RewardModelVersion, *, study: Study) -> StreamingHttpResponse:
    """A model version's checkpoint as a zip download (ExportError when it is gone)."""
    blocks = checkpoint_archive(version=model)
    return _download(blocks, content_type="application/zip", filename=f"{study.slug}-model-v{model.version}.zip")
