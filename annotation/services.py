"""Writes of the annotation app: leasing comparisons and saving judgments.

Every function here is a transaction. Views, the REST API, management
commands and Celery tasks all come through these, so the rules (one judgment
per annotator and comparison, leases that expire, the overlap cap) hold
whatever the entry point.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotation.models import LIKERT_POINTS, Assignment, Comparison, Judgment, Membership, Study, in_display_order


class AnnotationError(Exception):
    """A request the rules do not allow; the message is safe to show the user."""


class StudyNotOpen(AnnotationError):
    pass


class NotAssigned(AnnotationError):
    pass


class InvalidAnswer(AnnotationError):
    pass


def leases_expire(*, study_id: int) -> int:
    """Mark overdue leases expired and put their comparisons back in the queue.

    Runs before every lease, so an abandoned tab costs at most one lease
    period. Returns how many leases expired.
    """
    now = timezone.now()
    expired = list(
        Assignment.objects.filter(study_id=study_id, status=Assignment.Status.ACTIVE, expires_at__lt=now).values_list(
            "id", "comparison_id"
        )
    )
    if not expired:
        return 0
    Assignment.objects.filter(id__in=[a for a, _ in expired], status=Assignment.Status.ACTIVE).update(
        status=Assignment.Status.EXPIRED
    )
    comparison_status_refresh(comparison_ids=[c for _, c in expired])
    return len(expired)


def comparison_status_refresh(*, comparison_ids: list[int]) -> None:
    """Recompute queued / leased / done from judgments and live leases.

    A comparison is done when it has as many judgments as it wants, leased
    when judgments plus live leases fill it, and queued otherwise.
    """
    rows = (
        Comparison.objects.filter(id__in=comparison_ids)
        .annotate(
            n_judged=Count("judgments", distinct=True),
            n_live=Count("assignments", filter=Q(assignments__status=Assignment.Status.ACTIVE), distinct=True),
        )
        .values_list("id", "status", "judgments_wanted", "n_judged", "n_live")
    )
    now = timezone.now()
    for comparison_id, status, wanted, n_judged, n_live in rows:
        if n_judged >= wanted:
            new = Comparison.Status.DONE
        elif n_judged + n_live >= wanted:
            new = Comparison.Status.LEASED
        else:
            new = Comparison.Status.QUEUED
        if new != status:
            fields = {"status": new}
            if new == Comparison.Status.DONE:
                fields["completed_at"] = now
            Comparison.objects.filter(id=comparison_id).update(**fields)


@dataclass(frozen=True)
class Lease:
    assignment: Assignment
    created: bool


@transaction.atomic
def assignment_lease_next(*, study: Study, annotator: AbstractBaseUser) -> Lease | None:
    """Give the annotator their next comparison in this study, or None.

    An annotator who already holds a live lease gets it back (a reload shows
    the same comparison). Otherwise the highest-priority queued comparison
    they have not judged is locked with ``SELECT … FOR UPDATE SKIP LOCKED``
    (PostgreSQL; SQLite serialises writers instead), so two annotators never
    take the same slot. None means the queue is empty or the study is not
    accepting work; the caller decides whether to refill.
    """
    if study.status != Study.Status.ACTIVE:
        raise StudyNotOpen(f"The study “{study.name}” is {study.get_status_display().lower()}.")
    now = timezone.now()
    current = (
        Assignment.objects.select_related("comparison")
        .filter(study=study, annotator=annotator, status=Assignment.Status.ACTIVE, expires_at__gt=now)
        .order_by("leased_at")
        .first()
    )
    if current is not None:
        return Lease(assignment=current, created=False)
    if study_judgment_count(study_id=study.id) >= study.budget or annotator_quota_reached(
        study=study, annotator=annotator
    ):
        return None

    leases_expire(study_id=study.id)
    if study.gold_rate > 0 and random.random() < study.gold_rate:
        gold = _gold_lease(study=study, annotator=annotator, now=now)
        if gold is not None:
            return gold
    comparison = (
        Comparison.objects.filter(study=study, status=Comparison.Status.QUEUED, is_gold=False)
        .exclude(judgments__annotator=annotator)
        .exclude(
            # One subquery, so both conditions hold for the same assignment row.
            id__in=Assignment.objects.filter(
                annotator=annotator, status__in=(Assignment.Status.ACTIVE, Assignment.Status.SKIPPED)
            ).values("comparison_id")
        )
        .order_by("-priority", "id")
        .select_for_update(skip_locked=True, of=("self",))
        .first()
    )
    if comparison is None:
        return None
    expires = now + timedelta(seconds=study.lease_seconds)
    order = list(comparison.items.order_by("position").values_list("candidate_id", flat=True))
    if study.blind:
        # Each annotator gets their own order, so no position favours a response.
        random.SystemRandom().shuffle(order)
    assignment, _ = Assignment.objects.update_or_create(
        comparison=comparison,
        annotator=annotator,
        defaults={
            "study": study,
            "status": Assignment.Status.ACTIVE,
            "leased_at": now,
            "expires_at": expires,
            "display_order": order,
        },
    )
    comparison_status_refresh(comparison_ids=[comparison.id])
    return Lease(assignment=assignment, created=True)


def _gold_lease(*, study: Study, annotator: AbstractBaseUser, now) -> Lease | None:
    """A gold or attention-check comparison this annotator has not seen, or None.

    Every annotator answers each gold item once, so no row lock is needed: many
    annotators may hold the same gold comparison at the same time.
    """
    seen = Assignment.objects.filter(annotator=annotator, study=study).values("comparison_id")
    comparison = Comparison.objects.filter(study=study, is_gold=True).exclude(id__in=seen).order_by("?").first()
    if comparison is None:
        return None
    order = list(comparison.items.order_by("position").values_list("candidate_id", flat=True))
    random.SystemRandom().shuffle(order)  # always: the known answer must not sit in one place
    assignment = Assignment.objects.create(
        study=study,
        comparison=comparison,
        annotator=annotator,
        leased_at=now,
        expires_at=now + timedelta(seconds=study.lease_seconds),
        display_order=order,
    )
    return Lease(assignment=assignment, created=True)


def assignment_lease_or_refill(*, study: Study, annotator: AbstractBaseUser) -> Lease | None:
    """Lease the annotator's next comparison, topping the queue up if it ran dry.

    This is the entry point for every client (pages, API, simulators). When
    the queue is empty but budget remains, a cheap random refill runs right
    here so nobody waits for the worker, and the worker is asked for its
    informed picks. After a new lease, a queue under the low-water mark asks
    the worker for more. None means the study's work is done.
    """
    from activelearn import services as loop

    lease = assignment_lease_next(study=study, annotator=annotator)
    if lease is None:
        if study_judgment_count(study_id=study.id) >= study.budget or annotator_quota_reached(
            study=study, annotator=annotator
        ):
            return None
        loop.queue_refill(study_id=study.id, use_model=False)
        loop.refill_request(study_id=study.id)
        lease = assignment_lease_next(study=study, annotator=annotator)
    elif lease.created and loop.queue_waiting_count(study_id=study.id) < study.queue_low_water:
        loop.refill_request(study_id=study.id)
    return lease


def study_judgment_count(*, study_id: int) -> int:
    return Judgment.objects.filter(study_id=study_id).count()


def annotator_quota_reached(*, study: Study, annotator: AbstractBaseUser) -> bool:
    """Whether the annotator has given all the judgments the study's quota allows."""
    if study.annotator_quota is None:
        return False
    return Judgment.objects.filter(study=study, annotator=annotator).count() >= study.annotator_quota


# --- joining ------------------------------------------------------------------------

# Crowd platforms' participant ids (Prolific PIDs are 24 hex digits).
EXTERNAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ENTRY_PARAMETERS = {"STUDY_ID": "study_id", "SESSION_ID": "session_id"}


@transaction.atomic
def membership_join(*, study: Study, user: AbstractBaseUser, entry: dict | None = None) -> Membership:
    """Make ``user`` an annotator of ``study`` through its invite link.

    Joining twice, or as a researcher of the study, changes nothing. A closed
    study takes no one.
    """
    if study.status == Study.Status.CLOSED:
        raise StudyNotOpen(f"The study “{study.name}” is closed.")
    membership, _ = Membership.objects.get_or_create(
        study=study, user=user, defaults={"role": Membership.Role.ANNOTATOR, "entry": entry or {"via": "invite"}}
    )
    return membership


@transaction.atomic
def participant_join(*, study: Study, external_id: str, entry: dict | None = None) -> AbstractBaseUser:
    """The account of a crowd participant (e.g. a Prolific PID) in this study,
    created on first entry.

    The account belongs to this study alone and has no password: the invite
    link with the participant id is how it comes back, so a participant who
    reloads or returns later continues where they were.
    """
    if not EXTERNAL_ID.match(external_id or ""):
        raise InvalidAnswer("The participant id in the link is not valid.")
    if study.status == Study.Status.CLOSED:
        raise StudyNotOpen(f"The study “{study.name}” is closed.")
    User = get_user_model()
    user, created = User.objects.get_or_create(username=f"p{study.id}-{external_id}"[:150])
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    Membership.objects.get_or_create(
        study=study,
        user=user,
        defaults={
            "role": Membership.Role.ANNOTATOR,
            "external_id": external_id,
            "entry": {"via": "prolific", **(entry or {})},
        },
    )
    return user


@dataclass(frozen=True)
class Submission:
    judgment: Judgment
    created: bool


_PAIRWISE_CHOICES = {Judgment.Choice.A, Judgment.Choice.B, Judgment.Choice.TIE, Judgment.Choice.BOTH_BAD}
_STRENGTHS = {s.value for s in Judgment.Strength}


@transaction.atomic
def judgment_submit(
    *,
    study: Study,
    annotator: AbstractBaseUser,
    comparison_id: int,
    choice: str = "",
    ranking: list[list[int]] | None = None,
    strength: str = "",
    rationale: str = "",
    aspect_ratings: dict[int, dict[str, int]] | None = None,
    time_on_task_ms: int | None = None,
    client_info: dict | None = None,
) -> Submission:
    """Save an annotator's answer to a comparison they were given.

    A pair is answered with ``choice`` (a, b, tie or both_bad, as the study
    allows) and, when the study asks for it, the ``strength`` of a preference
    (slight, clear, strong); a list with ``ranking``: groups of shown positions
    (0 = first shown), best group first, every position exactly once, a group
    of two or more being a tie. ``aspect_ratings`` maps shown positions to
    ``{aspect: 1..5}`` for every aspect of the study; ``rationale`` is checked
    against the study's setting. Every rule is checked before anything is
    written, and the message of a refusal says what to fix. Idempotent: a
    second submit for the same comparison returns the first judgment
    unchanged (``created=False``). An answer arriving after the lease expired
    is still kept, because the work was done; an answer to a comparison never
    leased to this annotator is refused. On commit the active-learning loop is
    told (retrain and refill, debounced there).
    """
    comparison = Comparison.objects.select_for_update(of=("self",)).filter(id=comparison_id, study=study).first()
    if comparison is None:
        raise NotAssigned("That comparison does not belong to this study.")
    existing = Judgment.objects.filter(comparison=comparison, annotator=annotator).first()
    if existing is not None:
        return Submission(judgment=existing, created=False)
    assignment = Assignment.objects.filter(comparison=comparison, annotator=annotator).first()
    if assignment is None:
        raise NotAssigned("That comparison was not assigned to you.")

    # Positions in the answer (A = 0, …) are positions on the annotator's screen.
    item_ids = list(comparison.items.order_by("position").values_list("candidate_id", flat=True))
    item_ids = in_display_order(item_ids, assignment.display_order)
    if ranking is not None:
        choice = Judgment.Choice.RANKED
        stored = _ranking_validate(ranking, item_ids=item_ids, allow_tie=study.allow_tie)
    else:
        if choice not in _PAIRWISE_CHOICES:
            raise InvalidAnswer(f"Unknown answer {choice!r}; expected one of: a, b, tie.")
        if choice == Judgment.Choice.TIE and not study.allow_tie:
            raise InvalidAnswer("This study does not allow ties.")
        if choice == Judgment.Choice.BOTH_BAD and not study.allow_both_bad:
            raise InvalidAnswer("This study does not offer “Both bad”.")
        if len(item_ids) != 2:
            raise InvalidAnswer(f"This comparison shows {len(item_ids)} items: rank them all instead.")
        first, second = item_ids
        stored = {"a": [first, second], "b": [second, first]}.get(choice, [[first, second]])
    strength = _strength_validate(study, choice=choice, strength=strength)
    rationale = rationale.strip()
    if study.ask_rationale == Study.RationaleMode.REQUIRED and not rationale:
        raise InvalidAnswer("Please explain your answer in a sentence: this study asks for a reason.")
    if study.ask_rationale == Study.RationaleMode.OFF:
        rationale = ""
    ratings = _aspect_ratings_validate(study, aspect_ratings or {}, item_ids=item_ids)
    judgment = Judgment.objects.create(
        study=study,
        comparison=comparison,
        annotator=annotator,
        choice=choice,
        ranking=stored,
        strength=strength,
        rationale=rationale,
        aspect_ratings=ratings,
        shown_order=item_ids,
        time_on_task_ms=time_on_task_ms,
        client_info=client_info or {},
    )
    Assignment.objects.filter(comparison=comparison, annotator=annotator).update(status=Assignment.Status.SUBMITTED)
    comparison_status_refresh(comparison_ids=[comparison.id])

    from activelearn.services import loop_notify_judgment

    study_id = study.id
    transaction.on_commit(lambda: loop_notify_judgment(study_id=study_id))
    return Submission(judgment=judgment, created=True)


def _ranking_validate(ranking: list[list[int]], *, item_ids: list[int], allow_tie: bool) -> list:
    """Check a ranking of shown positions and turn it into the stored form:
    candidate ids best first, tied candidates sharing an inner list."""
    k = len(item_ids)
    try:
        positions = [int(p) for group in ranking for p in group]
    except (TypeError, ValueError):
        raise InvalidAnswer("The ranking must be groups of item positions.") from None
    if any(len(group) == 0 for group in ranking):
        raise InvalidAnswer("The ranking has an empty place.")
    if sorted(positions) != list(range(k)):
        raise InvalidAnswer(f"Rank every one of the {k} items exactly once.")
    if not allow_tie and any(len(group) > 1 for group in ranking):
        raise InvalidAnswer("This study does not allow ties: give each item its own place.")
    return [item_ids[group[0]] if len(group) == 1 else [item_ids[p] for p in group] for group in ranking]


def _strength_validate(study: Study, *, choice: str, strength: str) -> str:
    """How much better, for a preference between two responses when the study asks."""
    if not study.ask_strength or choice not in (Judgment.Choice.A, Judgment.Choice.B):
        return ""
    if strength not in _STRENGTHS:
        raise InvalidAnswer("Say how much better: slightly better, better or much better.")
    return strength


def _aspect_ratings_validate(study: Study, ratings: dict[int, dict[str, int]], *, item_ids: list[int]) -> dict:
    """Every aspect of the study rated 1..5 for every shown item, keyed by candidate id."""
    aspects = [a.strip() for a in study.aspects or []]
    if not aspects:
        return {}
    stored: dict[str, dict[str, int]] = {}
    missing: list[str] = []
    for position, candidate_id in enumerate(item_ids):
        given = ratings.get(position) or {}
        row: dict[str, int] = {}
        for aspect in aspects:
            value = given.get(aspect)
            if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= LIKERT_POINTS:
                row[aspect] = value
            else:
                missing.append(f"{aspect} of {chr(ord('A') + position)}")
        stored[str(candidate_id)] = row
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise InvalidAnswer(f"Rate every aspect from 1 to {LIKERT_POINTS}; missing: {shown}.")
    return stored


@transaction.atomic
def assignment_skip(
    *, study: Study, annotator: AbstractBaseUser, comparison_id: int, reason: str, note: str = ""
) -> Assignment:
    """Hand a leased comparison back unanswered, with the reason.

    The comparison returns to the queue for other annotators and is never
    offered to this one again; nothing is learned from a skip, but researchers
    see the reasons. Skipping twice, or after answering, changes nothing.
    """
    if not study.allow_skip:
        raise InvalidAnswer("This study does not allow skipping.")
    if reason not in Assignment.SkipReason.values:
        choices = ", ".join(Assignment.SkipReason.values)
        raise InvalidAnswer(f"Choose why you are skipping (one of: {choices}).")
    note = note.strip()
    if reason == Assignment.SkipReason.OTHER and not note:
        raise InvalidAnswer("Please say briefly why you are skipping.")
    assignment = (
        Assignment.objects.select_for_update()
        .filter(study=study, comparison_id=comparison_id, annotator=annotator)
        .first()
    )
    if assignment is None:
        raise NotAssigned("That comparison was not assigned to you.")
    if assignment.status in (Assignment.Status.SKIPPED, Assignment.Status.SUBMITTED):
        return assignment
    assignment.status = Assignment.Status.SKIPPED
    assignment.skip_reason = reason
    assignment.skip_note = note[:2000]
    assignment.save(update_fields=["status", "skip_reason", "skip_note"])
    comparison_status_refresh(comparison_ids=[comparison_id])
    return assignment


# The page offers undo for a few seconds; the server allows a little longer so a
# click in the last moment still counts on a slow connection.
UNDO_SECONDS_SHOWN = 8
UNDO_SECONDS_ALLOWED = 30


@transaction.atomic
def judgment_undo(*, study: Study, annotator: AbstractBaseUser, judgment_id: int) -> Assignment:
    """Take back an answer just given: the judgment is deleted and its comparison
    is leased to the annotator again, to be answered first.

    Only the annotator's own judgment, and only within ``UNDO_SECONDS_ALLOWED``
    of giving it. The loop is told on commit, so the next model leaves the
    answer out.
    """
    judgment = (
        Judgment.objects.select_for_update()
        .filter(id=judgment_id, study=study, annotator=annotator)
        .select_related("comparison")
        .first()
    )
    if judgment is None:
        raise InvalidAnswer("There is no answer of yours to undo.")
    now = timezone.now()
    if judgment.created_at < now - timedelta(seconds=UNDO_SECONDS_ALLOWED):
        raise InvalidAnswer("That answer is too old to undo.")
    comparison_id = judgment.comparison_id
    judgment.delete()
    Assignment.objects.filter(comparison_id=comparison_id, annotator=annotator).update(
        status=Assignment.Status.ACTIVE, expires_at=now + timedelta(seconds=study.lease_seconds)
    )
    comparison_status_refresh(comparison_ids=[comparison_id])

    from activelearn.services import loop_notify_judgment

    study_id = study.id
    transaction.on_commit(lambda: loop_notify_judgment(study_id=study_id))
    return Assignment.objects.get(comparison_id=comparison_id, annotator=annotator)
