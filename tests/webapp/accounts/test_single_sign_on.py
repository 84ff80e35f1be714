"""Single sign-on through OpenID Connect, against a real little provider on
127.0.0.1 (``oidc_provider``): discovery, authorize, token with PKCE, a signed ID
token checked against the JWKS, userinfo. Nothing of allauth is mocked."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.urls import reverse

from annotation.models import Membership
from tests.factories import StudyFactory
from tests.webapp.accounts.oidc_provider import OidcProvider, Person

CLIENT_ID, CLIENT_SECRET = "prefloop", "s3cret"


@pytest.fixture
def provider(settings) -> Iterator[OidcProvider]:
    person = Person(sub="kc-123", email="dana@example.org", preferred_username="dana")
    with OidcProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, person=person) as running:
        settings.PREFLOOP_OIDC_SERVER_URL = running.issuer
        settings.PREFLOOP_OIDC_CLIENT_ID = CLIENT_ID
        settings.PREFLOOP_OIDC_NAME = "Lab SSO"
        settings.SOCIALACCOUNT_PROVIDERS = {
            "openid_connect": {
                "APPS": [
                    {
                        "provider_id": "sso",
                        "name": "Lab SSO",
                        "client_id": CLIENT_ID,
                        "secret": CLIENT_SECRET,
                        "settings": {"server_url": running.issuer},
                    }
                ],
                "OAUTH_PKCE_ENABLED": True,
            }
        }
        yield running


def _sign_on(client, next_url: str):
    """Press the button, let the provider sign the person in, follow the callback."""
    start = client.post(reverse("openid_connect_login", args=["sso"]), {"process": "login", "next": next_url})
    assert start.status_code == 302, start.content[:500]
    authorize = start["Location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and "openid" in query["scope"][0]
    back = requests.get(authorize, allow_redirects=False, timeout=5)
    callback = urlsplit(back.headers["Location"])
    return client.get(callback.path + "?" + callback.query, follow=True)


@pytest.mark.django_db
def test_the_button_shows_only_when_a_provider_is_configured(client, settings) -> None:
    settings.PREFLOOP_OIDC_SERVER_URL = ""
    assert "Continue with" not in client.get(reverse("login")).content.decode()
    settings.PREFLOOP_OIDC_SERVER_URL = "http://127.0.0.1:9"
    settings.PREFLOOP_OIDC_CLIENT_ID = "x"
    settings.PREFLOOP_OIDC_NAME = "Lab SSO"
    assert "Continue with Lab SSO" in client.get(reverse("login")).content.decode()


@pytest.mark.django_db
def test_an_invited_person_signs_up_by_single_sign_on_and_lands_in_the_study(client, provider) -> None:
    study = StudyFactory(name="Tone study")
    join = reverse("join", args=[study.invite_token])
    landing = client.get(reverse("login") + "?next=" + join).content.decode()
    assert "Continue with Lab SSO" in landing and "Tone study" in landing
    done = _sign_on(client, join)
    assert done.redirect_chain[-1][0] == reverse("annotate", args=[study.slug])
    membership = Membership.objects.get(study=study, user__username="dana")
    assert membership.role == Membership.Role.ANNOTATOR
    assert membership.user.email == "dana@example.org"
    assert provider.token_requests == 1


@pytest.mark.django_db
def test_without_an_invite_single_sign_on_makes_no_account(client, provider, django_user_model) -> None:
    done = _sign_on(client, "/")
    assert not django_user_model.objects.filter(username="dana").exists()
    assert "_auth_user_id" not in client.session
    assert "Sign-up is by invitation" in done.content.decode()


@pytest.mark.django_db
def test_an_open_provider_lets_everyone_it_knows_in(client, provider, settings, django_user_model) -> None:
    settings.PREFLOOP_OIDC_OPEN_SIGNUP = True
    _sign_on(client, "/")
    user = django_user_model.objects.get(username="dana")
    assert int(client.session["_auth_user_id"]) == user.pk
    assert not Membership.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_a_returning_person_signs_in_to_the_same_account(client, provider, settings, django_user_model) -> None:
    settings.PREFLOOP_OIDC_OPEN_SIGNUP = True
    _sign_on(client, "/")
    first = client.session["_auth_user_id"]
    client.logout()
    settings.PREFLOOP_OIDC_OPEN_SIGNUP = False  # a linked account needs no invite
    _sign_on(client, "/")
    assert client.session["_auth_user_id"] == first
    assert django_user_model.objects.filter(username__startswith="dana").count() == 1


@pytest.mark.django_db
def test_a_forged_code_is_refused(client, provider, django_user_model) -> None:
    study = StudyFactory()
    start = client.post(
        reverse("openid_connect_login", args=["sso"]),
        {"process": "login", "next": reverse("join", args=[study.invite_token])},
    )
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    response = client.get(reverse("openid_connect_callback", args=["sso"]) + f"?code=made-up&state={state}")
    assert response.status_code == 401 and "_auth_user_id" not in client.session
    assert not django_user_model.objects.filter(username="dana").exists()
