"""What a researcher watches live on the study page, in a fixed number of queries."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Avg, Count, Max, Q, Window
from django.utils import timezone
from django.utils.safestring import SafeString

from annotation.dashboard import analytics, charts
from annotation.models import (
    EVALUATION_MIN_JUDGMENTS,
    Assignment,
    Candidate,
    Comparison,
    Judgment,
    Membership,
    RewardModelVersion,
    Study,
)
from annotation.services.answers import FAST_ANSWER_MS
from models_runtime.kinds import CALIBRATED_METHODS

# Versions per page of the study page's version table (newest first).
MODEL_VERSIONS_SHOWN = 10


@dataclass(frozen=True)
class ModelVersionRow:
    """One reward-model version as the study page shows it. The ``heldout_*``
    figures are on the study's fixed evaluation judgments, which no version ever
    trained on; they are None until ``EVALUATION_MIN_JUDGMENTS`` were scored."""

    version: int
    model_type: str
    n_judgments: int
    n_train: int
    n_heldout: int
    heldout_accuracy: float | None
    heldout_accuracy_low: float | None
    heldout_accuracy_high: float | None
    heldout_log_loss: float | None
    heldout_log_loss_low: float | None
    heldout_log_loss_high: float | None
    fixed_evaluation: bool
    train_seconds: float
    device: str
    created_at: datetime
    pruned_at: datetime | None
    metrics: dict

    @property
    def heldout_ece(self) -> float | None:
        value = self.metrics.get("heldout_ece")
        return float(value) if value is not None else None

    @property
    def heldout_missing(self) -> str:
        """Why there is no held-out figure ("" when there is one)."""
        if self.heldout_accuracy is not None:
            return ""
        if not self.fixed_evaluation:
            return "fitted before the study had a fixed evaluation set"
        if self.n_heldout < EVALUATION_MIN_JUDGMENTS:
            return f"needs {EVALUATION_MIN_JUDGMENTS} evaluation judgments, has {self.n_heldout}"
        # Enough judgments, but none could be scored (ties and "both bad" name no winner).
        return f"none of its {self.n_heldout} evaluation judgments names a winner"

    @property
    def heldout_accuracy_text(self) -> str:
        """ "61% (95% CI 52–69%, n = 120 evaluation judgments never trained on)", or
        "—" with the reason."""
        if self.heldout_accuracy is None:
            return f"— ({self.heldout_missing})"
        return (
            f"{self.heldout_accuracy:.0%} (95% CI {self.heldout_accuracy_low:.0%}–{self.heldout_accuracy_high:.0%}, "
            f"n = {self.n_heldout} evaluation judgments never trained on)"
        )

    @property
    def heldout_log_loss_text(self) -> str:
        """ "0.652 (95% CI 0.611–0.693, …)", or "—" with the reason."""
        if self.heldout_log_loss is None:
            return f"— ({self.heldout_missing})"
        low, high = self.heldout_log_loss_low, self.heldout_log_loss_high
        interval = f"95% CI {low:.3f}–{high:.3f}, " if low is not None and high is not None else ""
        return f"{self.heldout_log_loss:.3f} ({interval}n = {self.n_heldout}; knowing nothing scores 0.693)"


@dataclass(frozen=True)
class StrategyCount:
    strategy: str
    total: int
    queued: int
    done: int


LEADERBOARD_PROMPTS = 10


@dataclass(frozen=True)
class BestResponseRow:
    """The live model's best response to one prompt, with its uncertainty: P(best),
    and the share of annotators expected to prefer it to the runner-up with a 95%
    interval (None for a prompt with one response, or a version stored before the
    recommendation reported it)."""

    prompt: str
    response: str
    p_best: float
    mean: float
    std: float
    runner_up_p_best: float | None
    preferred: float | None = None
    preferred_low: float | None = None
    preferred_high: float | None = None


@dataclass(frozen=True)
class StudyDashboard:
    queue_depth: int
    leased_now: int
    judgments: int
    budget: int
    annotators: int
    model_versions: tuple[ModelVersionRow, ...]
    model_versions_total: int
    by_strategy: tuple[StrategyCount, ...]
    best_responses: tuple[BestResponseRow, ...] = ()
    best_responses_total: int = 0
    recommendation_method: str = ""
    # False for versions whose P(best) came from an older posterior that was not
    # calibrated (see models_runtime.recommend); the page says so.
    recommendation_calibrated: bool = True
    quality: tuple[AnnotatorQuality, ...] = ()
    annotator_rows: tuple[AnnotatorRow, ...] = ()
    figures: analytics.StudyAnalytics | None = None
    gold: analytics.GoldAccuracy | None = None
    charts: DashboardCharts | None = None
    # The live (newest) version, whatever page of the version table is shown.
    live_model: ModelVersionRow | None = None
    model_versions_page: int = 1
    # Versions whose checkpoint is still on disk (the rest were pruned).
    checkpoints: tuple[ModelVersionRow, ...] = ()
    evaluation_min: int = EVALUATION_MIN_JUDGMENTS

    @property
    def model_versions_pages(self) -> int:
        return max(1, -(-self.model_versions_total // MODEL_VERSIONS_SHOWN))

    @property
    def flagged(self) -> int:
        return sum(1 for q in self.quality if q.flags)

    @property
    def percent(self) -> int:
        if self.budget <= 0:
            return 100
        return min(100, round(100 * self.judgments / self.budget))


GOLD_MIN_ANSWERED = 3
ANNOTATORS_SHOWN = 100
JUDGMENT_HOURS_SHOWN = 24


@dataclass(frozen=True)
class AnnotatorRow:
    """One line of the dashboard's annotator table: checks, pace, and the
    reliability the live model was fitted with (``activelearn.reliability``:
    accuracy, its 90% interval, the weight of their judgments), None before a
    model or for someone who joined after it."""

    quality: AnnotatorQuality
    pace: analytics.AnnotatorThroughput | None
    reliability: dict | None = None


@dataclass(frozen=True)
class DashboardCharts:
    """Inline SVG charts of the dashboard (see annotation/charts.py)."""

    per_hour: SafeString
    learning_curve: SafeString
    leaderboard: SafeString | None = None
    regret: SafeString | None = None


@dataclass(frozen=True)
class AnnotatorQuality:
    """One annotator's work and checks, as researchers see it."""

    user_id: int
    name: str
    judgments: int
    gold_answered: int
    gold_correct: int
    attention_answered: int
    attention_failed: int
    mean_seconds: float | None
    skips: int
    flags: tuple[str, ...]
    # Judgments answered faster than anyone can read (services.FAST_ANSWER_MS).
    too_fast: int = 0
    # Flagged by a researcher (Membership.flagged), which the flags also say; None: not a member.
    flagged_by_researcher: bool | None = None

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_answered if self.gold_answered else None


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else float(ms) / 1000


def _gold_correct(ranking: list, answer: dict) -> bool:
    """Whether a judgment put the known better response first, alone."""
    return bool(ranking) and ranking[0] == answer.get("better")


def annotator_quality(*, study: Study) -> list[AnnotatorQuality]:
    """Per annotator: judgments, gold accuracy, attention checks, time on task,
    skips, and why they are flagged, flagged annotators first.

    An annotator is flagged, never dropped, when a researcher flagged them, when their gold accuracy is under
    the study's ``gold_min_accuracy`` after ``GOLD_MIN_ANSWERED`` gold items, or
    when they failed an attention check, or when they answered faster than a
    comparison can be read (``services.FAST_ANSWER_MS``): researchers decide
    what to do. AI judges are named as such. Four queries, however many annotators
    and judgments.
    """
    rows = {
        row["annotator_id"]: row
        for row in Judgment.objects.filter(study=study)
        .values("annotator_id")
        .annotate(
            n=Count("id"),
            mean_ms=Avg("time_on_task_ms"),
            too_fast=Count("id", filter=Q(time_on_task_ms__lt=FAST_ANSWER_MS)),
            judge=Max("annotator__ai_judge__name"),
        )
    }
    checks: dict[int, list[int]] = {}  # annotator → [gold n, gold ok, attention n, attention failed]
    for annotator_id, ranking, answer in Judgment.objects.filter(study=study, comparison__is_gold=True).values_list(
        "annotator_id", "ranking", "comparison__gold_answer"
    ):
        counts = checks.setdefault(annotator_id, [0, 0, 0, 0])
        correct = _gold_correct(ranking, answer or {})
        if (answer or {}).get("kind") == "attention":
            counts[2] += 1
            counts[3] += not correct
        else:
            counts[0] += 1
            counts[1] += correct
    skips = dict(
        Assignment.objects.filter(study=study, status=Assignment.Status.SKIPPED)
        .values_list("annotator_id")
        .annotate(n=Count("id"))
        .values_list("annotator_id", "n")
    )
    members = Membership.objects.filter(study=study, role=Membership.Role.ANNOTATOR).select_related("user")
    names = {m.user_id: m.external_id or m.user.get_username() for m in members}
    marked = {m.user_id: m.flagged for m in members}
    names.update((uid, f"{row['judge']} (AI judge)") for uid, row in rows.items() if row["judge"])
    result = []
    for user_id in sorted(set(names) | set(rows)):
        gold_n, gold_ok, att_n, att_failed = checks.get(user_id, [0, 0, 0, 0])
        flags = ["flagged by a researcher"] if marked.get(user_id) else []
        if gold_n >= GOLD_MIN_ANSWERED and gold_ok / gold_n < study.gold_min_accuracy:
            flags.append(f"gold accuracy {gold_ok}/{gold_n} is under {study.gold_min_accuracy:.0%}")
        if att_failed:
            flags.append(f"failed {att_failed} of {att_n} attention check{'s' if att_n != 1 else ''}")
        too_fast = rows.get(user_id, {}).get("too_fast", 0)
        if too_fast:
            flags.append(f"{too_fast} too fast (answered in under {FAST_ANSWER_MS / 1000:g} s)")
        result.append(
            AnnotatorQuality(
                user_id=user_id,
                name=names.get(user_id, f"user {user_id}"),
                judgments=rows.get(user_id, {}).get("n", 0),
                gold_answered=gold_n,
                gold_correct=gold_ok,
                attention_answered=att_n,
                attention_failed=att_failed,
                mean_seconds=_seconds(rows.get(user_id, {}).get("mean_ms")),
                skips=skips.get(user_id, 0),
                flags=tuple(flags),
                too_fast=too_fast,
                flagged_by_researcher=marked.get(user_id),
            )
        )
    result.sort(key=lambda q: (not q.flags, -q.judgments, q.name))
    return result


def study_dashboard(*, study: Study, versions_page: int = 1) -> StudyDashboard:
    """What a researcher watches live: queue, leases, judgments, annotators, model
    history, and the analytics with their charts.

    ``queue_depth`` is the number of queued comparisons; ``leased_now`` counts
    live (unexpired) leases. Model versions are newest first, a page of
    ``MODEL_VERSIONS_SHOWN`` at a time (``versions_page``, from 1; a page past
    the end shows the last), and annotator quality (see
    :func:`annotator_quality`) with each annotator's pace. Agreement, the
    source leaderboard, judgments per hour, the learning curve and simulated
    regret come from :mod:`annotation.dashboard.analytics` (cached per judgment
    fingerprint, see there). A fixed number of queries, independent of study size.
    """
    by_strategy = _strategy_counts(study)
    leased_now = Assignment.objects.filter(
        study=study, status=Assignment.Status.ACTIVE, expires_at__gt=timezone.now()
    ).count()
    fingerprint, people_judgments = analytics.judgment_counts(study=study)
    annotators = Membership.objects.filter(study=study, role=Membership.Role.ANNOTATOR).count()
    page = _model_versions(study, versions_page)
    rows, total_versions, recommendation = page.rows, page.total, page.recommendation
    best, best_total = _best_responses(recommendation)
    quality = annotator_quality(study=study)
    figures = analytics.study_analytics(study=study, fingerprint=fingerprint)
    reliability = ((page.live.metrics if page.live else {}).get("reliability") or {}).get("annotators") or {}
    return StudyDashboard(
        queue_depth=sum(s.queued for s in by_strategy if s.strategy != "gold"),
        leased_now=leased_now,
        judgments=people_judgments,
        budget=study.budget,
        annotators=annotators,
        model_versions=rows,
        model_versions_total=total_versions,
        by_strategy=by_strategy,
        best_responses=best,
        best_responses_total=best_total,
        recommendation_method=str(recommendation.get("method", "")),
        recommendation_calibrated=recommendation.get("method") in (None, *CALIBRATED_METHODS),
        quality=tuple(quality[:ANNOTATORS_SHOWN]),
        annotator_rows=tuple(
            AnnotatorRow(q, figures.throughput.get(q.user_id), reliability.get(str(q.user_id)))
            for q in quality[:ANNOTATORS_SHOWN]
        ),
        figures=figures,
        gold=analytics.gold_accuracy(quality=quality),
        charts=_dashboard_charts(figures),
        live_model=page.live,
        model_versions_page=page.number,
        checkpoints=page.checkpoints,
    )


def _strategy_counts(study: Study) -> tuple[StrategyCount, ...]:
    """Comparisons per strategy, queued and done among them, most first (one query)."""
    return tuple(
        StrategyCount(strategy=row["strategy"], total=row["total"], queued=row["queued"], done=row["done"])
        for row in Comparison.objects.filter(study=study)
        .values("strategy")
        .annotate(
            total=Count("id"),
            queued=Count("id", filter=Q(status=Comparison.Status.QUEUED)),
            done=Count("id", filter=Q(status=Comparison.Status.DONE)),
        )
        .order_by("-total", "strategy")
    )


@dataclass(frozen=True)
class _VersionPage:
    rows: tuple[ModelVersionRow, ...]
    total: int
    number: int
    live: ModelVersionRow | None
    recommendation: dict
    checkpoints: tuple[ModelVersionRow, ...]


def _model_versions(study: Study, page: int) -> _VersionPage:
    """One page of versions (newest first) with how many there are in all, the
    live version with its recommendation, and the versions whose checkpoints are
    on disk (three queries: the total rides along with the rows as a window count,
    and the recommendation, which can be large, is read for the live version only;
    a page past the end costs two more and shows the last page)."""
    fields = [f.name for f in dataclasses.fields(ModelVersionRow)]
    versions = RewardModelVersion.objects.filter(study=study).order_by("-version")

    def page_rows(number: int) -> list[dict]:
        start = (number - 1) * MODEL_VERSIONS_SHOWN
        counted = versions.annotate(total=Window(Count("id"))).values(*fields, "total")
        return list(counted[start : start + MODEL_VERSIONS_SHOWN])

    number = max(1, page)
    rows = page_rows(number)
    if not rows and number > 1:
        number = max(1, -(-versions.count() // MODEL_VERSIONS_SHOWN))
        rows = page_rows(number)
    total = rows[0]["total"] if rows else 0
    live_values = versions.values(*fields, "recommendation").first() if rows else None
    live = ModelVersionRow(**{name: live_values[name] for name in fields}) if live_values else None
    on_disk = versions.filter(pruned_at__isnull=True).values(*fields) if rows else ()
    checkpoints = tuple(ModelVersionRow(**row) for row in on_disk)
    return _VersionPage(
        rows=tuple(ModelVersionRow(**{name: row[name] for name in fields}) for row in rows),
        total=total,
        number=number,
        live=live,
        recommendation=(live_values or {}).get("recommendation") or {},
        checkpoints=checkpoints,
    )


def _dashboard_charts(figures: analytics.StudyAnalytics) -> DashboardCharts:
    """The dashboard's charts, with the numbers a screen reader should hear in their labels."""
    hours = figures.per_hour
    per_hour = charts.bar_chart(
        [h.start.strftime("%H") for h in hours],
        [h.judgments for h in hours],
        chart_id="chart-per-hour",
        title=f"Judgments per hour, last {len(hours)} hours (UTC)",
        x_label="hour (UTC)",
        y_label="judgments",
        label_every=3,
        summary=f"{sum(h.judgments for h in hours)} in all, {figures.judgments_last_hour} in the last 60 minutes"
        + (f", at most {max(h.judgments for h in hours)} in one hour" if hours else ""),
    )
    curve = figures.curve
    learning = charts.line_chart(
        [
            charts.Series("accuracy", [(p.n_judgments, p.heldout_accuracy) for p in curve]),
            charts.Series("upper 95%", [(p.n_judgments, p.high) for p in curve if p.high is not None]),
            charts.Series("lower 95%", [(p.n_judgments, p.low) for p in curve if p.low is not None]),
        ],
        chart_id="chart-learning-curve",
        title="Learning curve: accuracy on the evaluation judgments (never trained on) of each model version",
        x_label="training judgments the model was fitted on",
        y_label="held-out accuracy",
        y_range=(0.0, 1.0),
        reference=(0.5, "chance"),
        summary=f"{len(curve)} versions; latest v{curve[-1].version}: {curve[-1].heldout_accuracy:.1%} "
        f"(95% interval {curve[-1].low:.1%} to {curve[-1].high:.1%}, {curve[-1].n_heldout} evaluation judgments) "
        f"after {curve[-1].n_judgments} training judgments"
        if curve and curve[-1].low is not None and curve[-1].high is not None
        else "",
    )
    board = figures.leaderboard
    leaderboard = None
    if board.rows:
        top = board.rows[0]
        leaderboard = charts.interval_chart(
            [charts.Interval(r.source, r.score, r.low, r.high, f"P(best) {r.p_best:.0%}") for r in board.rows],
            chart_id="chart-leaderboard",
            title="Model sources by Bradley–Terry score with 95% posterior intervals",
            x_label="log-strength relative to the average source",
            summary=f"{len(board.rows)} sources from {board.judgments} judgments; best {top.source} "
            f"at {top.score:.2f} ({top.low:.2f} to {top.high:.2f}), P(best) {top.p_best:.0%}",
        )
    regret = None
    run = figures.regret
    if run is not None and run.points:
        last = run.points[-1]
        regret = charts.line_chart(
            [charts.Series("regret", [(p.judgments, p.regret) for p in run.points])],
            chart_id="chart-regret",
            title="Simulated regret of the live model's favourite response",
            x_label="judgments in the simulation",
            y_label="normalised regret",
            y_range=(0.0, max(1.0, max(p.regret for p in run.points))),
            reference=(1.0, "random pick"),
            summary=f"{len(run.points)} checkpoints; {last.regret:.3f} after {last.judgments} judgments",
        )
    return DashboardCharts(per_hour=per_hour, learning_curve=learning, leaderboard=leaderboard, regret=regret)


def _best_responses(recommendation: dict) -> tuple[tuple[BestResponseRow, ...], int]:
    """The first ``LEADERBOARD_PROMPTS`` prompts' best responses (one query)."""
    prompts = recommendation.get("prompts") or {}
    entries = sorted(prompts.items(), key=lambda kv: int(kv[0]))[:LEADERBOARD_PROMPTS]
    ids = [entry["best"] for _, entry in entries]
    texts = {
        c.id: (c.prompt.text if c.prompt else "", c.text)
        for c in Candidate.objects.filter(id__in=ids).select_related("prompt").only("id", "text", "prompt__text")
    }
    rows = []
    for _, entry in entries:
        if entry["best"] not in texts:
            continue  # the candidate was deleted since the model was trained
        top = entry["leaderboard"][0]
        prompt, response = texts[entry["best"]]
        runner = entry["leaderboard"][1]["p_best"] if len(entry["leaderboard"]) > 1 else None
        versus = entry.get("runner_up") or {}
        rows.append(
            BestResponseRow(
                prompt,
                response,
                top["p_best"],
                top["mean"],
                top["std"],
                runner,
                versus.get("preferred"),
                versus.get("low"),
                versus.get("high"),
            )
        )
    return tuple(rows), len(prompts)


# --- study records -------------------------------------------------------------


def queue_waiting_count(*, study_id: int) -> int:
    """Comparisons waiting in the study's queue (gold items are served outside it)."""
    return Comparison.objects.filter(study_id=study_id, status=Comparison.Status.QUEUED, is_gold=False).count()
