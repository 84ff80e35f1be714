"""Import jobs: an upload stored on disk and imported by the worker, with progress.

``import_upload_store`` keeps the upload under ``MEDIA_ROOT/imports/`` and
``import_job_create`` records the job; ``annotation.imports.upload`` decides
when to make one and enqueues the task (``annotation.tasks.import_job_run``),
which calls ``import_job_run``. The web process only polls the ``ImportJob``
row (its page, and the API).
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections
from django.db.models import Q
from django.utils import timezone

from annotation.imports import registry
from annotation.imports.records import ImportFileError, Options, Progress
from annotation.imports.writer import study_import_records
from annotation.models import ImportJob, Study

logger = logging.getLogger(__name__)

# A job left running this long by a dead worker may be claimed again.
STALE_AFTER = timedelta(hours=1)
# How often progress is written while records are written (on the side connection).
WRITE_PROGRESS_SECONDS = 0.5


def import_upload_store(*, upload: Any) -> Path:
    """Copy an upload (a Django ``File``) under ``MEDIA_ROOT/imports/<random>/``,
    chunk by chunk, and return its path relative to ``MEDIA_ROOT``."""
    folder = Path("imports") / uuid.uuid4().hex
    safe_name = Path(getattr(upload, "name", "") or "upload").name[-120:] or "upload"
    target = Path(settings.MEDIA_ROOT) / folder / safe_name
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for chunk in upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(1 << 20), b""):
            out.write(chunk)
    return folder / safe_name


def import_upload_discard(*, stored: Path) -> None:
    """Remove a stored upload (and anything unpacked beside it)."""
    shutil.rmtree((Path(settings.MEDIA_ROOT) / stored).parent, ignore_errors=True)


def import_job_create(
    *, study: Study, stored: Path, format: str, options: Options, created_by: AbstractBaseUser | None
) -> ImportJob:
    """Record a queued import of a stored upload (``import_upload_store``).

    Enqueuing its task is the caller's business (``annotation.imports.upload``
    does it once the transaction commits); the web process does no parsing.
    """
    return ImportJob.objects.create(
        study=study,
        created_by=created_by,
        format=registry.get(format).key,
        file_path=str(stored),
        original_name=stored.name,
        options=dict(options),
    )


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Parse and write an import job's file; called by the ``import_job_run`` task.

    Claims the job first (queued → running, one conditional UPDATE), so a
    message delivered twice imports once; a job left running for an hour by a
    dead worker may be claimed again. Rows are checked outside any transaction,
    reporting ``processed`` as they go; then everything is written in one
    transaction, so a bad row or a crash imports nothing. While that
    transaction is open, progress is written on a second database connection
    (not on SQLite, which allows one writer at a time). A failed job keeps the
    error, with its line or row and field, and its file for inspection.
    """
    now = timezone.now()
    claimable = Q(status=ImportJob.Status.QUEUED) | Q(status=ImportJob.Status.RUNNING, started_at__lt=now - STALE_AFTER)
    claimed = ImportJob.objects.filter(claimable, pk=job_id).update(
        status=ImportJob.Status.RUNNING, stage=ImportJob.Stage.CHECKING, processed=0, started_at=now, error=""
    )
    job = ImportJob.objects.select_related("study").filter(pk=job_id).first()
    if not claimed or job is None:
        return job
    try:
        spec = registry.get(job.format)
        path = Path(settings.MEDIA_ROOT) / job.file_path
        if spec.prepare is not None:
            path = spec.prepare(path)
        ImportJob.objects.filter(pk=job_id).update(total=spec.count_rows(path, options=job.options))
        records = spec.parse_stored(path, options=job.options, on_progress=_checking_progress(job_id))
        ImportJob.objects.filter(pk=job_id).update(stage=ImportJob.Stage.WRITING, processed=0, total=len(records))
        with _side_progress(job_id) as written:
            result = study_import_records(study=job.study, records=records, on_progress=written)
    except ImportFileError as exc:
        return _import_job_fail(job_id, f"Nothing imported: {exc}")
    except IntegrityError:
        logger.warning("import job %s collided with another import", job_id, exc_info=True)
        return _import_job_fail(
            job_id, "Nothing imported: another import wrote the same prompts at the same time; run it again."
        )
    except Exception:
        logger.exception("import job %s failed", job_id)
        _import_job_fail(job_id, "Nothing imported: the import failed unexpectedly; the error is in the worker log.")
        raise
    ImportJob.objects.filter(pk=job_id).update(
        status=ImportJob.Status.DONE,
        processed=len(records),
        result=asdict(result),
        finished_at=timezone.now(),
    )
    # The upload (and an unpacked dataset) is no longer needed once imported.
    import_upload_discard(stored=Path(job.file_path))
    return ImportJob.objects.get(pk=job_id)


def _checking_progress(job_id: int) -> Progress:
    """Rows checked so far, written to the job row (no transaction is open yet)."""

    def checked(count: int) -> None:
        ImportJob.objects.filter(pk=job_id).update(processed=count)

    return checked


def _import_job_fail(job_id: int, message: str) -> ImportJob | None:
    ImportJob.objects.filter(pk=job_id).update(
        status=ImportJob.Status.FAILED, error=message[:5000], finished_at=timezone.now()
    )
    return ImportJob.objects.filter(pk=job_id).first()


@contextmanager
def _side_progress(job_id: int, *, every_seconds: float = WRITE_PROGRESS_SECONDS) -> Iterator[Progress]:
    """A progress callback that writes on its own autocommit connection, so the
    web process sees it while the import's transaction is still open."""
    if connections[DEFAULT_DB_ALIAS].vendor == "sqlite":
        yield lambda count: None
        return
    side = connections.create_connection(DEFAULT_DB_ALIAS)
    table = side.ops.quote_name(ImportJob._meta.db_table)
    last = 0.0

    def report(count: int) -> None:
        nonlocal last
        if time.monotonic() - last < every_seconds:
            return
        last = time.monotonic()
        with side.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET processed = %s WHERE id = %s", [count, job_id])

    try:
        yield report
    finally:
        side.close()
