"""Import jobs: an upload stored for the worker and imported there, with progress.

``import_upload_store`` saves the upload in the ``imports`` storage as
``imports/<random>/<name>`` (a folder under ``MEDIA_ROOT`` by default; with
``PREFLOOP_STORAGE=s3`` a key in the object store, so the worker that imports
it may run on another host) and ``import_job_create`` records the job;
``annotation.imports.upload`` decides when to make one and enqueues the task
(``annotation.tasks.import_job_run``), which calls ``import_job_run``. The
worker reads the upload from a private work folder of its own host
(``<PREFLOOP_VAR_DIR>/import-work/``), removed once the file is parsed. The web
process only polls the ``ImportJob`` row (its page, and the API).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import posixpath
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages
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
# The storage alias uploads are saved in (webapp/settings.py defines it), and
# the first part of every upload's name there.
STORAGE_ALIAS = "imports"
UPLOADS = "imports"
# The folder under PREFLOOP_VAR_DIR where the worker reads uploads.
WORK_FOLDER = "import-work"
# A job whose upload is gone (or whose path names no stored upload).
GONE = "the uploaded file is no longer stored; upload it again."


def import_storage() -> Storage:
    """The storage uploads wait in: ``STORAGES["imports"]``, which the settings
    define (MEDIA_ROOT, or the object store of ``PREFLOOP_STORAGE=s3``); MEDIA_ROOT
    where a deployment's own ``STORAGES`` leaves it out."""
    if STORAGE_ALIAS in settings.STORAGES:
        return storages[STORAGE_ALIAS]
    return FileSystemStorage()


def import_upload_store(*, upload: Any) -> Path:
    """Save an upload (a Django ``File``, or a binary file with a ``name``) in the
    ``imports`` storage as ``imports/<random>/<name>`` and return that name, which
    ``ImportJob.file_path`` keeps. The storage reads it chunk by chunk (the S3
    back end uploads it in parts), never whole."""
    name = Path(str(getattr(upload, "name", "") or "upload").replace("\\", "/")).name[-120:]
    safe_name = "upload" if name in ("", ".", "..") else name
    content = upload if hasattr(upload, "chunks") else File(upload, name=safe_name)
    saved = import_storage().save(f"{UPLOADS}/{uuid.uuid4().hex}/{safe_name}", content)
    return Path(saved)


def import_upload_discard(*, stored: Path | str) -> None:
    """Remove a stored upload (and anything left beside it): its folder
    ``imports/<random>/``, and nothing else whatever ``stored`` says. A storage
    that fails here is logged, not raised: ``import_uploads_prune`` removes the
    upload later, and the caller's own outcome (or error) stands."""
    name = _upload_name(stored)
    if name is None:
        return
    try:
        _folder_delete(import_storage(), posixpath.dirname(name))
    except Exception:
        logger.warning("the stored upload %s could not be removed; pruning will", name, exc_info=True)


def import_uploads_prune(*, older_than: timedelta = STALE_AFTER) -> int:
    """Remove stored uploads that no queued or running job needs: those left
    behind by jobs that failed before failed jobs removed their own, by a
    worker that died, or by an upload whose job was never recorded. Only
    uploads untouched for ``older_than`` go, so one being stored right now (its
    job not yet written) is safe. Works through the storage, one stored file at
    a time (an object store has no folders: an upload's "folder" is the prefix
    ``imports/<random>/`` of its key, as old as its newest file). Also removes
    this host's work folders that dead workers left. Returns how many uploads
    were removed; run after every job and by ``manage.py prune_imports``."""
    _work_folders_prune(older_than=older_than)
    store = import_storage()
    try:
        folders, _ = store.listdir(UPLOADS)
    except FileNotFoundError:  # MEDIA_ROOT/imports/ not made yet
        return 0
    active = ImportJob.objects.filter(status__in=(ImportJob.Status.QUEUED, ImportJob.Status.RUNNING))
    needed = {
        PurePosixPath(name).parts[1]
        for name in map(_upload_name, active.values_list("file_path", flat=True))
        if name is not None
    }
    cutoff = (timezone.now() - older_than).timestamp()
    removed = 0
    for folder in folders:
        if folder in needed or folder in ("", ".", ".."):
            continue
        prefix = f"{UPLOADS}/{folder}"
        try:
            if _last_touched(store, prefix) >= cutoff:
                continue
            _folder_delete(store, prefix)
        except FileNotFoundError:
            continue  # vanishing under us: someone else is at it
        removed += 1
    return removed


def _upload_name(stored: Path | str) -> str | None:
    """``stored`` as the name of a stored upload, ``imports/<random>/<name>``;
    None for anything else (an absolute path, a ``..``): a job's path is data
    and must not become a way to read or delete other files."""
    parts = PurePosixPath(str(stored)).parts
    if len(parts) != 3 or parts[0] != UPLOADS or any(part in (".", "..") for part in parts):
        return None
    return "/".join(parts)


def _local_path(store: Storage, name: str) -> Path | None:
    """Where ``name`` lies on this host's disk; None for a remote storage."""
    try:
        return Path(store.path(name))
    except NotImplementedError:
        return None


def _files_under(store: Storage, folder: str) -> Iterator[str]:
    """The names of the files under ``folder``, its subfolders' included."""
    folders, files = store.listdir(folder)
    for sub in folders:
        yield from _files_under(store, f"{folder}/{sub}")
    for name in files:
        yield f"{folder}/{name}"


def _last_touched(store: Storage, folder: str) -> float:
    """When anything under ``folder`` last changed (its newest modification
    time); a local folder's own time counts too, so one just made for an
    upload being written is not yet stale."""
    times = [store.get_modified_time(name).timestamp() for name in _files_under(store, folder)]
    local = _local_path(store, folder)
    if local is not None:
        times.append(local.stat().st_mtime)
    return max(times, default=-math.inf)


def _folder_delete(store: Storage, folder: str) -> None:
    """Delete every file under ``folder``; on a local disk, the emptied folders
    too (an object store has none)."""
    try:
        names = list(_files_under(store, folder))
    except FileNotFoundError:
        return
    for name in names:
        store.delete(name)
    local = _local_path(store, folder)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)


@contextmanager
def _upload_fetched(job: ImportJob) -> Iterator[Path]:
    """The job's upload as a file in a private work folder of this host,
    ``<PREFLOOP_VAR_DIR>/import-work/<job id>-<random>/<name>``, removed
    afterwards whatever happens. From an object store it is downloaded; from
    a local storage it is linked, not copied. What ``prepare`` unpacks lands
    beside it, in that folder. A missing upload is an ``ImportFileError``."""
    name = _upload_name(job.file_path)
    if name is None:
        raise ImportFileError(GONE)
    root = Path(settings.PREFLOOP_VAR_DIR) / WORK_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{job.pk}-", dir=root))
    try:
        target = work / PurePosixPath(name).name
        try:
            _fetch(import_storage(), name, target)
        except FileNotFoundError:
            raise ImportFileError(GONE) from None
        yield target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fetch(store: Storage, name: str, target: Path) -> None:
    local = _local_path(store, name)
    if local is not None:
        if not local.is_file():
            raise FileNotFoundError(name)
        target.symlink_to(local)
        return
    with store.open(name, "rb") as source, target.open("wb") as out:
        s3_object = getattr(source, "obj", None)
        if hasattr(s3_object, "download_fileobj"):
            # django-storages' S3 file: straight to disk (reading it would first
            # download the whole object into a temporary file of its own).
            s3_object.download_fileobj(out, Config=getattr(store, "transfer_config", None))
        else:
            shutil.copyfileobj(source, out, length=1 << 20)


def _work_folders_prune(*, older_than: timedelta) -> None:
    """Remove work folders of this host that a killed worker left behind: not
    its running jobs' ones, nor any touched within ``STALE_AFTER`` (a job
    running longer may be claimed again anyway)."""
    root = Path(settings.PREFLOOP_VAR_DIR) / WORK_FOLDER
    if not root.is_dir():
        return
    running = {str(pk) for pk in ImportJob.objects.filter(status=ImportJob.Status.RUNNING).values_list("pk", flat=True)}
    cutoff = (timezone.now() - max(older_than, STALE_AFTER)).timestamp()
    for folder in root.iterdir():
        try:
            stale = folder.lstat().st_mtime < cutoff
        except OSError:
            continue
        if stale and folder.name.split("-", 1)[0] not in running:
            shutil.rmtree(folder, ignore_errors=True)


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
    error, with its line or row and field; its upload is removed whether the
    job succeeds or fails, since nothing reads it again: a failed import is
    uploaded anew. The file is read from a work folder of this host
    (``_upload_fetched``), so the worker needs no folder shared with the web
    host that stored it when the storage is an object store. A job that skips invalid rows
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
        with _upload_fetched(job) as path:
            if spec.prepare is not None:
                path = spec.prepare(path)
            ImportJob.objects.filter(pk=job_id).update(total=spec.count_rows(path, options=job.options))
            records = spec.parse_stored(
                path, options=job.options, on_progress=_checking_progress(job_id), skipped=skipped
            )
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
    # The upload is no longer needed once imported.
    _uploads_tidy(job)
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
    _uploads_tidy(job)
    return ImportJob.objects.filter(pk=job.pk).first()


def _uploads_tidy(job: ImportJob) -> None:
    """Remove a finished job's upload, and what older jobs left (``import_uploads_prune``).
    The job's outcome is written already: a storage that fails now is logged, not
    raised, and the next prune tries again."""
    import_upload_discard(stored=job.file_path)
    try:
        import_uploads_prune()
    except Exception:
        logger.warning("pruning stored uploads after import job %s failed", job.pk, exc_info=True)


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
