"""Crowd entry: who comes in through a study's invite link, and as whom.

A plain invite link makes a signed-in person an annotator. A link with a crowd
platform's participant id (``PROLIFIC_PID`` with ``STUDY_ID`` and
``SESSION_ID``, or ``participant`` with ``session`` for other platforms) signs
the visitor in to that participant's own account, created on first entry.
Three rules keep such links from being a way in for anyone who has one:

- **New accounts per client address are limited** (``PREFLOOP_CROWD_ENTRY_LIMIT``
  per ``PREFLOOP_CROWD_ENTRY_WINDOW_SECONDS``, counted in Django's cache per
  :func:`webapp.client_ip.client_ip`): a leaked link cannot mint accounts by
  the hundred. Returning participants are not counted.
- **A participant id is bound to the session that entered with it.** The first
  entry records its study and session ids on the membership; a later entry is
  that participant only if it carries the same ids (the platform sends the
  same link when a participant resumes), so knowing someone's id is not
  enough. A membership recorded before sessions were (no session id) is bound
  to the next entry's session.
- **A signed-in person is never replaced silently.** Someone with a password
  (staff, researchers, annotators) who follows a participant's link stays
  who they are: an annotator of this study continues as themself, anyone else
  is asked to sign out first. Only a password-less crowd participant's
  session gives way to the participant the link names.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.db import transaction
from django.utils.translation import gettext

from annotation.models import Membership, Study
from annotation.services.errors import InvalidAnswer, ParticipantInUse, StudyNotOpen, TooManyEntries

# Crowd platforms' participant ids (Prolific PIDs are 24 hex digits).
EXTERNAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Query parameters kept with a participant's membership, and the key each is kept under.
ENTRY_PARAMETERS = {"STUDY_ID": "study_id", "SESSION_ID": "session_id", "session": "session_id"}
ENTRY_VALUE_MAX = 128


@transaction.atomic
def membership_join(*, study: Study, user: AbstractBaseUser, entry: dict | None = None) -> Membership:
    """Make ``user`` an annotator of ``study`` through its invite link.

    Joining twice, or as a researcher of the study, changes nothing. A closed
    study takes no one.
    """
    if study.status == Study.Status.CLOSED:
        raise StudyNotOpen(gettext("The study “%(name)s” is closed.") % {"name": study.name})
    membership, _ = Membership.objects.get_or_create(
        study=study, user=user, defaults={"role": Membership.Role.ANNOTATOR, "entry": entry or {"via": "invite"}}
    )
    return membership


def participant_username(*, study: Study, external_id: str) -> str:
    """The username of a crowd participant's account in ``study``."""
    return f"p{study.id}-{external_id}"[:150]


def entry_slot_take(*, client: str, now: float | None = None) -> None:
    """Count one new participant account for the address ``client``.

    Raises ``TooManyEntries`` once the address has had
    ``PREFLOOP_CROWD_ENTRY_LIMIT`` of them in the current window of
    ``PREFLOOP_CROWD_ENTRY_WINDOW_SECONDS`` (fixed windows, so at most twice
    the limit across a window's edge); a limit of 0 turns counting off.
    """
    limit = settings.PREFLOOP_CROWD_ENTRY_LIMIT
    if limit <= 0:
        return
    window = max(1, settings.PREFLOOP_CROWD_ENTRY_WINDOW_SECONDS)
    now = time.time() if now is None else now
    bucket = int(now // window)
    key = f"crowd-entry:{client}:{bucket}"
    cache.add(key, 0, timeout=window * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # the entry expired between add and incr
        cache.add(key, 1, timeout=window * 2)
        count = 1
    if count > limit:
        retry_after = max(1, math.ceil((bucket + 1) * window - now))
        raise TooManyEntries(
            gettext(
                "Too many new participants have joined from your network in the last minutes. "
                "Please try again in %(seconds)d seconds."
            )
            % {"seconds": retry_after},
            retry_after=retry_after,
        )


def _bind_entry(membership: Membership, entry: dict[str, str]) -> None:
    """Check that ``entry`` comes from the session that entered as this
    participant, or record it as that session (see the module docstring)."""
    recorded = membership.entry or {}
    if not recorded.get("session_id"):
        membership.entry = {**recorded, **entry}
        membership.save(update_fields=["entry"])
        return
    if any(recorded.get(key) != entry.get(key) for key in ("study_id", "session_id")):
        raise ParticipantInUse(
            gettext(
                "This participant id is already in use in another session. "
                "Open the study from the link on the platform, in the session that started it."
            )
        )


@transaction.atomic
def participant_join(
    *,
    study: Study,
    external_id: str,
    entry: dict[str, str] | None = None,
    client: str | None = None,
    now: float | None = None,
) -> AbstractBaseUser:
    """The account of a crowd participant (e.g. a Prolific PID) in this study,
    created on first entry.

    The account belongs to this study alone and has no password: the invite
    link with the participant id and its session id (``entry["session_id"]``,
    required) is how it comes back, so a participant who reloads or returns
    later continues where they were. A new account counts against the entry
    limit of ``client`` (not counted when None). Raises ``InvalidAnswer`` for
    a malformed id or a missing session id, ``StudyNotOpen`` for a closed
    study, ``TooManyEntries`` and ``ParticipantInUse``.
    """
    entry = entry or {}
    if not EXTERNAL_ID.match(external_id or ""):
        raise InvalidAnswer(gettext("The participant id in the link is not valid."))
    if study.status == Study.Status.CLOSED:
        raise StudyNotOpen(gettext("The study “%(name)s” is closed.") % {"name": study.name})
    if not entry.get("session_id"):
        raise InvalidAnswer(
            gettext(
                "The link has no session id (SESSION_ID, or session): open the study from the link on the platform."
            )
        )
    User = get_user_model()
    username = participant_username(study=study, external_id=external_id)
    user = User.objects.filter(username=username).first()
    if user is None:
        if client is not None:
            entry_slot_take(client=client, now=now)
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
    if user.has_usable_password() or user.is_staff or user.is_superuser:
        # Not an account this link made: the participant id must not sign anyone in to it.
        raise ParticipantInUse(gettext("This participant id is already in use in another session."))
    membership, created = Membership.objects.get_or_create(
        study=study,
        user=user,
        defaults={"role": Membership.Role.ANNOTATOR, "external_id": external_id, "entry": {"via": "prolific", **entry}},
    )
    if not created:
        _bind_entry(membership, entry)
    return user


@dataclass(frozen=True)
class InviteAcceptance:
    """What following an invite link did: ``participant`` is the crowd
    participant's own account (the caller signs it in); ``needs_sign_in`` says
    the visitor must sign in and come back to the link; ``needs_sign_out`` that
    the link names a participant while someone the caller must not sign out
    silently is signed in (the caller asks them first)."""

    study: Study
    participant: AbstractBaseUser | None = None
    needs_sign_in: bool = False
    needs_sign_out: bool = False


def _is_crowd_account(user: AbstractBaseUser) -> bool:
    """A password-less participant account with no say over any study."""
    return (
        not user.has_usable_password()
        and not user.is_staff
        and not user.is_superuser
        and not Membership.objects.filter(user=user, role=Membership.Role.RESEARCHER).exists()
    )


def invite_accept(
    *,
    study: Study,
    user: AbstractBaseUser | AnonymousUser,
    params: Mapping[str, str],
    client: str | None = None,
    now: float | None = None,
) -> InviteAcceptance:
    """Follow ``study``'s invite link with the link's query ``params``, as ``user``
    from the address ``client``.

    With a crowd participant id the visitor continues as that participant (see
    the module docstring for the entry limit, the session binding and who is
    never signed out); ``STUDY_ID`` and ``SESSION_ID`` are kept with the
    membership. A signed-in user joins as an annotator; anyone else must sign in
    first. Raises ``StudyNotOpen`` for a closed study, ``InvalidAnswer`` for a
    malformed participant id or a missing session id, ``TooManyEntries`` and
    ``ParticipantInUse``.
    """
    external_id = params.get("PROLIFIC_PID", params.get("participant"))
    if external_id is not None:
        external_id = external_id.strip()
        if not EXTERNAL_ID.match(external_id):
            raise InvalidAnswer(gettext("The participant id in the link is not valid."))
        if user.is_authenticated:
            if user.get_username() == participant_username(study=study, external_id=external_id):
                membership_join(study=study, user=user)
                return InviteAcceptance(study=study, participant=user)
            if not _is_crowd_account(user):
                if Membership.objects.filter(user=user, study=study, role=Membership.Role.ANNOTATOR).exists():
                    return InviteAcceptance(study=study)  # an annotator of this study continues as themself
                return InviteAcceptance(study=study, needs_sign_out=True)
        entry = {key: params[param][:ENTRY_VALUE_MAX] for param, key in ENTRY_PARAMETERS.items() if params.get(param)}
        participant = participant_join(study=study, external_id=external_id, entry=entry, client=client, now=now)
        return InviteAcceptance(study=study, participant=participant)
    if user.is_authenticated:
        membership_join(study=study, user=user)
        return InviteAcceptance(study=study)
    return InviteAcceptance(study=study, needs_sign_in=True)
