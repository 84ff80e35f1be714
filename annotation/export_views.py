"""Researcher downloads: a study's data in every export format, and reward-model checkpoints.

Function views, like the rest of the annotation pages: authorise through
``access_study_for_researcher`` (annotators of the study and strangers get the
same 404 as for a study that does not exist), then stream what
``annotation.exporting`` produces. Nothing is held in memory or on disk longer
than the download: the Hugging Face formats are built in a temporary folder
that is removed when the response is closed, however the download ended.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from annotation import selectors
from annotation.exporting import (
    EXPORT_FORMATS,
    ExportError,
    ExportFormat,
    checkpoint_archive,
    export_hf_dataset,
    export_stream,
    file_stream,
    parquet_stream,
    zip_folder_stream,
)
from annotation.models import RewardModelVersion, Study

_YES = {"1", "true", "on", "yes"}


class _CleanedUpStream:
    """An iterator of blocks that runs ``cleanup`` when Django closes the
    response: after the last block, or when the client went away mid-download
    (a generator's ``finally`` would not run if it never started)."""

    def __init__(self, blocks: Iterator[bytes], cleanup: Callable[[], None]) -> None:
        self._blocks = blocks
        self._cleanup = cleanup

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._blocks)

    def close(self) -> None:
        close = getattr(self._blocks, "close", None)
        if close is not None:
            close()
        self._cleanup()


def _download(blocks, *, content_type: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(blocks, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
    # Research data with people's answers: no shared cache keeps a copy.
    response["Cache-Control"] = "private, no-store"
    return response


def _dataset_blocks(*, study: Study, spec: ExportFormat, pseudonymise: bool) -> _CleanedUpStream:
    """Build the dataset in a temporary folder, then stream it (a zip for a folder)."""
    work = Path(tempfile.mkdtemp(prefix="prefloop-export-"))
    try:
        path = export_hf_dataset(
            study=study, kind=spec.hf_kind, layout=spec.hf_layout, dest=work, pseudonymise=pseudonymise
        )
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    blocks = file_stream(path) if path.is_file() else zip_folder_stream(path, root=path.name)
    return _CleanedUpStream(blocks, lambda: shutil.rmtree(work, ignore_errors=True))


@login_required
@require_GET
def study_export(request: HttpRequest, slug: str, fmt: str) -> HttpResponse:
    """Download the study's data as ``fmt`` (a key of ``EXPORT_FORMATS``);
    ``?pseudonymise=1`` replaces usernames with per-study pseudonyms."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    spec = EXPORT_FORMATS.get(fmt)
    if spec is None:
        raise Http404("No such export format.")
    pseudonymise = request.GET.get("pseudonymise", "").lower() in _YES
    try:
        return export_response(study=study, spec=spec, pseudonymise=pseudonymise)
    except ExportError as exc:  # e.g. nothing to export yet
        messages.info(request, str(exc))
        return redirect("study_detail", slug=study.slug)


def export_response(*, study: Study, spec: ExportFormat, pseudonymise: bool) -> StreamingHttpResponse:
    """The download of one export format (pages and the REST API share it).

    Text formats and parquet files stream as they are written, so a large
    download starts at once. A ``save_to_disk`` folder is built before the
    first byte is sent, so its failures (e.g. nothing to export yet) are an
    ``ExportError`` for the caller to report, not a truncated archive."""
    filename = spec.file_name(slug=study.slug, pseudonymise=pseudonymise)
    if spec.kind == "stream":
        blocks = export_stream(study=study, fmt=spec.key, pseudonymise=pseudonymise)
    elif spec.hf_layout == "parquet":
        blocks = parquet_stream(study=study, kind=spec.hf_kind, pseudonymise=pseudonymise)
    else:
        blocks = _dataset_blocks(study=study, spec=spec, pseudonymise=pseudonymise)
    return _download(blocks, content_type=spec.content_type, filename=filename)


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
