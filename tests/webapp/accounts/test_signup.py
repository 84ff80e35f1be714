"""Sign-up through an invite link, email confirmation, sign-in and password reset,
through the real pages (allauth's views, prefloop's adapter and sign-in page)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.urls import reverse

from annotation.models import Membership, Study
from annotation.organisations.models import OrganisationMember
from annotation.organisations.services import organisation_create
from tests.factories import PASSWORD, StudyFactory, UserFactory
from webapp.accounts.models import InvitedSignup

NEW_PASSWORD = "a long new passphrase 42"


def _signup(client, next_url: str, username: str = "newcomer", email: str = "newcomer@example.org"):
    data = {"username": username, "email": email, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    return client.post(reverse("account_signup"), {**data, "next": next_url})


def _confirmation_link() -> str:
    body = mail.outbox[-1].body
    return re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^\s]+/)", body).group(1)


@pytest.mark.django_db
def test_an_invited_visitor_sees_the_study_and_can_sign_up_confirm_and_land_in_it(client) -> None:
    study = StudyFactory(name="Helpfulness 2025")
    join = reverse("join", args=[study.invite_token])
    landing = client.get(join, follow=True)
    page = landing.content.decode()
    assert "Helpfulness 2025" in page and "Create an account" in page and 'id="id_username"' in page
    signup_page = client.get(reverse("account_signup") + "?next=" + join).content.decode()
    assert "Helpfulness 2025" in signup_page and 'name="next"' in signup_page

    response = _signup(client, join)
    assert response.status_code == 302 and response["Location"] == reverse("account_email_verification_sent")
    user = InvitedSignup.objects.get().user
    assert not Membership.objects.filter(user=user).exists(), "nobody joins before the address is confirmed"
    assert "_auth_user_id" not in client.session
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["newcomer@example.org"]

    link = _confirmation_link()
    assert client.get(link).status_code == 200  # a page with a button: a mail scanner's GET confirms nothing
    assert not EmailAddress.objects.get(user=user).verified
    confirmed = client.post(link, follow=True)
    assert EmailAddress.objects.get(user=user).verified
    assert Membership.objects.get(user=user, study=study).role == Membership.Role.ANNOTATOR
    assert confirmed.redirect_chain[-1][0] == reverse("annotate", args=[study.slug])
    assert int(client.session["_auth_user_id"]) == user.pk


@pytest.mark.django_db
def test_confirming_in_another_browser_still_joins_and_signing_in_works(client, django_user_model) -> None:
    study = StudyFactory()
    _signup(client, reverse("join", args=[study.invite_token]))
    user = django_user_model.objects.get(username="newcomer")
    other = type(client)()
    other.post(_confirmation_link())
    assert Membership.objects.filter(user=user, study=study).exists()
    signed_in = other.post(reverse("login"), {"username": "newcomer@example.org", "password": NEW_PASSWORD})
    assert signed_in.status_code == 302, "the email address works as the username"


@pytest.mark.django_db
def test_an_unconfirmed_account_cannot_sign_in_and_is_told_why(client, django_user_model) -> None:
    study = StudyFactory()
    _signup(client, reverse("join", args=[study.invite_token]))
    refused = type(client)().post(reverse("login"), {"username": "newcomer", "password": NEW_PASSWORD})
    assert refused.status_code == 200
    assert "Confirm your email address first" in refused.content.decode()
    assert len(mail.outbox) == 2, "a new link was sent"
    type(client)().post(reverse("login"), {"username": "newcomer", "password": NEW_PASSWORD})
    assert len(mail.outbox) == 2, "not again within minutes"


@pytest.mark.django_db
def test_sign_up_is_closed_without_a_valid_invite(client, django_user_model) -> None:
    closed = client.get(reverse("account_signup"))
    assert "Sign-up is by invitation" in closed.content.decode()
    _signup(client, "/")
    _signup(client, "/join/not-a-token/", username="guesser", email="g@example.org")
    study = StudyFactory(status=Study.Status.CLOSED)
    _signup(client, reverse("join", args=[study.invite_token]), username="late", email="late@example.org")
    _signup(client, "https://evil.example/join/x/", username="far", email="far@example.org")
    assert not django_user_model.objects.exists()
    assert not mail.outbox


@pytest.mark.django_db
def test_a_replaced_invite_link_lapses_between_sign_up_and_confirmation(client) -> None:
    study = StudyFactory()
    _signup(client, reverse("join", args=[study.invite_token]))
    study.invite_token = "replaced"
    study.save(update_fields=["invite_token"])
    client.post(_confirmation_link())
    assert not Membership.objects.filter(study=study).exists()
    assert InvitedSignup.objects.get().accepted_at is None


@pytest.mark.django_db
def test_an_organisation_invite_signs_up_a_member(client) -> None:
    owner = UserFactory(username="owner", is_staff=True)
    organisation = organisation_create(name="Acme Research", created_by=owner)
    join = reverse("organisation_join", args=[organisation.invite_token])
    landing = client.get(join, follow=True).content.decode()
    assert "Acme Research" in landing and "join an organisation" in landing
    _signup(client, join)
    client.post(_confirmation_link(), follow=True)
    member = OrganisationMember.objects.get(organisation=organisation, user__username="newcomer")
    assert member.role == OrganisationMember.Role.MEMBER
    assert client.get(reverse("organisation_detail", args=[organisation.slug])).status_code == 200


@pytest.mark.django_db
def test_accounts_without_an_address_sign_in_as_before(client) -> None:
    """The demo's accounts, and those researchers and the admin make, have no email on record."""
    UserFactory(username="annotator")
    response = client.post(reverse("login"), {"username": "annotator", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get("/accounts/login/").status_code == 200


@pytest.mark.django_db
def test_password_reset_sends_a_link_that_sets_a_new_password(client) -> None:
    user = UserFactory(username="forgetful", email="forgetful@example.org")
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    sent = client.post(reverse("account_reset_password"), {"email": "forgetful@example.org"})
    assert sent.status_code == 302 and len(mail.outbox) == 1
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/[^\s]+/)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    action = form.redirect_chain[-1][0] if form.redirect_chain else link
    done = client.post(action, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


@pytest.mark.django_db
def test_a_reset_for_an_unknown_address_says_nothing_of_it(client) -> None:
    response = client.post(reverse("account_reset_password"), {"email": "nobody@example.org"}, follow=True)
    assert response.status_code == 200
    assert not any("nobody@example.org" in m.body and "reset/key" in m.body for m in mail.outbox)


def _settings_with(env: dict[str, str]) -> dict:
    """The email settings ``webapp.settings`` makes from ``env`` (a fresh interpreter)."""
    code = (
        "import json, webapp.settings as s; print(json.dumps({k: getattr(s, k) for k in "
        "('EMAIL_BACKEND', 'EMAIL_HOST', 'EMAIL_PORT', 'EMAIL_HOST_USER', 'EMAIL_HOST_PASSWORD', "
        "'EMAIL_USE_TLS', 'EMAIL_USE_SSL', 'DEFAULT_FROM_EMAIL')}))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFLOOP_EMAIL", "DEFAULT_FROM"))}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**base, "DEBUG": "true", **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_email_goes_to_the_console_by_default_and_over_smtp_when_configured() -> None:
    default = _settings_with({"PREFLOOP_ENV_FILE": "/nonexistent"})
    assert default["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    smtp = _settings_with(
        {
            "PREFLOOP_ENV_FILE": "/nonexistent",
            "PREFLOOP_EMAIL_URL": "smtp+tls://robot:s%40cret@mail.example.org:587",
            "DEFAULT_FROM_EMAIL": "Lab <lab@example.org>",
        }
    )
    assert smtp == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "mail.example.org",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "robot",
        "EMAIL_HOST_PASSWORD": "s@cret",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
        "DEFAULT_FROM_EMAIL": "Lab <lab@example.org>",
    }
