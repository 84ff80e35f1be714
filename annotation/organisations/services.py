"""Writes about organisations: creating one, its members and invite link, and
putting a study in it. Keyword-only, one transaction each, domain errors
(``OrganisationError``, a message safe to show) raised."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext

from annotation.models import Membership, Study
from annotation.organisations.models import (
    Organisation,
    OrganisationMember,
    OrganisationStudy,
    new_organisation_invite_token,
)
from annotation.services.errors import AnnotationError
from annotation.services.studies import study_settings_create

SLUG_MAX = Organisation._meta.get_field("slug").max_length


class OrganisationError(AnnotationError):
    """A change to an organisation the rules do not allow; the message is safe to show."""


@transaction.atomic
def organisation_create(*, name: str, created_by: AbstractBaseUser) -> Organisation:
    """Create an organisation named ``name`` with a unique slug; its creator becomes its owner."""
    name = name.strip()
    if not name:
        raise OrganisationError(gettext("Give the organisation a name."))
    base = slugify(name)[:SLUG_MAX].strip("-") or "organisation"
    candidate, suffix = base, 1
    while Organisation.objects.filter(slug=candidate).exists():
        suffix += 1
        tail = f"-{suffix}"
        candidate = f"{base[: SLUG_MAX - len(tail)].rstrip('-')}{tail}"
    organisation = Organisation.objects.create(name=name, slug=candidate, created_by=created_by)
    OrganisationMember.objects.create(organisation=organisation, user=created_by, role=OrganisationMember.Role.OWNER)
    return organisation


@transaction.atomic
def organisation_member_add(*, organisation: Organisation, username: str, role: str) -> OrganisationMember:
    """Add the account ``username`` to ``organisation`` with ``role`` (or change its role).

    The last owner cannot be made a plain member: someone must be able to manage it.
    """
    if role not in OrganisationMember.Role.values:
        raise OrganisationError(gettext("Choose the role owner or member."))
    user = get_user_model().objects.filter(username__iexact=username.strip()).first()
    if user is None:
        raise OrganisationError(
            gettext("No account is called “%(name)s”. Send them the organisation's invite link instead.")
            % {"name": username.strip()}
        )
    member, created = OrganisationMember.objects.select_for_update().get_or_create(
        organisation=organisation, user=user, defaults={"role": role}
    )
    if not created and member.role != role:
        if member.role == OrganisationMember.Role.OWNER:
            _keep_an_owner(organisation=organisation, leaving=member)
        member.role = role
        member.save(update_fields=["role"])
    return member


def _keep_an_owner(*, organisation: Organisation, leaving: OrganisationMember) -> None:
    owners = OrganisationMember.objects.select_for_update().filter(
        organisation=organisation, role=OrganisationMember.Role.OWNER
    )
    if not owners.exclude(pk=leaving.pk).exists():
        raise OrganisationError(gettext("An organisation needs an owner: make someone else an owner first."))


@transaction.atomic
def organisation_member_remove(*, organisation: Organisation, user_id: int) -> None:
    """Take the account ``user_id`` out of ``organisation``.

    Their researcher memberships in the organisation's studies stop counting
    (the access selectors require both); their answers stay. The last owner
    cannot leave.
    """
    member = OrganisationMember.objects.select_for_update().filter(organisation=organisation, user_id=user_id).first()
    if member is None:
        raise OrganisationError(gettext("That account is not in the organisation."))
    if member.role == OrganisationMember.Role.OWNER:
        _keep_an_owner(organisation=organisation, leaving=member)
    member.delete()


@transaction.atomic
def organisation_join(*, organisation: Organisation, user: AbstractBaseUser) -> OrganisationMember:
    """Make ``user`` a member through the organisation's invite link; joining again changes nothing."""
    member, _ = OrganisationMember.objects.get_or_create(
        organisation=organisation, user=user, defaults={"role": OrganisationMember.Role.MEMBER}
    )
    return member


@transaction.atomic
def organisation_invite_rotate(*, organisation: Organisation) -> Organisation:
    """A new invite link for ``organisation``; the old one stops working."""
    organisation.invite_token = new_organisation_invite_token()
    organisation.save(update_fields=["invite_token"])
    return organisation


@transaction.atomic
def study_organisation_set(*, study: Study, organisation: Organisation | None) -> None:
    """Put ``study`` in ``organisation`` (None: in none). Who may do it is the caller's check
    (the study's manager, a member of the organisation)."""
    if organisation is None:
        OrganisationStudy.objects.filter(study=study).delete()
        return
    OrganisationStudy.objects.update_or_create(study=study, defaults={"organisation": organisation})


@dataclass(frozen=True)
class StudyMove:
    """Where a study is after a move, and its researchers outside that organisation
    (who manage it no more until they join, ``study_researchers_outside``)."""

    organisation: Organisation | None
    researchers_outside: list[str]


@transaction.atomic
def study_organisation_move(*, study: Study, organisation_slug: str | None, by: AbstractBaseUser) -> StudyMove:
    """Move a study into the organisation ``organisation_slug`` (empty or None:
    out of any), for someone who manages it (the caller's check,
    ``access_study_for_researcher``). They must belong to the organisation it
    goes to, and to take a study out of an organisation they must own that one:
    a researcher cannot take a study away from its organisation's owners. A
    superuser may do anything."""
    organisation = None
    if organisation_slug:
        organisation = Organisation.objects.filter(slug=organisation_slug).first()
        belongs = by.is_superuser or (
            organisation is not None and OrganisationMember.objects.filter(organisation=organisation, user=by).exists()
        )
        if not belongs:
            raise OrganisationError(gettext("You can only put a study in an organisation you belong to."))
    current = OrganisationStudy.objects.filter(study=study).select_related("organisation").first()
    current_org = current.organisation if current else None
    if current_org not in (None, organisation) and not by.is_superuser:
        owns = OrganisationMember.objects.filter(organisation=current_org, user=by, role=OrganisationMember.Role.OWNER)
        if not owns.exists():
            raise OrganisationError(
                gettext("Only an owner of “%(name)s” can move a study out of it.") % {"name": current_org.name}
            )
    if current_org != organisation:
        study_organisation_set(study=study, organisation=organisation)
    outside = study_researchers_outside(study=study, organisation=organisation) if organisation else []
    return StudyMove(organisation=organisation, researchers_outside=outside)


def study_researchers_outside(*, study: Study, organisation: Organisation) -> list[str]:
    """Usernames of ``study``'s researchers who are not in ``organisation`` (who would
    lose access if the study moved there)."""
    inside = OrganisationMember.objects.filter(organisation=organisation).values("user_id")
    return sorted(
        Membership.objects.filter(study=study, role=Membership.Role.RESEARCHER)
        .exclude(user_id__in=inside)
        .values_list("user__username", flat=True)
    )


@transaction.atomic
def study_create_in_organisation(
    *, organisation: Organisation, name: str, settings: dict, created_by: AbstractBaseUser
) -> Study:
    """Create a study from a name and settings (``study_settings_create``: its
    creator becomes its researcher) inside ``organisation``, all or nothing.
    The caller checked that ``created_by`` is in the organisation."""
    study = study_settings_create(name=name, settings=settings, created_by=created_by)
    study_organisation_set(study=study, organisation=organisation)
    return study
