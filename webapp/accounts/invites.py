"""Invite links as the accounts pages see them: which study or organisation a
``next`` address invites to, and whether the invitation still stands.

Sign-up is open only to a visitor holding a valid invite (``adapters``); the
address they were sent to (``/join/<token>/`` or ``/orgs/join/<token>/``) travels
as ``next`` through the sign-in and sign-up pages and single sign-on, and is where
they land once signed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.http import HttpRequest
from django.urls import Resolver404, resolve

from annotation.models import Study
from annotation.organisations.models import Organisation

STUDY = "study"
ORGANISATION = "organisation"


@dataclass(frozen=True)
class Invite:
    kind: str  # STUDY or ORGANISATION
    token: str
    name: str  # the study's or organisation's name, as the invitation page shows it
    study: Study | None = None
    organisation: Organisation | None = None
    open: bool = True  # False for a closed study: the page says so, and sign-up stays shut


def invite_from_url(url: str | None) -> Invite | None:
    """The invitation behind an invite address (a path on this site), or None when
    ``url`` is no invite address or its token is not (any more) valid."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return None  # only this site's own paths
    try:
        match = resolve(parts.path)
    except Resolver404:
        return None
    token = match.kwargs.get("token", "")
    if match.url_name == "join":
        study = Study.objects.filter(invite_token=token).first()
        if study is None:
            return None
        return Invite(kind=STUDY, token=token, name=study.name, study=study, open=study.status != Study.Status.CLOSED)
    if match.url_name == "organisation_join":
        organisation = Organisation.objects.filter(invite_token=token).first()
        if organisation is None:
            return None
        return Invite(kind=ORGANISATION, token=token, name=organisation.name, organisation=organisation)
    return None


def next_from_request(request: HttpRequest) -> str:
    """The ``next`` address a sign-in or sign-up request carries (form first, then query)."""
    return request.POST.get("next") or request.GET.get("next") or ""


def invite_from_request(request: HttpRequest) -> Invite | None:
    """The open invitation a sign-in or sign-up request carries in ``next``, or None."""
    invite = invite_from_url(next_from_request(request))
    return invite if invite is not None and invite.open else None
