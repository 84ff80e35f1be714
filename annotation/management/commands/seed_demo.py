"""``manage.py seed_demo``: demo users and a ready-to-annotate demo study."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotation import loop
from annotation.imports.jsonl import parse_jsonl
from annotation.imports.records import ImportResult
from annotation.imports.writer import study_import_records
from annotation.models import Membership, Study
from annotation.services import study_create

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo" / "demo_study.jsonl"
DEMO_SLUG = "demo"
DEMO_NAME = "Demo: which answer is more helpful?"
DEMO_FEEDBACK_TAGS = ["factual error", "unsafe", "off topic", "too long"]
DEMO_BUDGET = 300
DEMO_GUIDELINES = """\
You will see a prompt and two responses, **A** and **B**. Choose the one that would help \
the person who asked more.

- **Correctness first.** A confident but wrong answer is worse than a modest correct one. \
Check code, numbers and facts where you can.
- **Helpfulness.** Does it answer the question that was actually asked, at a sensible level \
of detail? Longer is not automatically better.
- **Clarity.** Prefer the response that is easier to read and act on.
- **Ties are fine** when both are equally good or equally bad; don't agonise over close calls.
- **Keyboard:** press `1` for A, `2` for B, `3` for a tie.
"""

# (username, password, role in the demo study, is_staff, is_superuser). The
# researcher is not staff: access to a study follows membership, and staff is
# only for Django's admin. These passwords are published (README), so a server
# with DEBUG off gets random ones instead (``--random-passwords``).
DEMO_USERS = (
    ("annotator", "annotate-demo", Membership.Role.ANNOTATOR, False, False),
    ("annotator2", "annotate-demo", Membership.Role.ANNOTATOR, False, False),
    ("researcher", "research-demo", Membership.Role.RESEARCHER, False, False),
    ("admin", "admin-demo", None, True, True),
)


class Command(BaseCommand):
    help = (
        "Create demo users (annotator, annotator2, researcher, admin) and the demo study "
        f"'{DEMO_SLUG}' with ~30 prompts. Safe to run again; existing users keep their passwords."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Delete the demo study (with all its judgments and models) and create it again.",
        )
        parser.add_argument(
            "--random-passwords",
            action="store_true",
            help=(
                "Give new demo users random passwords (printed once) instead of the published ones. "
                "Required when DEBUG is off."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with DEMO_FILE.open("rb") as fileobj:
            records = parse_jsonl(fileobj)
        passwords = self._passwords(random_passwords=options["random_passwords"])

        with transaction.atomic():
            existed = set(
                get_user_model()._default_manager.filter(username__in=passwords).values_list("username", flat=True)
            )
            users = {
                username: self._ensure_user(username, passwords[username], staff, superuser)
                for username, _, _, staff, superuser in DEMO_USERS
            }
            if options["reset"]:
                deleted, _ = Study.objects.filter(slug=DEMO_SLUG).delete()
                if deleted:
                    self.stdout.write(f"Deleted the existing '{DEMO_SLUG}' study.")
            study = Study.objects.filter(slug=DEMO_SLUG).first()
            if study is None:
                study = study_create(
                    name=DEMO_NAME,
                    slug=DEMO_SLUG,
                    created_by=users["researcher"],
                    guidelines=DEMO_GUIDELINES,
                    budget=DEMO_BUDGET,
                    # Richer feedback on, to show it (optional for annotators: F opens it).
                    feedback_tags=DEMO_FEEDBACK_TAGS,
                    tag_spans=True,
                    allow_rewrite=True,
                )
                self.stdout.write(f"Created study '{study.name}' ({study.slug}).")
            for username, _, role, _, _ in DEMO_USERS:
                if role is not None:
                    Membership.objects.get_or_create(user=users[username], study=study, defaults={"role": role})
            result = study_import_records(study=study, records=records)
        self._report_import(result)
        self._fill_queue(study)
        self._print_logins(study, {name: p for name, p in passwords.items() if name not in existed})

    @staticmethod
    def _passwords(*, random_passwords: bool) -> dict[str, str]:
        """The password each demo user gets if it has to be created.

        With DEBUG off (a real server) the published passwords would open the
        demo's superuser account to anyone who read the README, so the command
        refuses unless asked for random ones; users that already exist keep
        whatever password they have.
        """
        if random_passwords:
            return {username: secrets.token_urlsafe(12) for username, *_ in DEMO_USERS}
        missing = [
            username
            for username, *_ in DEMO_USERS
            if not get_user_model()._default_manager.filter(username=username).exists()
        ]
        if missing and not settings.DEBUG:
            raise CommandError(
                "DEBUG is off, and seed_demo would create "
                f"{', '.join(missing)} with the passwords published in the README. "
                "Run it again with --random-passwords (they are printed once), or with DEBUG=true on a "
                "machine of your own."
            )
        return {username: password for username, password, *_ in DEMO_USERS}

    def _ensure_user(self, username: str, password: str, is_staff: bool, is_superuser: bool) -> Any:
        user_model = get_user_model()
        user = user_model._default_manager.filter(username=username).first()
        if user is not None:
            return user
        manager = user_model._default_manager
        if is_superuser:
            user = manager.create_superuser(username=username, email="", password=password)
        else:
            user = manager.create_user(username=username, password=password, is_staff=is_staff)
        self.stdout.write(f"Created user '{username}'.")
        return user

    def _report_import(self, result: ImportResult) -> None:
        self.stdout.write(
            f"Demo prompts: {result.prompts_created} created, {result.prompts_existing} already there; "
            f"candidates: {result.candidates_created} created, {result.duplicates_skipped} already there."
        )

    def _fill_queue(self, study: Study) -> None:
        # The loop's own refill (random pairs before the first model; the
        # import asked the worker's embed queue to embed the candidates).
        created = loop.get().refill_now(study_id=study.pk, use_model=True)
        self.stdout.write(f"Queued {created} new comparisons.")

    def _print_logins(self, study: Study, created: dict[str, str]) -> None:
        """The demo logins; ``created`` maps the users made by this run to their
        passwords (the others keep the password they already had)."""
        lines = [
            "",
            "Demo logins",
            "-----------",
            *(
                f"  {username:<11} / {created.get(username, '(unchanged)'):<16} "
                f"({self._describe(role, staff, superuser)})"
                for username, _, role, staff, superuser in DEMO_USERS
            ),
            "",
            f"Demo study: '{study.name}' (slug: {study.slug})",
            "Existing users keep the password they already had.",
        ]
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))

    @staticmethod
    def _describe(role: str | None, is_staff: bool, is_superuser: bool) -> str:
        if is_superuser:
            return "superuser, Django admin"
        if is_staff:
            return f"{role} of the demo study, can open Django admin"
        return f"{role} of the demo study"
