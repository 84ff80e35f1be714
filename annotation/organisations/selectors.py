"""Reads about organisations, scoped by who is asking.

Every organisation page and endpoint resolves its organisation through
:func:`access_organisation_for_member` or :func:`access_organisation_for_owner`:
outsiders get the same 404 as for an organisation that does not exist.
Whether someone may see a study is ``annotation.selectors.access``'s rule, which
reads the organisation role these models record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import Case, Count, QuerySet, When
from django.http import Http404

from annotation.models import Membership, Study
from annotation.organisations.models import Organisation, OrganisationMember, OrganisationStudy

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    AnyUser = AbstractBaseUser | AnonymousUser


def _organisation_with_role_or_404(*, user: AnyUser, slug: str) -> Organisation:
    """The organisation ``slug`` with ``member_role`` set to the user's role in it (None outside it)."""
    if not user.is_authenticated:
        raise Http404("No such organisation.")
    organisation = Organisation.objects.filter(slug=slug).first()
    if organisation is None:
        raise Http404("No such organisation.")
    organisation.member_role = (
        OrganisationMember.objects.filter(organisation=organisation, user=user).values_list("role", flat=True).first()
    )
    return organisation


def access_organisation_for_member(*, user: AnyUser, slug: str) -> Organisation:
    """The organisation ``slug`` if ``user`` is in it (or a superuser), else Http404."""
    organisation = _organisation_with_role_or_404(user=user, slug=slug)
    if organisation.member_role is None and not user.is_superuser:
        raise Http404("No such organisation.")
    return organisation


def access_organisation_for_owner(*, user: AnyUser, slug: str) -> Organisation:
    """The organisation ``slug`` if ``user`` owns it (or is a superuser), else Http404."""
    organisation = _organisation_with_role_or_404(user=user, slug=slug)
    if organisation.member_role != OrganisationMember.Role.OWNER and not user.is_superuser:
        raise Http404("No such organisation.")
    return organisation


def owns_organisation(*, user: AnyUser, organisation: Organisation) -> bool:
    """Whether ``user`` manages ``organisation`` (from an ``access_organisation_*`` selector)."""
    return organisation.member_role == OrganisationMember.Role.OWNER or user.is_superuser


def organisation_for_invite(*, token: str) -> Organisation:
    """The organisation whose invite link carries ``token``; Http404 when none does (any more)."""
    organisation = Organisation.objects.filter(invite_token=token).first()
    if organisation is None:
        raise Http404("This invite link is not valid (any more).")
    return organisation


@dataclass(frozen=True)
class OrganisationEntry:
    organisation: Organisation
    role: str  # an OrganisationMember.Role value, or "admin" for a superuser outside it
    n_members: int
    n_studies: int


def organisations_for_user(*, user: AnyUser) -> list[OrganisationEntry]:
    """The organisations ``user`` belongs to with their role (every one for a superuser), in two queries."""
    if not user.is_authenticated:
        return []
    roles = dict(OrganisationMember.objects.filter(user=user).values_list("organisation_id", "role"))
    organisations = Organisation.objects.annotate(
        n_members=Count("members", distinct=True), n_studies=Count("study_links", distinct=True)
    )
    if not user.is_superuser:
        organisations = organisations.filter(id__in=list(roles))
    return [
        OrganisationEntry(organisation=o, role=roles.get(o.id, "admin"), n_members=o.n_members, n_studies=o.n_studies)
        for o in organisations.order_by("name", "id")
    ]


def organisations_for_study_creation(*, user: AnyUser) -> QuerySet[Organisation]:
    """The organisations ``user`` may create studies in: those they belong to (all for a superuser)."""
    if not user.is_authenticated:
        return Organisation.objects.none()
    if user.is_superuser:
        return Organisation.objects.order_by("name", "id")
    return Organisation.objects.filter(members__user=user).order_by("name", "id")


def organisation_members(*, organisation: Organisation) -> QuerySet[OrganisationMember]:
    """The members of ``organisation``, owners first, with their accounts (one query)."""
    return (
        OrganisationMember.objects.filter(organisation=organisation)
        .select_related("user")
        .order_by(Case(When(role=OrganisationMember.Role.OWNER, then=0), default=1), "user__username")
    )


@dataclass(frozen=True)
class OrganisationStudyEntry:
    study: Study
    your_role: str | None  # the viewer's Membership.Role in the study, None when not a member
    can_open: bool  # whether the study's page (researchers) or task (annotators) opens for the viewer


def organisation_studies(*, user: AnyUser, organisation: Organisation) -> list[OrganisationStudyEntry]:
    """The studies of ``organisation`` (from an ``access_organisation_*`` selector) as its
    members see them listed, with the viewer's role in each; two queries."""
    studies = list(Study.objects.filter(organisation_link__organisation=organisation).order_by("name", "id"))
    roles = dict(
        Membership.objects.filter(user=user, study__in=[s.id for s in studies]).values_list("study_id", "role")
    )
    manages_all = owns_organisation(user=user, organisation=organisation)
    return [
        OrganisationStudyEntry(study=s, your_role=roles.get(s.id), can_open=manages_all or s.id in roles)
        for s in studies
    ]


def study_organisation(*, study_id: int) -> Organisation | None:
    """The organisation study ``study_id`` belongs to, or None."""
    link = OrganisationStudy.objects.filter(study_id=study_id).select_related("organisation").first()
    return link.organisation if link else None
