"""Writes of the accounts app: recording the invite an account signed up through,
and taking it up once the account may sign in."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotation.organisations.services import organisation_join
from annotation.services.crowd import membership_join
from annotation.services.errors import AnnotationError
from webapp.accounts.invites import ORGANISATION, STUDY, Invite
from webapp.accounts.models import InvitedSignup

logger = logging.getLogger(__name__)


@transaction.atomic
def invited_signup_record(*, user: AbstractBaseUser, invite: Invite) -> InvitedSignup:
    """Remember that ``user`` signed up through ``invite`` (taken up later, by
    :func:`invited_signup_accept`)."""
    return InvitedSignup.objects.create(
        user=user,
        kind=InvitedSignup.Kind.STUDY if invite.kind == STUDY else InvitedSignup.Kind.ORGANISATION,
        study=invite.study,
        organisation=invite.organisation,
        token=invite.token,
    )


@transaction.atomic
def invited_signup_accept(*, user: AbstractBaseUser) -> InvitedSignup | None:
    """Take up the invitation ``user`` signed up through, once their address is
    confirmed (or at once for single sign-on): join the study as an annotator, or
    the organisation as a member.

    Nothing happens a second time, nor when the link was replaced or the study
    closed since (the invitation lapsed; the person can be invited again).
    Returns the record, or None when the account was not invited.
    """
    signup = InvitedSignup.objects.select_for_update().filter(user=user).first()
    if signup is None or signup.accepted_at is not None:
        return signup
    if signup.kind == STUDY and signup.study is not None and signup.study.invite_token == signup.token:
        try:
            membership_join(study=signup.study, user=user, entry={"via": "signup"})
        except AnnotationError:
            logger.info("invitation of %s to a closed study lapsed", user.pk)
            return signup
    elif (
        signup.kind == ORGANISATION
        and signup.organisation is not None
        and signup.organisation.invite_token == signup.token
    ):
        organisation_join(organisation=signup.organisation, user=user)
    else:
        return signup
    signup.accepted_at = timezone.now()
    signup.save(update_fields=["accepted_at"])
    return signup
