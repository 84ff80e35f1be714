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
from django.db import connection, transaction
from django.db.models import Exists
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
    when judgments plus live leases fill it, and queued otherwise. This runs
    on every lease and every answer, so it is one UPDATE with the counts as
    subqueries, written out in SQL: the ORM spelling of it cost more to
    compile than to run (benchmarks/annotator_ui.py).
    """
    if not comparison_ids:
        return
    comparison, judgment, assignment = (m._meta.db_table for m in (Comparison, Judgment, Assignment))
    judged = f"(SELECT COUNT(*) FROM {judgment} j WHERE j.comparison_id = {comparison}.id)"
    live = f"(SELECT COUNT(*) FROM {assignment} a WHERE a.comparison_id = {comparison}.id AND a.status = %s)"
    marks = ", ".join(["%s"] * len(comparison_ids))
    # SET sees the row as it was, so completed_at is stamped only on the change to done.
    sql = f"""
        UPDATE {comparison} SET
            status = CASE
                WHEN judgments_wanted <= {judged} THEN %s
                WHEN judgments_wanted <= {judged} + {live} THEN %s
                ELSE %s END,
            completed_at = CASE
                WHEN status <> %s AND judgments_wanted <= {judged} THEN %s
                ELSE completed_at END
        WHERE id IN ({marks})
    """  # table names come from model metadata; every value is a parameter
    done, leased, queued = Comparison.Status.DONE, Comparison.Status.LEASED, Comparison.Status.QUEUED
    params = [done, Assignment.Status.ACTIVE, leased, queued, done, timezone.now(), *comparison_ids]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@dataclass(frozen=True)
class Lease:
    assignment: Assignment
    created: bool


@transaction.atomic
def assignment_lease_next(*, study: Study, annotator: AbstractBaseUser, hold: int = 1) -> Lease | None:
    """Give the annotator their next comparison in this study, or None.

    An annotator who already holds a live lease gets it back (a reload shows
    the same comparison). Otherwise the highest-priority queued comparison
    they have not judged is locked with ``SELECT … FOR UPDATE SKIP LOCKED``
    (PostgreSQL; SQLite serialises writers instead), so two annotators never
    take the same slot. None means the queue is empty or the study is not
    accepting work; the caller decides whether to refill.

    ``hold=2`` asks for the comparison after the current one (leased ahead, so
    the page can show it the moment the current one is answered): the
    annotator's second live lease, or a new one. Leases held count against the
    budget and the annotator's quota, so leasing ahead never hands out work
    the study will not pay for.
    """
    if study.status != Study.Status.ACTIVE:
        raise StudyNotOpen(f"The study “{study.name}” is {study.get_status_display().lower()}.")
    now = timezone.now()
    held = list(
        Assignment.objects.select_related("comparison")
        .filter(study=study, annotator=annotator, status=Assignment.Status.ACTIVE, expires_at__gt=now)
        .order_by("leased_at", "id")[:hold]
    )
    if len(held) >= hold:
        return Lease(assignment=held[hold - 1], created=False)
    if study_judgment_count(study_id=study.id) + len(held) >= study.budget:
        return None
    if study.annotator_quota is not None and (
        Judgment.objects.filter(study=study, annotator=annotator).count() + len(held) >= study.annotator_quota
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
    # Each annotator gets their own order in blind mode, so no position favours a response.
    assignment = _assignment_upsert(
        study=study, comparison=comparison, annotator=annotator, now=now, shuffle=study.blind
    )
    comparison_status_refresh(comparison_ids=[comparison.id])
    return Lease(assignment=assignment, created=True)


def _assignment_upsert(
    *, study: Study, comparison: Comparison, annotator: AbstractBaseUser, now, shuffle: bool
) -> Assignment:
    """Lease ``comparison`` to the annotator: one upsert, so an expired lease of
    the same comparison is replaced, and two requests of one annotator racing
    for the same comparison share one lease instead of one of them failing."""
    order = list(comparison.items.order_by("position").values_list("candidate_id", flat=True))
    if shuffle:
        random.SystemRandom().shuffle(order)
    (assignment,) = Assignment.objects.bulk_create(
        [
            Assignment(
                study=study,
                comparison=comparison,
                annotator=annotator,
                status=Assignment.Status.ACTIVE,
                leased_at=now,
                expires_at=now + timedelta(seconds=study.lease_seconds),
                display_order=order,
            )
        ],
        update_conflicts=True,
        unique_fields=["comparison", "annotator"],
        update_fields=["status", "leased_at", "expires_at", "display_order"],
    )
    return assignment


def _gold_lease(*, study: Study, annotator: AbstractBaseUser, now) -> Lease | None:
    """A gold or attention-check comparison this annotator has not seen, or None.

    Every annotator answers each gold item once, so no row lock is needed: many
    annotators may hold the same gold comparison at the same time.
    """
    seen = Assignment.objects.filter(annotator=annotator, study=study).values("comparison_id")
    comparison = Comparison.objects.filter(study=study, is_gold=True).exclude(id__in=seen).order_by("?").first()
    if comparison is None:
        return None
    # Always shuffled: the known answer must not sit in one place.
    assignment = _assignment_upsert(study=study, comparison=comparison, annotator=annotator, now=now, shuffle=True)
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


def assignment_lease_ahead(*, study: Study, annotator: AbstractBaseUser) -> Lease | None:
    """The comparison after the annotator's current one, leased now so the page
    can swap it in without a round trip; None when there is none to spare.

    Never refills synchronously (the current comparison is already on screen,
    so nobody is waiting); a queue that ran low asks the worker instead.
    """
    from activelearn import services as loop

    try:
        lease = assignment_lease_next(study=study, annotator=annotator, hold=2)
    except StudyNotOpen:
        return None
    fresh_or_none = lease is None or lease.created
    if fresh_or_none and loop.queue_waiting_count(study_id=study.id) < study.queue_low_water:
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


# --- study settings -----------------------------------------------------------------

# What a researcher may set on a study (the rest is bookkeeping of the loop).
STUDY_SETTINGS = (
    "name", "guidelines", "mode", "list_size", "allow_tie", "allow_both_bad", "ask_strength", "ask_rationale",
    "aspects", "allow_skip", "blind", "highlight_diff", "strategy", "strategy_params", "model_type",
    "model_params", "overlap", "budget", "gold_rate", "gold_min_accuracy", "annotator_quota", "completion_code",
    "completion_url", "lease_seconds", "queue_low_water", "queue_target",
)  # fmt: skip
# These shape the comparisons themselves: fixed once anyone has answered one.
STUDY_SETTINGS_LOCKED_AFTER_JUDGMENTS = ("mode", "list_size")


def _settings_apply(study: Study, changes: dict) -> None:
    from django.core.exceptions import ValidationError

    unknown = sorted(set(changes) - set(STUDY_SETTINGS))
    if unknown:
        raise ValidationError({name: ["Not a study setting."] for name in unknown})
    for name, value in changes.items():
        setattr(study, name, value)
    # full_clean names every bad field (and the keys of bad strategy/model params).
    study.full_clean(exclude=["slug", "invite_token"])


@transaction.atomic
def study_settings_create(*, name: str, settings: dict, created_by: AbstractBaseUser) -> Study:
    """Create a study from a name and settings, validated before anything is
    written; its creator becomes its researcher. Raises ``ValidationError``
    with a message per bad field."""
    from annotation.importing import study_create

    draft = Study(name=name, slug="draft")
    _settings_apply(draft, settings)
    values = {field: getattr(draft, field) for field in settings}
    return study_create(name=name, created_by=created_by, **values)


@transaction.atomic
def study_settings_update(*, study: Study, changes: dict) -> Study:
    """Change a study's settings; all or nothing, with a message per bad field.

    The comparison mode and list size are refused once the study has
    judgments: its queue and answers are made of those comparisons."""
    from django.core.exceptions import ValidationError

    locked = Study.objects.select_for_update().get(pk=study.pk)
    if Judgment.objects.filter(study=locked).exists():
        frozen = {
            name: ["Fixed once the study has judgments."]
            for name in STUDY_SETTINGS_LOCKED_AFTER_JUDGMENTS
            if name in changes and changes[name] != getattr(locked, name)
        }
        if frozen:
            raise ValidationError(frozen)
    _settings_apply(locked, changes)
    locked.save()
    locked.member_role = getattr(study, "member_role", None)
    return locked


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
    assignment = (
        Assignment.objects.filter(comparison=comparison, annotator=annotator)
        .annotate(answered=Exists(Judgment.objects.filter(comparison=comparison, annotator=annotator)))
        .first()
    )
    if assignment is not None and assignment.answered:
        existing = Judgment.objects.get(comparison=comparison, annotator=annotator)
        return Submission(judgment=existing, created=False)
    if assignment is None:
        raise NotAssigned("That comparison was not assigned to you.")

    # Positions in the answer (A = 0, …) are positions on the annotator's screen.
    item_ids = _shown_item_ids(comparison, assignment)
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

    study_id, low_water = study.id, study.queue_low_water
    transaction.on_commit(lambda: loop_notify_judgment(study_id=study_id, queue_low_water=low_water))
    return Submission(judgment=judgment, created=True)


def _shown_item_ids(comparison: Comparison, assignment: Assignment) -> list[int]:
    """The comparison's candidate ids in the order this annotator saw them.

    Every lease records that order (written from the items when leased), so
    the items table is read only for leases made before it was recorded."""
    recorded = assignment.display_order or []
    if len(recorded) >= 2 and len(set(recorded)) == len(recorded):
        return list(recorded)
    item_ids = list(comparison.items.order_by("position").values_list("candidate_id", flat=True))
    return in_display_order(item_ids, recorded)


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

    study_id, low_water = study.id, study.queue_low_water
    transaction.on_commit(lambda: loop_notify_judgment(study_id=study_id, queue_low_water=low_water))
    return Assignment.objects.get(comparison_id=comparison_id, annotator=annotator)


# --- study set-up -------------------------------------------------------------------

# Which status each status may move to from the study page (the admin can do anything).
STUDY_STATUS_MOVES = {
    Study.Status.DRAFT: (Study.Status.ACTIVE, Study.Status.CLOSED),
    Study.Status.ACTIVE: (Study.Status.PAUSED, Study.Status.CLOSED),
    Study.Status.PAUSED: (Study.Status.ACTIVE, Study.Status.CLOSED),
    Study.Status.CLOSED: (Study.Status.ACTIVE,),
}


@transaction.atomic
def study_status_set(*, study: Study, status: str, by: AbstractBaseUser) -> Study:
    """Start, pause, close (or reopen) a study.

    Only an active study hands out comparisons (``assignment_lease_next``
    refuses the others). Pausing or closing also ends the leases held at that
    moment, so their comparisons go back to the queue; an answer already on
    its way is still kept, since the work was done. Setting the status a
    study already has changes nothing.
    """
    locked = Study.objects.select_for_update().get(pk=study.pk)
    if status == locked.status:
        return locked
    if status not in STUDY_STATUS_MOVES.get(locked.status, ()):
        raise AnnotationError(f"A {locked.get_status_display().lower()} study cannot be set to {status!r} from here.")
    locked.status = status
    locked.save(update_fields=["status", "updated_at"])
    if status != Study.Status.ACTIVE:
        Assignment.objects.filter(study=locked, status=Assignment.Status.ACTIVE).update(expires_at=timezone.now())
        leases_expire(study_id=locked.id)
    import logging

    logging.getLogger(__name__).info("study %s set to %s by user %s", locked.pk, status, by.pk)
    return locked


@transaction.atomic
def membership_add_by_username(*, study: Study, username: str, role: str, by: AbstractBaseUser) -> Membership:
    """Give an existing account a role in the study (annotator or researcher).

    Re-adding a member changes their role; a researcher cannot take away
    their own researcher role here, so a study always keeps one.
    """
    if role not in Membership.Role.values:
        raise AnnotationError(f"Unknown role {role!r}.")
    user = get_user_model().objects.filter(username=username.strip()).first()
    if user is None:
        raise AnnotationError(f"There is no account with the username “{username.strip()}”.")
    if user.pk == by.pk and role != Membership.Role.RESEARCHER:
        raise AnnotationError("You cannot change your own role.")
    membership, created = Membership.objects.get_or_create(
        study=study, user=user, defaults={"role": role, "entry": {"via": "added", "by": by.pk}}
    )
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def study_invite_rotate(*, study: Study) -> Study:
    """Give the study a new invite token; the old link stops working at once.

    People who already joined keep their membership.
    """
    from annotation.models import new_invite_token

    study.invite_token = new_invite_token()
    study.save(update_fields=["invite_token", "updated_at"])
    return study
