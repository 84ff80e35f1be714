"""Import jobs: an upload stored on disk and imported by the worker, with progress.

``import_upload_store`` keeps the upload under ``MEDIA_ROOT/imports/`` and
``import_job_create`` records the job; ``annotation.imports.upload`` decides
when to make one and enqueues the task (``annotation.tasks.import_job_run``),
which calls ``import_job_run``. The web process only polls the ``ImportJob``
row (its page, and the API).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
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
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.exports.writers import formula_escaped
from annotation.imports import registry
from annotation.imports.records import ImportFileError, ImportResult, Options, Progress, SkippedRows
from annotation.imports.storable import printable
from annotation.imports.writer import study_import_records
from annotation.models import ImportJob, Study

logger = logging.getLogger(__name__)

# A job left running this long by a dead worker may be claimed again.
STALE_AFTER = timedelta(hours=1)
# The longest failure message a job keeps.
ERROR_MAX = 5000
# A job's failure when its own message could not be stored.
FAILED_UNREADABLE = "Nothing imported: the import failed and its message could not be stored; see the worker log."
# How often progress is written while records are written (on the side connection).
WRITE_PROGRESS_SECONDS = 0.5
# How often rows checked are written to the job while its file is checked: a
# few KB of gzip can hold millions of lines, and a write per thousand of them
# took minutes on SQLite.
CHECK_PROGRESS_SECONDS = 0.5


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
    """Remove a stored upload (and anything unpacked beside it): its folder
    ``imports/<random>/``, and nothing else whatever ``stored`` says."""
    if len(stored.parts) != 3 or stored.parts[0] != "imports" or ".." in stored.parts:
        return
    shutil.rmtree((Path(settings.MEDIA_ROOT) / stored).parent, ignore_errors=True)


def import_uploads_prune(*, older_than: timedelta = STALE_AFTER) -> int:
    """Remove stored uploads that no queued or running job needs: those left
    behind by jobs that failed before failed jobs removed their own, by a
    worker that died, or by an upload whose job was never recorded. Only
    folders untouched for ``older_than`` go, so an upload being stored right
    now (its job not yet written) is safe. Returns how many were removed;
    run after every job and by ``manage.py prune_imports``."""
    root = Path(settings.MEDIA_ROOT) / "imports"
    if not root.is_dir():
        return 0
    active = ImportJob.objects.filter(status__in=(ImportJob.Status.QUEUED, ImportJob.Status.RUNNING))
    needed = {Path(path).parts[1] for path in active.values_list("file_path", flat=True) if len(Path(path).parts) == 3}
    cutoff = (timezone.now() - older_than).timestamp()
    removed = 0
    for folder in root.iterdir():
        if folder.is_dir() and folder.name not in needed and _last_touched(folder) < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _last_touched(folder: Path) -> float:
    """When anything in ``folder`` last changed (its newest modification time)."""
    try:
        return max([folder.stat().st_mtime, *(path.stat().st_mtime for path in folder.rglob("*"))])
    except OSError:
        return float("inf")  # vanishing under us: someone else is at it


def import_job_create(
    *,
    study: Study,
    stored: Path,
    format: str,
    options: Options,
    created_by: AbstractBaseUser | None,
    skip_invalid: bool = False,
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
        original_name=printable(stored.name, limit=255),
        options=dict(options),
        skip_invalid=skip_invalid,
    )


def import_job_record(
    *,
    study: Study,
    format: str,
    original_name: str,
    options: Options,
    created_by: AbstractBaseUser | None,
    result: ImportResult,
    skipped: SkippedRows,
) -> ImportJob:
    """Record an import done in the request or by the CLI that skipped invalid
    rows, as a finished job: its page and the API then show the skipped rows
    and offer them for download, as for a background import."""
    now = timezone.now()
    return ImportJob.objects.create(
        study=study,
        created_by=created_by,
        format=registry.get(format).key,
        original_name=printable(Path(original_name).name[-255:], limit=255),
        options=dict(options),
        skip_invalid=True,
        status=ImportJob.Status.DONE,
        stage=ImportJob.Stage.WRITING,
        processed=result.prompts_created + result.prompts_existing,
        result=asdict(result),
        skipped_count=skipped.count,
        skipped_rows=skipped.as_json(),
        started_at=now,
        finished_at=now,
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
    error, with its line or row and field; its upload (and anything unpacked
    from it) is removed whether the job succeeds or fails, since nothing reads
    it again: a failed import is uploaded anew. A job that skips invalid rows
    writes the valid ones (still in one transaction) and keeps the skipped
    ones, with line, field, error and raw row.
    """
    now = timezone.now()
    claimable = Q(status=ImportJob.Status.QUEUED) | Q(status=ImportJob.Status.RUNNING, started_at__lt=now - STALE_AFTER)
    claimed = ImportJob.objects.filter(claimable, pk=job_id).update(
        status=ImportJob.Status.RUNNING, stage=ImportJob.Stage.CHECKING, processed=0, started_at=now, error=""
    )
    job = ImportJob.objects.select_related("study").filter(pk=job_id).first()
    if not claimed or job is None:
        return job
    skipped = SkippedRows() if job.skip_invalid else None
    try:
        spec = registry.get(job.format)
        path = Path(settings.MEDIA_ROOT) / job.file_path
        if spec.prepare is not None:
            path = spec.prepare(path)
        ImportJob.objects.filter(pk=job_id).update(total=spec.count_rows(path, options=job.options))
        records = spec.parse_stored(path, options=job.options, on_progress=_checking_progress(job_id), skipped=skipped)
        ImportJob.objects.filter(pk=job_id).update(stage=ImportJob.Stage.WRITING, processed=0, total=len(records))
        # The rows and the job's "done" commit together: the job never says
        # running over committed rows (and what the writer starts on commit,
        # such as embedding, runs after both).
        with _side_progress(job_id) as written, transaction.atomic():
            result = study_import_records(
                study=job.study,
                records=records,
                on_progress=written,
                rows_skipped=skipped.count if skipped is not None else 0,
            )
            ImportJob.objects.filter(pk=job_id).update(
                status=ImportJob.Status.DONE,
                processed=len(records),
                result=asdict(result),
                skipped_count=skipped.count if skipped is not None else 0,
                skipped_rows=skipped.as_json() if skipped is not None else [],
                finished_at=timezone.now(),
            )
    except ImportFileError as exc:
        if skipped is not None and skipped.count:
            # Every row was invalid: the report says why, row by row.
            ImportJob.objects.filter(pk=job_id).update(skipped_count=skipped.count, skipped_rows=skipped.as_json())
        return _import_job_fail(job, f"Nothing imported: {exc}")
    except IntegrityError:
        logger.warning("import job %s collided with another import", job_id, exc_info=True)
        return _import_job_fail(
            job, "Nothing imported: another import wrote the same prompts at the same time; upload it again."
        )
    except Exception:
        logger.exception("import job %s failed", job_id)
        _import_job_fail(job, "Nothing imported: the import failed unexpectedly; the error is in the worker log.")
        raise
    # The upload (and an unpacked dataset) is no longer needed once imported.
    import_upload_discard(stored=Path(job.file_path))
    import_uploads_prune()
    return ImportJob.objects.get(pk=job_id)


SKIPPED_COLUMNS = ("line", "field", "error", "raw")


def import_job_skipped_report(*, job: ImportJob, kind: str) -> str:
    """The rows an import skipped, as JSONL (one ``{"line", "field", "error",
    "raw"}`` per line) or CSV with those columns; ``raw`` is the row as it
    was in the file (a table row as JSON). The CSV quotes text a spreadsheet
    would run as a formula (``formula_escaped``, as the CSV exports do): the
    raw row, the field and the error all quote the uploaded file."""
    rows = job.skipped_rows or []
    if kind == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=SKIPPED_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(
            {key: formula_escaped(value) if isinstance(value, str) else value for key, value in row.items()}
            for row in rows
        )
        return out.getvalue()
    return "".join(json.dumps({k: row.get(k) for k in SKIPPED_COLUMNS}, ensure_ascii=False) + "\n" for row in rows)


def _checking_progress(job_id: int) -> Progress:
    """Rows checked so far, written to the job row (no transaction is open
    yet) at most every ``CHECK_PROGRESS_SECONDS``."""
    every = CHECK_PROGRESS_SECONDS
    last = -math.inf

    def checked(count: int) -> None:
        nonlocal last
        if time.monotonic() - last < every:
            return
        last = time.monotonic()
        ImportJob.objects.filter(pk=job_id).update(processed=count)

    return checked


def _import_job_fail(job: ImportJob, message: str) -> ImportJob | None:
    """Mark the job failed with ``message`` and remove its upload.

    The message is made ``printable`` (a NUL or lone surrogate quoted from
    the file would make the update fail on PostgreSQL, and the job would
    stay running, its progress page polling for ever) and cut to the
    column's 5,000 characters; should the update fail all the same, the job
    fails with a fixed message."""
    fields = {"status": ImportJob.Status.FAILED, "finished_at": timezone.now()}
    try:
        with transaction.atomic():  # a savepoint, so the fallback can still write
            ImportJob.objects.filter(pk=job.pk).update(**fields, error=printable(message, limit=ERROR_MAX))
    except DatabaseError:
        logger.exception("import job %s: its failure could not be recorded as it was", job.pk)
        ImportJob.objects.filter(pk=job.pk).update(**fields, error=FAILED_UNREADABLE)
    import_upload_discard(stored=Path(job.file_path))
    import_uploads_prune()
    return ImportJob.objects.filter(pk=job.pk).first()


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
