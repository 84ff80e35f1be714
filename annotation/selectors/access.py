"""Who may do what: every view resolves its study through one of the ``access_*`` selectors.

So the rule "annotators see only their studies, researchers only theirs" lives
here and nowhere else: an htmx partial requested directly gets the same 404 as
the page. ``tests/annotation/test_permissions.py`` walks every route against
these rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet
from django.http import Http404

from annotation.models import Judgment, Membership, Study
from annotation.organisations.models import OrganisationMember, OrganisationStudy

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    AnyUser = AbstractBaseUser | AnonymousUser


def _study_with_role_or_404(slug: str, user: AnyUser) -> Study:
    """The study ``slug`` with ``member_role`` set to the user's membership role
    (None for non-members), ``organisation_id`` to its organisation's (None when
    it has none) and ``organisation_role`` to the user's role there (None outside
    it), in one query; Http404 when there is no such study.

    Every request in a study starts here, so the query is written out in SQL:
    the ORM compiled the same statement afresh each time, at more CPU than the
    rest of a lease."""
    study_table, membership_table = Study._meta.db_table, Membership._meta.db_table
    link_table, member_table = OrganisationStudy._meta.db_table, OrganisationMember._meta.db_table
    sql = (
        f"SELECT s.*, (SELECT m.role FROM {membership_table} m WHERE m.study_id = s.id AND m.user_id = %s"
        f" LIMIT 1) AS member_role, o.organisation_id AS organisation_id,"
        f" (SELECT om.role FROM {member_table} om WHERE om.organisation_id = o.organisation_id"
        f" AND om.user_id = %s LIMIT 1) AS organisation_role"
        f" FROM {study_table} s LEFT JOIN {link_table} o ON o.study_id = s.id WHERE s.slug = %s"
    )  # table names come from model metadata; every value is a parameter
    study = next(iter(Study.objects.raw(sql, [user.pk, user.pk, slug])), None)
    if study is None:
        raise Http404("No such study.")
    return study


def _owns_organisation_of(study: Study) -> bool:
    """Whether the user ``study`` was read for owns the organisation it belongs to."""
    return getattr(study, "organisation_role", None) == OrganisationMember.Role.OWNER


def access_study_for_annotator(*, user: AnyUser, slug: str) -> Study:
    """The study ``slug`` if ``user`` may annotate in it, else Http404.

    Any member (annotator or researcher, who may want to try the task), the
    owners of the study's organisation and superusers may annotate. An
    organisation does not restrict its studies' annotators and reviewers:
    people invited to annotate need not belong to it. Access follows membership: being staff (which
    lets a user create studies and open Django's admin) opens no study.
    Strangers get the same 404 as for a study that does not exist, so slugs
    cannot be probed.
    """
    if not user.is_authenticated:
        raise Http404("No such study.")
    study = _study_with_role_or_404(slug, user)
    if study.member_role is None and not user.is_superuser and not _owns_organisation_of(study):
        raise Http404("No such study.")
    return study


def access_study_for_researcher(*, user: AnyUser, slug: str) -> Study:
    """The study ``slug`` if ``user`` is one of its researchers (or a superuser), else Http404.

    Staff without a researcher membership are not enough: researchers see only
    their own studies (DESIGN.md §7); superusers manage everything.
    """
    return _study_if(user=user, slug=slug, allowed=manages_study)


def access_study_for_reviewer(*, user: AnyUser, slug: str) -> Study:
    """The study ``slug`` if ``user`` may review its answers (its reviewers and
    researchers, and superusers), else Http404."""
    return _study_if(user=user, slug=slug, allowed=reviews_study)


def _study_if(*, user: AnyUser, slug: str, allowed) -> Study:
    """The study ``slug`` when ``allowed(user=, study=)`` says so; Http404 otherwise, as for no such study."""
    if not user.is_authenticated:
        raise Http404("No such study.")
    study = _study_with_role_or_404(slug, user)
    if not allowed(user=user, study=study):
        raise Http404("No such study.")
    return study


def reviews_study(*, user: AnyUser, study: Study) -> bool:
    """Whether ``user`` may work the study's review queue (``study`` from an ``access_*`` selector)."""
    return study.member_role == Membership.Role.REVIEWER or manages_study(user=user, study=study)


def manages_study(*, user: AnyUser, study: Study) -> bool:
    """Whether ``user`` may see and change everything in ``study``: its researchers
    and superusers, and for a study in an organisation, the organisation's owners.
    A researcher of such a study counts only while in its organisation, so
    taking someone out of an organisation takes them out of its studies.
    ``study`` comes from an ``access_*`` selector, which set ``member_role``,
    ``organisation_id`` and ``organisation_role``."""
    if user.is_superuser or _owns_organisation_of(study):
        return True
    if study.member_role != Membership.Role.RESEARCHER:
        return False
    return study.organisation_id is None or study.organisation_role is not None


def judgments_visible(*, user: AnyUser, study: Study) -> QuerySet[Judgment]:
    """The study's judgments ``user`` may read, newest first: all of them for
    those who manage the study, their own for annotators."""
    judgments = Judgment.objects.filter(study=study).order_by("-id")
    if not manages_study(user=user, study=study):
        judgments = judgments.filter(annotator=user)
    return judgments


def user_can_create_study(*, user: AnyUser) -> bool:
    """Staff, and anyone who is a researcher in some study, may create studies
    (in no organisation or one of theirs). Members of an organisation who are
    neither create studies in it only (``annotation.organisations``)."""
    if not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return Membership.objects.filter(user=user, role=Membership.Role.RESEARCHER).exists()
