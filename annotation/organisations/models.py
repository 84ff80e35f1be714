"""An organisation, its members with their role, and which studies belong to it.

A study belongs to at most one organisation through :class:`OrganisationStudy`
(a row keyed by the study), so ``annotation.Study`` itself is unchanged and a
study without a row behaves as it always did.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy

from annotation.models import Study


def new_organisation_invite_token() -> str:
    """An unguessable token for an organisation's invite link."""
    return secrets.token_urlsafe(18)


class Organisation(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    # Anyone holding /orgs/invite/<token>/ may join as a member (and sign up to do so).
    invite_token = models.CharField(max_length=64, unique=True, default=new_organisation_invite_token)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name", "id")

    def __str__(self) -> str:
        return self.name


class OrganisationMember(models.Model):
    class Role(models.TextChoices):
        # Manages the members and every study of the organisation.
        OWNER = "owner", gettext_lazy("Owner")
        # Sees the organisation's studies listed, creates studies in it; works in those it is a member of.
        MEMBER = "member", gettext_lazy("Member")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="organisation_members")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("organisation", "user"), name="organisation_member_unique"),
        ]
        indexes = [models.Index(fields=("user", "organisation"), name="organisation_member_user")]

    def __str__(self) -> str:
        return f"{self.user} · {self.organisation} ({self.role})"


class OrganisationStudy(models.Model):
    """That ``study`` belongs to ``organisation`` (one organisation per study)."""

    study = models.OneToOneField(Study, on_delete=models.CASCADE, primary_key=True, related_name="organisation_link")
    # An organisation with studies is not deleted by accident.
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="study_links")

    def __str__(self) -> str:
        return f"{self.study} in {self.organisation}"
