"""One upload, imported now or as a background job: the service behind the
import pages and the REST API.

A small text upload (JSONL, HH-RLHF, CSV up to ``SYNC_IMPORT_MAX_BYTES``,
also once decompressed when it is gzip, bzip2 or xz, told by its first bytes)
is imported during the request: that takes well under a second, the
researcher sees the result (or the bad line) at once, and no worker needs to
be running. Larger files, compressed ones that hold more, and binary formats
(Parquet, datasets) are stored and imported by the worker as an
``ImportJob``, whose progress the caller shows.

Either way the import is all or nothing by default: a researcher who uploads
a file expects the file, and a silently partial dataset skews every figure
computed on it. With ``skip_invalid`` the valid rows are imported (still in
one transaction) and the invalid ones are reported on a job (line, field,
error, raw row), downloadable; an import done during the request is then
recorded as a finished job too, so the report has a page.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation import tasks
from annotation.imports import registry
from annotation.imports.jobs import import_job_create, import_job_record, import_upload_discard, import_upload_store
from annotation.imports.records import (
    READ_ERRORS,
    ImportFileError,
    ImportResult,
    Options,
    PromptRecord,
    SkippedRows,
    decompressing,
)
from annotation.imports.writer import study_import_records
from annotation.models import ImportJob, Study
from annotation.services import study_create

# Text uploads up to this size are imported during the request.
SYNC_IMPORT_MAX_BYTES = 512 * 1024


@dataclass(frozen=True)
class UploadOutcome:
    """What became of an upload: the ``result`` of an import done during the
    request, or the queued ``job`` that will do it. With "skip invalid rows",
    an import done during the request has both: its result and the finished
    job that keeps the report of skipped rows."""

    study: Study
    result: ImportResult | None = None
    job: ImportJob | None = None


def import_upload(
    *,
    study: Study,
    upload: Any,
    format: str | None,
    options: Options,
    by: AbstractBaseUser | None,
    skip_invalid: bool = False,
) -> UploadOutcome:
    """Import an uploaded file (a Django ``File``) into ``study``, now or as a job.

    ``format`` is a registry key, or ``None`` to detect it from the file's name
    and first bytes; only the options the format reads are kept. A bad file
    raises ``ImportFileError`` (naming the line or row and field) and writes
    nothing; a job's file is checked by the worker, which records the error on
    the job instead.

    Parsing, and storing a job's file, happen before any transaction is opened
    (on SQLite a transaction holds the write lock from its start); the writing
    is one transaction.
    """
    spec, options = _format_and_options(upload, format=format, options=options)
    content = _content_now(upload, spec)
    if content is not None:
        skipped = SkippedRows() if skip_invalid else None
        records = _read_now(content, spec, options, skipped)
        with transaction.atomic():
            result = study_import_records(study=study, records=records, rows_skipped=_count(skipped))
            report = _report(study, upload, spec, options, by, result, skipped)
        return UploadOutcome(study=study, result=result, job=report)
    stored = import_upload_store(upload=upload)
    try:
        job = _job_queue(study=study, stored=stored, format=spec.key, options=options, by=by, skip_invalid=skip_invalid)
    except Exception:
        import_upload_discard(stored=stored)
        raise
    return UploadOutcome(study=study, job=job)


def study_create_from_upload(
    *, name: str, upload: Any, format: str | None, options: Options, by: AbstractBaseUser, skip_invalid: bool = False
) -> UploadOutcome:
    """Create a study (``by`` its researcher) from an uploaded file.

    A small text file is imported at once and a bad one creates nothing
    (``ImportFileError``). A large or binary one creates a draft study and an
    import job; if the job fails, the draft stays, empty, with the job's error
    to see.
    """
    spec, options = _format_and_options(upload, format=format, options=options)
    content = _content_now(upload, spec)
    if content is not None:
        skipped = SkippedRows() if skip_invalid else None
        records = _read_now(content, spec, options, skipped)
        with transaction.atomic():
            study = study_create(name=name, created_by=by)
            result = study_import_records(study=study, records=records, rows_skipped=_count(skipped))
            report = _report(study, upload, spec, options, by, result, skipped)
        return UploadOutcome(study=study, result=result, job=report)
    stored = import_upload_store(upload=upload)
    try:
        with transaction.atomic():
            study = study_create(name=name, created_by=by, status=Study.Status.DRAFT)
            job = _job_queue(
                study=study, stored=stored, format=spec.key, options=options, by=by, skip_invalid=skip_invalid
            )
    except Exception:
        import_upload_discard(stored=stored)
        raise
    return UploadOutcome(study=study, job=job)


def _format_and_options(
    upload: Any, *, format: str | None, options: Options
) -> tuple[registry.ImportFormat, dict[str, Any]]:
    spec = registry.get(format) if format else registry.get(registry.detect_upload(upload))
    return spec, {name: value for name, value in options.items() if name in spec.options}


def _content_now(upload: Any, spec: registry.ImportFormat) -> IO[bytes] | None:
    """The upload's text when it is imported during the request (None: the
    worker imports it), as bytes in memory: a Django upload iterates lines
    split at a lone carriage return too, and the worker's reader splits only
    at a line feed. A compressed file may hold many times its size, so it
    is decompressed here only up to ``SYNC_IMPORT_MAX_BYTES``: a file that
    holds more goes to the worker, and one that cannot be decompressed is
    refused (``ImportFileError``), as the worker would refuse it."""
    if not spec.in_request or upload.size > SYNC_IMPORT_MAX_BYTES:
        return None
    upload.seek(0)
    head = upload.read(8)
    upload.seek(0)
    if not registry.is_compressed(head):
        content = upload.read(SYNC_IMPORT_MAX_BYTES + 1)
        upload.seek(0)
        return io.BytesIO(content)
    try:
        with decompressing(upload) as stream:
            content = stream.read(SYNC_IMPORT_MAX_BYTES + 1)
    except READ_ERRORS as exc:
        raise ImportFileError(f"cannot read the file: {exc}") from None
    finally:
        upload.seek(0)
    return io.BytesIO(content) if len(content) <= SYNC_IMPORT_MAX_BYTES else None


def _read_now(
    content: IO[bytes], spec: registry.ImportFormat, options: Options, skipped: SkippedRows | None
) -> list[PromptRecord]:
    if spec.read_file is None:  # _content_now saw to it
        raise ImportFileError(f"{spec.label} files are imported in the background")
    return spec.read_file(content, options=options, **({} if skipped is None else {"skipped": skipped}))


def _count(skipped: SkippedRows | None) -> int:
    return skipped.count if skipped is not None else 0


def _report(
    study: Study,
    upload: Any,
    spec: registry.ImportFormat,
    options: Options,
    by: AbstractBaseUser | None,
    result: ImportResult,
    skipped: SkippedRows | None,
) -> ImportJob | None:
    """A finished job keeping the skipped rows of an import done now (None when
    the import was all or nothing)."""
    if skipped is None:
        return None
    return import_job_record(
        study=study,
        format=spec.key,
        original_name=getattr(upload, "name", "") or "upload",
        options=options,
        created_by=by,
        result=result,
        skipped=skipped,
    )


@transaction.atomic
def _job_queue(
    *,
    study: Study,
    stored: Path,
    format: str,
    options: Options,
    by: AbstractBaseUser | None,
    skip_invalid: bool = False,
) -> ImportJob:
    """Record the job and start the worker's task once the transaction commits."""
    job = import_job_create(
        study=study, stored=stored, format=format, options=options, created_by=by, skip_invalid=skip_invalid
    )
    job_id = job.pk
    transaction.on_commit(lambda: tasks.import_job_run.delay(job_id))
    return job
