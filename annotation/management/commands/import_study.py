"""``manage.py import_study FILE``: load a JSONL file of prompts and candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.text import slugify

from annotation.imports.jsonl import parse_jsonl
from annotation.imports.records import ImportFileError
from annotation.imports.writer import study_import_records
from annotation.models import Membership, Study
from annotation.services import study_create


class Command(BaseCommand):
    help = (
        "Import prompts and candidate responses from a JSONL file into a study, creating the study "
        "if it does not exist. The file is checked completely first; if any line is bad, nothing is "
        "written (not even the study). Re-importing the same file adds nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="JSONL file, one prompt with its candidates per line.")
        parser.add_argument(
            "--study", metavar="SLUG", help="Slug of the study to import into (default: slugified --name)."
        )
        parser.add_argument("--name", help="Name for a new study (default: the file name without extension).")
        parser.add_argument("--researcher", metavar="USERNAME", help="Existing user to make a researcher of the study.")
        parser.add_argument(
            "--guidelines-file", type=Path, metavar="PATH", help="Markdown file to use as the study's guidelines."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        name: str = options["name"] or path.stem
        slug = slugify(options["study"] or name)
        if not slug:
            raise CommandError(f"Cannot make a study slug from {options['study'] or name!r}; pass --study.")

        guidelines = None
        if options["guidelines_file"] is not None:
            guidelines = self._read_text(options["guidelines_file"])
        researcher = None
        if options["researcher"]:
            user_model = get_user_model()
            try:
                researcher = user_model._default_manager.get_by_natural_key(options["researcher"])
            except user_model.DoesNotExist:
                raise CommandError(f"No user named {options['researcher']!r}.") from None

        # Parse everything before touching the database, so a bad file leaves no trace.
        try:
            with path.open("rb") as fileobj:
                records = parse_jsonl(fileobj)
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}") from None
        except ImportFileError as exc:
            raise CommandError(f"{path}: {exc}") from None

        with transaction.atomic():
            study = Study.objects.filter(slug=slug).first()
            created = study is None
            if study is None:
                study = study_create(name=name, slug=slug, created_by=researcher, guidelines=guidelines or "")
            else:
                if guidelines is not None and study.guidelines != guidelines:
                    study.guidelines = guidelines
                    study.save(update_fields=["guidelines", "updated_at"])
                if researcher is not None:
                    Membership.objects.update_or_create(
                        user=researcher, study=study, defaults={"role": Membership.Role.RESEARCHER}
                    )
            result = study_import_records(study=study, records=records)

        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {result.prompts_created} prompts ({result.prompts_existing} existing), "
                f"{result.candidates_created} candidates, {result.duplicates_skipped} duplicates skipped "
                f"into {'new ' if created else ''}study '{study.name}' ({study.slug})."
            )
        )

    def _read_text(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{path} is not UTF-8 text.") from None
