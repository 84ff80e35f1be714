"""How a self-made account came to be: the invite link it signed up through."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from annotation.models import Study
from annotation.organisations.models import Organisation


class InvitedSignup(models.Model):
    """An account made through an invite link, and whether the invitation was taken up.

    The invite is taken up (the study or organisation joined) once the account's
    email address is confirmed, or at once for a single sign-on account, whose
    provider vouches for the address. The token is the one the link carried: if
    the link was replaced meanwhile, the invitation lapses.
    """

    class Kind(models.TextChoices):
        STUDY = "study", "Study"
        ORGANISATION = "organisation", "Organisation"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invited_signup")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    organisation = models.ForeignKey(Organisation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    token = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} via {self.kind} invite"
