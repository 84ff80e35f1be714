"""Reads about studies as a whole: the home page's list, the queue, imports and model versions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext

from annotation.models import (
    AIJudge,
    Assignment,
    Comparison,
    EmbeddingProgress,
    GenerationJob,
    GenerationSource,
    ImportJob,
    Judgment,
    Membership,
    RewardModelVersion,
    Study,
    Webhook,
    WebhookDelivery,
)
from annotation.organisations.models import OrganisationMember

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    AnyUser = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class StudyEntry:
    study: Study
    # a Membership.Role value, "owner" for an owner of the study's organisation who is
    # not a member, or "admin" for a superuser who is not a member
    role: str
    can_annotate: bool
    can_manage: bool
    can_review: bool = False

    @property
    def role_label(self) -> str:
        """The role as the home page names it, in the page's language."""
        if self.role in Membership.Role.values:
            return str(Membership.Role(self.role).label)
        if self.role == "owner":
            return gettext("Organisation owner")
        return gettext("Admin")


def studies_for_user(*, user: AnyUser) -> list[StudyEntry]:
    """The studies on the user's home page, each with what the user may do there.

    Members see their studies with their role. The owners of an organisation
    also see every study in it (as "owner"). Superusers also see every other
    study (as "admin"); staff see only their own, like everyone else. What
    each may do follows ``access.manages_study``: a researcher of a study in
    an organisation manages it only while in the organisation. Three queries
    at most, whatever the number of studies.
    """
    if not user.is_authenticated:
        return []
    organisation_roles = dict(OrganisationMember.objects.filter(user=user).values_list("organisation_id", "role"))
    owned = [pk for pk, role in organisation_roles.items() if role == OrganisationMember.Role.OWNER]
    entries: list[StudyEntry] = []
    seen: set[int] = set()
    memberships = (
        Membership.objects.filter(user=user)
        .select_related("study", "study__organisation_link")
        .order_by("study__name", "study_id")
    )
    for membership in memberships:
        link = getattr(membership.study, "organisation_link", None)
        organisation_id = link.organisation_id if link else None
        is_researcher = membership.role == Membership.Role.RESEARCHER and (
            organisation_id is None or organisation_id in organisation_roles
        )
        manages = is_researcher or user.is_superuser or organisation_id in owned
        entries.append(
            StudyEntry(
                study=membership.study,
                role=membership.role,
                can_annotate=True,
                can_manage=manages,
                can_review=manages or membership.role == Membership.Role.REVIEWER,
            )
        )
        seen.add(membership.study_id)
    if user.is_superuser:
        others = Study.objects.exclude(id__in=seen).order_by("name", "id")
        entries.extend(
            StudyEntry(study=study, role="admin", can_annotate=True, can_manage=True, can_review=True)
            for study in others
        )
    elif owned:
        others = Study.objects.filter(organisation_link__organisation_id__in=owned).exclude(id__in=seen)
        entries.extend(
            StudyEntry(study=study, role="owner", can_annotate=True, can_manage=True, can_review=True)
            for study in others.order_by("name", "id")
        )
    return entries


def study_for_invite(*, token: str) -> Study:
    """The study whose invite link carries ``token``; Http404 when no study does (any more)."""
    study = Study.objects.filter(invite_token=token).first()
    if study is None:
        raise Http404("This invite link is not valid (any more).")
    return study


def queue_waiting_count(*, study_id: int) -> int:
    """Comparisons waiting in the study's queue (gold items are served outside it)."""
    return Comparison.objects.filter(study_id=study_id, status=Comparison.Status.QUEUED, is_gold=False).count()


def queue_reachable_count(*, study_id: int, active: int, version_id: int | None = None) -> int:
    """Queued comparisons that someone working now can still take (of ``version_id``'s picks, when given).

    An annotator never takes a comparison twice: one they judged, skipped or
    hold is out of their reach. A queued comparison that as many annotators
    have reached as are ``active`` (at least one) may be out of reach for
    everyone working now, so it is not counted: with an overlap of 2 and one
    annotator at work, every comparison they answered stays queued, waiting
    for a second annotator, and a queue that counted them would look full while
    its only annotator had nothing left to do. The count can only undercount
    what is reachable, so a refill sized on it may queue a little more than
    needed, never leave the crowd without work.
    """
    rows = Comparison.objects.filter(study_id=study_id, status=Comparison.Status.QUEUED, is_gold=False)
    if version_id is not None:
        rows = rows.filter(model_version_id=version_id)
    reached = Count("assignments", filter=~Q(assignments__status=Assignment.Status.EXPIRED))
    return rows.annotate(reached=reached).filter(reached__lt=max(1, active)).count()


def queue_waiting_sql(study: str) -> tuple[str, list[str]]:
    """:func:`queue_waiting_count` as a scalar subquery for the hand-written
    statements of the annotate path (the lease's counts, the loop's read after
    an answer), with its parameters; ``study`` is the SQL giving the study's id
    there (a column of the outer statement, or ``%s`` the caller passes first)."""
    table = Comparison._meta.db_table
    sql = f"(SELECT COUNT(*) FROM {table} WHERE study_id = {study} AND status = %s AND NOT is_gold)"
    return sql, [Comparison.Status.QUEUED]


@dataclass(frozen=True)
class QueueDemand:
    """What a study's crowd asks of its queue right now."""

    active: int  # annotators who took a comparison in the last PREFLOOP_ACTIVE_SECONDS
    per_second: float  # comparisons completed per second, over the last minute
    comparisons: int  # what they get through in PREFLOOP_QUEUE_HORIZON_SECONDS, plus one each


# Past this a demand is a measuring slip, not a crowd.
QUEUE_DEMAND_MOST = 5000


def queue_demand(*, study: Study, now: datetime | None = None) -> QueueDemand:
    """How many comparisons the annotators working now get through before the
    next refill can land (two queries; the refill stores it as
    ``Study.queue_demand``).

    A fixed queue target leaves a large crowd without work between refills, and
    a crowd that finds the queue empty gets random pairs instead of the
    strategy's. The pace is the last minute's judgments, in comparisons (an
    overlap of 2 takes two judgments for one); the extra comparison per active
    annotator covers the one each holds and a crowd that has just arrived.
    """
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.PREFLOOP_ACTIVE_SECONDS)
    leasing = Assignment.objects.filter(study_id=study.id, leased_at__gte=since)
    active = leasing.values("annotator_id").distinct().count()
    recent = Judgment.objects.filter(study_id=study.id, created_at__gte=now - timedelta(seconds=60)).count()
    per_second = recent / 60.0 / max(1, study.overlap)
    comparisons = math.ceil(per_second * settings.PREFLOOP_QUEUE_HORIZON_SECONDS) + active
    return QueueDemand(active=active, per_second=per_second, comparisons=min(comparisons, QUEUE_DEMAND_MOST))


def study_has_judgments(*, study: Study) -> bool:
    return Judgment.objects.filter(study=study).exists()


def import_job_get(*, study: Study, job_id: int) -> ImportJob:
    """One of the study's import jobs; 404 for another study's or a missing one."""
    job = ImportJob.objects.filter(study=study, pk=job_id).first()
    if job is None:
        raise Http404("No such import.")
    return job


def embedding_progress_get(*, study: Study) -> EmbeddingProgress | None:
    """How far the loop has embedded the study's candidates; None before its first import."""
    return EmbeddingProgress.objects.filter(study=study).first()


def model_versions(*, study: Study) -> QuerySet[RewardModelVersion]:
    """The study's reward-model versions, newest first, without their (large) recommendations."""
    return RewardModelVersion.objects.filter(study=study).order_by("-version").defer("recommendation")


def model_version_get(*, study: Study, version: int | None = None) -> RewardModelVersion | None:
    """The study's reward-model ``version``, or its newest when ``version`` is None; None if there is none."""
    rows = RewardModelVersion.objects.filter(study=study)
    if version is not None:
        return rows.filter(version=version).first()
    return rows.order_by("-version").first()


# Generation runs the study page lists.
GENERATION_RUNS_SHOWN = 5


def generation_overview(*, study: Study) -> dict:
    """The study page's generation card: the study's sources, its latest runs
    (newest first), whether one is unfinished (the card then polls), and, when
    the study regenerates automatically, how many rounds it has had."""
    jobs = list(GenerationJob.objects.filter(study=study).select_related("source")[:GENERATION_RUNS_SHOWN])
    rounds = None
    if study.regenerate_source_id is not None:
        rounds = GenerationJob.objects.filter(study=study, reason="auto").count()
    return {
        "generation_sources": list(GenerationSource.objects.filter(study=study)),
        "generation_jobs": jobs,
        "generation_running": any(not job.finished for job in jobs),
        "regeneration_rounds_used": rounds,
    }


@dataclass(frozen=True)
class JudgeRow:
    """One AI judge on the study page: its counters, how often it agreed with people
    where both answered (``agreed`` of ``shared`` comparisons, people's majority,
    ties and pairs without a majority left out), and the live fit's estimate of
    its accuracy with the weight its answers carry (None before a fit measured it)."""

    judge: AIJudge
    shared: int
    agreed: int
    accuracy: float | None = None
    low: float | None = None
    high: float | None = None
    weight: float | None = None

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.shared if self.shared else None


@dataclass(frozen=True)
class JudgesOverview:
    """The study page's AI-judges card: every judge, and what routing saved: the
    comparisons judges settled without a person (each spares ``overlap`` people's
    judgments) of the study's comparisons, and the tokens all judges spent."""

    judges: list[JudgeRow]
    settled: int
    comparisons: int
    saved: int
    tokens: int

    @property
    def settled_share(self) -> float:
        return self.settled / self.comparisons if self.comparisons else 0.0


def strict_pair(ranking: list) -> tuple[int, int] | None:
    """(winner, loser) candidate ids of a strict pairwise answer; None for a tie or a list."""
    if len(ranking) != 2 or any(isinstance(g, list) for g in ranking):
        return None
    return int(ranking[0]), int(ranking[1])


def live_reliability(*, study_id: int) -> dict[str, Any]:
    """The live version's stored reliability estimates (``metrics["reliability"]``:
    ``reference`` and ``annotators`` by user id), or {} before the first fit. One
    query, reading the metrics only."""
    live = RewardModelVersion.objects.filter(study_id=study_id).order_by("-version").values("metrics").first()
    return ((live or {}).get("metrics") or {}).get("reliability") or {}


def judge_settled_counts(*, study_id: int) -> tuple[int, int]:
    """(comparisons settled by AI judges, comparisons) of the study, gold left out; one query."""
    counts = Comparison.objects.filter(study_id=study_id, is_gold=False).aggregate(
        total=Count("id"), settled=Count("id", filter=Q(settled_by_judges=True))
    )
    return counts["settled"], counts["total"]


def judges_overview(*, study: Study) -> JudgesOverview:
    """Every AI judge of the study with its agreement with people and the live
    fit's reliability estimate, and the routing totals. Four queries; one for a
    study without judges (nothing settled, nothing to show)."""
    judges = list(AIJudge.objects.filter(study=study).select_related("source"))
    if not judges:
        return JudgesOverview([], 0, 0, 0, 0)
    settled, total = judge_settled_counts(study_id=study.id)
    # Agreement: every strict pairwise answer on the comparisons the judges answered.
    judged = Judgment.objects.filter(study=study, by_model=True).values("comparison_id")
    people: dict[int, dict[tuple[int, int], int]] = {}
    verdicts: dict[int, list[tuple[int, tuple[int, int]]]] = {}
    for cid, annotator_id, ranking, by_model in Judgment.objects.filter(comparison_id__in=judged).values_list(
        "comparison_id", "annotator_id", "ranking", "by_model"
    ):
        pair = strict_pair(ranking)
        if pair is None:
            continue
        if by_model:
            verdicts.setdefault(annotator_id, []).append((cid, pair))
        else:
            tally = people.setdefault(cid, {})
            tally[pair] = tally.get(pair, 0) + 1
    majority = {}
    for cid, tally in people.items():
        ranked = sorted(tally.items(), key=lambda kv: -kv[1])
        if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
            majority[cid] = ranked[0][0]
    estimates = live_reliability(study_id=study.id).get("annotators") or {}
    rows = []
    for judge in judges:
        mine = [(cid, pair) for cid, pair in verdicts.get(judge.user_id, ()) if cid in majority]
        est = estimates.get(str(judge.user_id)) or {}
        rows.append(
            JudgeRow(
                judge=judge,
                shared=len(mine),
                agreed=sum(majority[cid] == pair for cid, pair in mine),
                accuracy=est.get("accuracy"),
                low=est.get("low"),
                high=est.get("high"),
                weight=est.get("weight"),
            )
        )
    return JudgesOverview(
        judges=rows,
        settled=settled,
        comparisons=total,
        saved=settled * study.overlap,
        tokens=sum(j.tokens for j in judges),
    )


WEBHOOK_DELIVERIES_SHOWN = 10


def webhooks_overview(*, study: Study) -> dict:
    """The study page's webhooks card: the study's webhooks and its latest
    deliveries, newest first (two queries)."""
    hooks = list(Webhook.objects.filter(study=study))
    deliveries = (
        list(WebhookDelivery.objects.filter(webhook__study=study).select_related("webhook")[:WEBHOOK_DELIVERIES_SHOWN])
        if hooks
        else []
    )
    return {"webhooks": hooks, "webhook_deliveries": deliveries}
