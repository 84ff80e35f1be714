"""``manage.py simulate_annotators``: simulated annotators against a running server.

M threads log in and answer comparisons through the real pages (login form,
annotate page, htmx submit) while the Celery workers retrain, then report
throughput, submit latency, empty-queue sightings and the reward model's regret
against the annotators' hidden utilities. See the ``activelearn.simulation``
package for how the annotators work and ``models_runtime.simulate`` (the one
simulator) for the answer model and the regret definition. The run is recorded as an
``annotation.SimulationRun`` so the study dashboard can chart its regret.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.dateparse import parse_datetime

from activelearn.simulation import SimulationConfig, hidden_utilities, report_json, simulation_run
from activelearn.simulation.utilities import UTILITY_KINDS
from annotation.models import Membership, SimulationRun, Study

DEFAULT_PASSWORD = "simulate-annotators"


class Command(BaseCommand):
    help = (
        "Run simulated annotators (one thread each) against a running prefloop server over HTTP, "
        "answering with Bradley-Terry choices from hidden utilities, and report latency, "
        "empty-queue sightings and reward-model regret."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Base URL of the running server.")
        parser.add_argument("--study", default="demo", metavar="SLUG", help="Study slug (default: demo).")
        parser.add_argument("--annotators", "-m", type=int, default=4, help="Simulated annotators at once.")
        parser.add_argument("--judgments", "-t", type=int, default=100, help="Judgments in total, all annotators.")
        parser.add_argument(
            "--users",
            nargs="+",
            metavar="USER:PASSWORD",
            help="Existing accounts to use (one per annotator). Default: create or update sim1..simM "
            "with --password and an annotator membership in the study.",
        )
        parser.add_argument("--password", default=DEFAULT_PASSWORD, help="Password for the sim1..simM accounts.")
        parser.add_argument("--scale", type=float, default=2.0, help="Bradley-Terry scale on the utilities.")
        parser.add_argument("--flip", type=float, default=0.0, help="Probability an answer is flipped.")
        parser.add_argument(
            "--position-bias", type=float, default=0.0, help="Logit added in favour of the left response (A)."
        )
        parser.add_argument("--seed", type=int, default=0, help="Seed of the utilities and the answers.")
        parser.add_argument("--think-ms", type=float, default=20.0, help="Mean pause before each answer (ms).")
        parser.add_argument(
            "--utility",
            choices=UTILITY_KINDS,
            default="auto",
            help="Hidden utilities from candidate embeddings (auto falls back to hash-based ones).",
        )
        parser.add_argument(
            "--checkpoint-every", type=int, default=0, help="Regret checkpoint every k judgments (default T/10)."
        )
        parser.add_argument(
            "--final-wait",
            type=float,
            default=0.0,
            help="Seconds to wait after the run for the last retrain, then take a final checkpoint.",
        )
        parser.add_argument(
            "--max-starve", type=float, default=120.0, help="Give up after the queue stays empty this long (s)."
        )
        parser.add_argument("--report", type=Path, metavar="PATH", help="Write the JSON report here.")

    def handle(self, *args: Any, **options: Any) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study with slug {options['study']!r}.")
        m, total = options["annotators"], options["judgments"]
        if m < 1 or total < 1:
            raise CommandError("--annotators and --judgments must be at least 1.")
        if not 0.0 <= options["flip"] <= 1.0:
            raise CommandError("--flip must be between 0 and 1.")
        users = self._users(study, options)
        if len(users) < m:
            raise CommandError(f"--users names {len(users)} accounts for {m} annotators.")
        users = users[:m]

        utilities = hidden_utilities(study_id=study.id, seed=options["seed"], kind=options["utility"])
        if utilities.note:
            self.stderr.write(utilities.note)
        config = SimulationConfig(
            base_url=options["url"],
            slug=study.slug,
            judgments=total,
            scale=options["scale"],
            flip=options["flip"],
            position_bias=options["position_bias"],
            seed=options["seed"],
            think_ms=options["think_ms"],
            checkpoint_every=options["checkpoint_every"] or max(1, total // 10),
            max_starve_s=options["max_starve"],
            final_wait_s=options["final_wait"],
        )
        self.stdout.write(
            f"{m} simulated annotators, {total} judgments on '{study.slug}' at {config.base_url} "
            f"({utilities.kind} utilities over {len(utilities.candidate_ids)} candidates)."
        )
        report = simulation_run(config=config, users=users, study_id=study.id, utilities=utilities)
        self._print(report)
        run = self._record(study, report)
        self.stdout.write(f"Run recorded as simulation run {run.id}; the study dashboard charts its regret.")
        if options["report"]:
            options["report"].parent.mkdir(parents=True, exist_ok=True)
            options["report"].write_text(report_json(report) + "\n")
            self.stdout.write(f"Report written to {options['report']}.")
        if all(a["stopped"].startswith("failed") for a in report["annotators"]):
            raise CommandError("Every simulated annotator failed: " + report["annotators"][0]["stopped"])

    def _users(self, study: Study, options: dict[str, Any]) -> list[tuple[str, str]]:
        if options["users"]:
            pairs = []
            for entry in options["users"]:
                username, sep, password = entry.partition(":")
                if not sep or not username:
                    raise CommandError(f"--users entries are USER:PASSWORD, got {entry!r}.")
                pairs.append((username, password))
            return pairs
        return self._ensure_sim_users(study, options["annotators"], options["password"])

    @staticmethod
    @transaction.atomic
    def _ensure_sim_users(study: Study, count: int, password: str) -> list[tuple[str, str]]:
        # The command runs inside the deployment, so it may make its own accounts.
        manager = get_user_model()._default_manager
        pairs = []
        for k in range(1, count + 1):
            username = f"sim{k}"
            user, created = manager.get_or_create(username=username)
            if created or not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
            Membership.objects.get_or_create(user=user, study=study, defaults={"role": Membership.Role.ANNOTATOR})
            pairs.append((username, password))
        return pairs

    @staticmethod
    @transaction.atomic
    def _record(study: Study, report: dict[str, Any]) -> SimulationRun:
        # The figures as the simulator computed them: regret needs the hidden
        # utilities and loaded checkpoints, which the web process never has.
        totals = report["totals"]
        # NaN (a study without a prompt of two candidates) is not JSON that
        # PostgreSQL accepts; an unscored checkpoint is None, as elsewhere.
        checkpoints = [
            {**c, "regret": c["regret"] if c.get("regret") is not None and math.isfinite(c["regret"]) else None}
            for c in report["checkpoints"]
        ]
        return SimulationRun.objects.create(
            study=study,
            started_at=parse_datetime(report["started_at"]),
            wall_seconds=report["wall_seconds"],
            annotators=report["config"]["annotators"],
            judgments=totals["judgments_submitted"],
            utility_kind=report["utility"]["kind"],
            config=report["config"],
            totals=totals,
            checkpoints=checkpoints,
        )

    def _print(self, report: dict[str, Any]) -> None:
        out = self.stdout.write
        totals = report["totals"]
        out("")
        out(f"{'annotator':<12} {'judgments':>9} {'empty':>6} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8}  stopped")
        for row in report["annotators"]:
            lat = row["submit_latency_ms"]
            out(
                f"{row['username']:<12} {row['judgments']:>9} {row['empty_queue']:>6} "
                f"{row['errors'] + row['refused']:>6} {_ms(lat['p50']):>8} {_ms(lat['p95']):>8}  {row['stopped']}"
            )
        lat = totals["submit_latency_ms"]
        out(
            f"{'all':<12} {totals['judgments_submitted']:>9} {totals['empty_queue']:>6} "
            f"{totals['errors'] + totals['refused']:>6} {_ms(lat['p50']):>8} {_ms(lat['p95']):>8}"
        )
        out("")
        out(
            f"Judgments in the database: {totals['judgments_in_db']} on {totals['distinct_comparisons_in_db']} "
            f"comparisons; {totals['judgments_per_second']} judgments/s over {report['wall_seconds']} s; "
            f"answers agreeing with the hidden utility: {totals['agree_with_utility']}."
        )
        out(f"Queue found empty (budget left): {totals['empty_queue']} times ({totals['empty_wait_s']} s waiting).")
        out("")
        kind = report["utility"]["kind"]
        out(f"{'judgments':>9} {'elapsed s':>9} {'model':>6} {'fit on':>7} {'regret':>7}  ({kind} utilities)")
        for c in report["checkpoints"]:
            model = f"v{c['model_version']}" if c["model_version"] else "-"
            regret = "n/a" if c["regret"] is None else f"{c['regret']:.3f}"
            fit_on = c["model_n_judgments"] if c["model_n_judgments"] is not None else "-"
            label = "  final" if c.get("final") else ""
            out(f"{c['judgments']:>9} {c['elapsed_s']:>9} {model:>6} {fit_on!s:>7} {regret:>7}{label}")
        out("")
        published = ", ".join(
            f"v{v['version']} ({v['n_judgments']} judgments, acc {_fmt(v['heldout_accuracy'])})"
            for v in report["model_versions_published"]
        )
        out(f"Model versions published during the run: {published or 'none'}.")
        served = ", ".join(f"{k}: {v}" for k, v in report["served_by"].items())
        out(f"Answered comparisons by origin: {served or 'none'}.")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
