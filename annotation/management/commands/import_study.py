"""``manage.py import_study FILE``: load a file of prompts and candidates into a study.

It reads files the way the upload pages and the API do (one reader,
``annotation.imports.registry``): any import format, told by ``--format``, by
the file's name, or by its first record (HH-RLHF's chosen/rejected); text
files may be gzip, bzip2 or xz compressed (told by their first bytes). It is a
command-line tool, so it imports in this process with a progress line;
``--background`` hands the file to the worker as an import job instead.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.urls import reverse
from django.utils.text import slugify

from annotation import tasks
from annotation.imports import registry
from annotation.imports.jobs import import_job_create, import_job_record, import_upload_discard, import_upload_store
from annotation.imports.records import COMPRESSED_SUFFIXES, ImportFileError, SkippedRows, import_summary, plural
from annotation.imports.storable import printable, text_problem
from annotation.imports.writer import study_import_records
from annotation.models import ImportJob, Membership, Study
from annotation.services import study_create

# Skipped rows printed after an import that skips invalid rows (the job keeps them all).
SKIPPED_SHOWN = 5


class Command(BaseCommand):
    help = (
        "Import prompts and candidate responses from a file (JSONL, HH-RLHF JSONL, CSV, Parquet, or a "
        "zipped Hugging Face dataset; text files may be .gz, .bz2 or .xz compressed) into a study, "
        "creating the study if it does not exist. By default the file is checked completely first and, "
        "if any row is bad, nothing is written (not even the study); --skip-invalid imports the valid "
        "rows and reports the others. Re-importing the same file adds nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="The file to import.")
        parser.add_argument(
            "--study", metavar="SLUG", help="Slug of the study to import into (default: slugified --name)."
        )
        parser.add_argument("--name", help="Name for a new study (default: the file name without extension).")
        parser.add_argument(
            "--format",
            choices=[key for key, _ in registry.choices()],
            help="The file's format (default: told from its name and first record).",
        )
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Import the valid rows and report the invalid ones (line, field, error), instead of "
            "importing nothing when a row is bad. The report is kept on the study's import page.",
        )
        parser.add_argument(
            "--background",
            action="store_true",
            help="Queue the import for the worker (an import job with a progress page) instead of running it here.",
        )
        parser.add_argument(
            "--no-record-preference",
            action="store_true",
            help="For chosen/rejected data: do not mark each candidate's metadata with its side.",
        )
        parser.add_argument("--split", help="For a Hugging Face dataset with several splits, the one to import.")
        parser.add_argument("--researcher", metavar="USERNAME", help="Existing user to make a researcher of the study.")
        parser.add_argument(
            "--guidelines-file", type=Path, metavar="PATH", help="Markdown file to use as the study's guidelines."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        stem = path.name
        for suffix in COMPRESSED_SUFFIXES:
            stem = stem.removesuffix(suffix)
        name: str = options["name"] or Path(stem).stem
        if text_problem(name):  # a file name that is not UTF-8 arrives with lone surrogates
            raise CommandError(f"Cannot name a study {printable(name)!r}: it {text_problem(name)}; pass --name.")
        slug = slugify(options["study"] or name)
        if not slug:
            raise CommandError(f"Cannot make a study slug from {options['study'] or name!r}; pass --study.")
        if not path.is_file():
            raise CommandError(f"Cannot read {path}: no such file.")
        guidelines = self._read_text(options["guidelines_file"]) if options["guidelines_file"] is not None else None
        researcher = self._researcher(options["researcher"])
        try:
            spec = registry.get(options["format"] or registry.detect_path(path))
        except ImportFileError as exc:
            raise CommandError(f"{path}: {exc}") from None
        format_options: dict[str, Any] = {"record_preference": not options["no_record_preference"]}
        if options["split"]:
            format_options["split"] = options["split"]
        format_options = {key: value for key, value in format_options.items() if key in spec.options}
        skip_invalid: bool = options["skip_invalid"]

        def study_get_or_create() -> tuple[Study, bool]:
            study = Study.objects.filter(slug=slug).first()
            if study is None:
                return study_create(name=name, slug=slug, created_by=researcher, guidelines=guidelines or ""), True
            if guidelines is not None and study.guidelines != guidelines:
                study.guidelines = guidelines
                study.save(update_fields=["guidelines", "updated_at"])
            if researcher is not None:
                Membership.objects.update_or_create(
                    user=researcher, study=study, defaults={"role": Membership.Role.RESEARCHER}
                )
            return study, False

        if options["background"]:
            self._queue(path, spec, format_options, skip_invalid, researcher, study_get_or_create)
            return

        # Check everything before touching the database, so a bad file leaves no trace.
        skipped = SkippedRows() if skip_invalid else None
        total = spec.count_rows(path, options=format_options) if spec.prepare is None else None
        try:
            records = self._parse(path, spec, format_options, skipped, total)
        except ImportFileError as exc:
            self._progress_end()
            self._skipped_write(skipped)
            raise CommandError(f"{path}: nothing imported: {exc}") from None
        self._progress_end()

        try:
            with transaction.atomic():
                study, created = study_get_or_create()
                result = study_import_records(
                    study=study, records=records, rows_skipped=skipped.count if skipped is not None else 0
                )
                job = None
                if skipped is not None:
                    job = import_job_record(
                        study=study,
                        format=spec.key,
                        original_name=path.name,
                        options=format_options,
                        created_by=researcher,
                        result=result,
                        skipped=skipped,
                    )
        except ImportFileError as exc:  # a record the database cannot store (the writer checks)
            raise CommandError(f"{path}: nothing imported: {exc}") from None

        self.stdout.write(
            self.style.SUCCESS(
                f"{import_summary(asdict(result))} Into {'new ' if created else ''}study '{study.name}' ({study.slug})."
            )
        )
        self._skipped_write(skipped)
        if job is not None and job.skipped_count:
            self.stdout.write(
                f"The skipped rows are kept on the import's page: "
                f"{reverse('import_job_detail', args=[study.slug, job.pk])} "
                f"(download: {reverse('import_job_skipped', args=[study.slug, job.pk])})."
            )

    def _parse(self, path: Path, spec: registry.ImportFormat, format_options: dict, skipped, total: int | None):
        def progress(count: int) -> None:
            of = f" of {total}" if total else ""
            end = "\r" if sys.stderr.isatty() else "\n"
            self.stderr.write(f"Checked {count}{of} rows", ending=end)
            self._progress_shown = True

        if spec.prepare is None:
            return spec.parse_stored(path, options=format_options, on_progress=progress, skipped=skipped)
        # A zipped dataset is unpacked beside the archive: do that in a scratch folder.
        with tempfile.TemporaryDirectory(prefix="prefloop-import-") as scratch:
            copy = Path(scratch) / path.name
            shutil.copyfile(path, copy)
            return spec.parse_stored(spec.prepare(copy), options=format_options, on_progress=progress, skipped=skipped)

    _progress_shown = False

    def _progress_end(self) -> None:
        if self._progress_shown and sys.stderr.isatty():
            self.stderr.write("")

    def _skipped_write(self, skipped: SkippedRows | None) -> None:
        if skipped is None or not skipped.count:
            return
        self.stdout.write(self.style.WARNING(f"Skipped {plural(skipped.count, 'invalid row')}:"))
        for row in skipped.rows[:SKIPPED_SHOWN]:
            parts = (f"line {row.line}" if row.line else "", f'field "{row.field}"' if row.field else "")
            where = ", ".join(part for part in parts if part)
            self.stdout.write(f"  {where}: {row.message}")
        if skipped.count > SKIPPED_SHOWN:
            self.stdout.write(f"  … and {skipped.count - SKIPPED_SHOWN} more.")

    def _queue(self, path, spec, format_options, skip_invalid, researcher, study_get_or_create) -> None:
        with path.open("rb") as handle:
            stored = import_upload_store(upload=File(handle, name=path.name))
        try:
            with transaction.atomic():
                study, created = study_get_or_create()
                job = import_job_create(
                    study=study,
                    stored=stored,
                    format=spec.key,
                    options=format_options,
                    created_by=researcher,
                    skip_invalid=skip_invalid,
                )
                job_id = job.pk
                transaction.on_commit(lambda: tasks.import_job_run.delay(job_id))
        except Exception:
            import_upload_discard(stored=stored)
            raise
        job = ImportJob.objects.get(pk=job_id)
        self.stdout.write(
            self.style.SUCCESS(
                f"Queued import job {job.pk} ({job.status}) of {path.name} into {'new ' if created else ''}study "
                f"'{study.name}' ({study.slug}); the worker runs it. Its progress: "
                f"{reverse('import_job_detail', args=[study.slug, job.pk])}"
            )
        )

    def _researcher(self, username: str | None):
        if not username:
            return None
        user_model = get_user_model()
        try:
            return user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None

    def _read_text(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{path} is not UTF-8 text.") from None
