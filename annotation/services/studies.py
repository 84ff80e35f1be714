"""Setting studies up: creation, settings, status, members and invite links (joining
through them is ``annotation.services.crowd``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from annotation import loop
from annotation.models import Assignment, Judgment, Membership, Study, new_invite_token
from annotation.services.errors import AnnotationError
from annotation.services.leasing import leases_expire
from annotation.services.webhooks import event_emit

logger = logging.getLogger(__name__)

SLUG_MAX = Study._meta.get_field("slug").max_length


@transaction.atomic
def study_create(
    *, name: str, slug: str | None = None, created_by: AbstractBaseUser | None = None, **fields: Any
) -> Study:
    """Create a study with a unique slug, and make its creator a researcher.

    The slug is ``slug`` (or ``name``) slugified; if a study already has it, the
    first free ``-2``, ``-3``, ... suffix is used, so the returned study's slug may
    differ from the one asked for. Other ``Study`` fields pass through ``fields``.
    """
    base = slugify(slug or name)[:SLUG_MAX].strip("-") or "study"
    candidate, suffix = base, 1
    while Study.objects.filter(slug=candidate).exists():
        suffix += 1
        tail = f"-{suffix}"
        candidate = f"{base[: SLUG_MAX - len(tail)].rstrip('-')}{tail}"
    study = Study.objects.create(name=name, slug=candidate, created_by=created_by, **fields)
    if created_by is not None:
        Membership.objects.create(user=created_by, study=study, role=Membership.Role.RESEARCHER)
    return study


# What a researcher may set on a study (the rest is bookkeeping of the loop).
STUDY_SETTINGS = (
    "name", "guidelines", "language", "mode", "list_size", "allow_tie", "allow_both_bad", "ask_strength",
    "ask_rationale", "aspects", "allow_skip", "blind", "highlight_diff", "strategy", "strategy_params", "model_type",
    "model_params", "features", "overlap", "budget", "gold_rate", "gold_min_accuracy", "annotator_quota",
    "completion_code", "completion_url", "lease_seconds", "queue_low_water", "queue_target", "evaluation_rate",
    "review_rules", "review_confidence", "amend_seconds", "feedback_tags", "tag_spans", "allow_rewrite",
)  # fmt: skip
# These shape the comparisons themselves: fixed once anyone has answered one.
STUDY_SETTINGS_LOCKED_AFTER_JUDGMENTS = ("mode", "list_size")


def _settings_apply(study: Study, changes: dict) -> None:
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
    draft = Study(name=name, slug="draft")
    _settings_apply(draft, settings)
    values = {field: getattr(draft, field) for field in settings}
    return study_create(name=name, created_by=created_by, **values)


def study_shape_problems(*, study_id: int, changes: Mapping[str, Any]) -> dict[str, list[str]]:
    """What ``changes`` may not change about a stored study, one message per field.

    The comparison mode and list size are fixed once the study has judgments: its
    queue and answers are made of comparisons of that shape. The settings page, the
    API and the Django admin all ask here, so none of them can reshape a study
    the others would refuse. Empty for a study without judgments (or not yet saved).
    """
    stored = Study.objects.filter(pk=study_id).values(*STUDY_SETTINGS_LOCKED_AFTER_JUDGMENTS).first()
    if stored is None or not Judgment.objects.filter(study_id=study_id).exists():
        return {}
    return {
        name: ["Fixed once the study has judgments."]
        for name in STUDY_SETTINGS_LOCKED_AFTER_JUDGMENTS
        if name in changes and changes[name] != stored[name]
    }


@transaction.atomic
def study_settings_update(*, study: Study, changes: dict) -> Study:
    """Change a study's settings; all or nothing, with a message per bad field.

    The comparison mode and list size are refused once the study has
    judgments (:func:`study_shape_problems`). A new ``features`` choice asks
    the loop to embed the candidates again, in the background, as after an
    import."""
    locked = Study.objects.select_for_update(no_key=True).get(pk=study.pk)
    frozen = study_shape_problems(study_id=locked.pk, changes=changes)
    if frozen:
        raise ValidationError(frozen)
    features_before = locked.features
    _settings_apply(locked, changes)
    locked.save()
    if locked.features != features_before:
        transaction.on_commit(lambda: loop.get().candidates_added(study_id=locked.pk))
    locked.member_role = getattr(study, "member_role", None)
    return locked


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
    locked = Study.objects.select_for_update(no_key=True).get(pk=study.pk)
    if status == locked.status:
        return locked
    if status not in STUDY_STATUS_MOVES.get(locked.status, ()):
        raise AnnotationError(f"A {locked.get_status_display().lower()} study cannot be set to {status!r} from here.")
    locked.status = status
    locked.save(update_fields=["status", "updated_at"])
    if status != Study.Status.ACTIVE:
        Assignment.objects.filter(study=locked, status=Assignment.Status.ACTIVE).update(expires_at=timezone.now())
        leases_expire(study_id=locked.id)
    logger.info("study %s set to %s by user %s", locked.pk, status, by.pk)
    if status == Study.Status.CLOSED:
        event_emit(study_id=locked.pk, event="study.closed", data={"closed_at": timezone.now()})
    return locked


@transaction.atomic
def membership_add_by_username(*, study: Study, username: str, role: str, by: AbstractBaseUser) -> Membership:
    """Give an existing account a role in the study (annotator, reviewer or researcher).

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
    study.invite_token = new_invite_token()
    study.save(update_fields=["invite_token", "updated_at"])
    return study
