"""``manage.py prune_imports``: remove stored uploads that no import job needs
(through the ``imports`` storage: MEDIA_ROOT, or the object store).

Import jobs remove their upload when they finish, failed or not, and prune
what older ones left; this command does the same at once (after an upgrade
from a version whose failed jobs kept their files, or to free space now).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from annotation.imports.jobs import STALE_AFTER, import_uploads_prune


class Command(BaseCommand):
    help = (
        "Remove stored uploads (imports/ in the imports storage: MEDIA_ROOT, or the object store with "
        "PREFLOOP_STORAGE=s3) that no queued or running import job needs (left by failed jobs of earlier "
        "versions, dead workers, or uploads whose job was never recorded), and this host's import work "
        "folders that killed workers left."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than-minutes",
            type=int,
            default=int(STALE_AFTER.total_seconds() // 60),
            help="Keep uploads changed more recently than this (default: %(default)s), so an upload being "
            "stored now is safe.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        removed = import_uploads_prune(older_than=timedelta(minutes=max(0, options["older_than_minutes"])))
        self.stdout.write(self.style.SUCCESS(f"Removed {removed} stored upload{'' if removed == 1 else 's'}."))
