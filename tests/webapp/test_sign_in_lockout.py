"""Password guessing is stopped on the login page and the API token endpoint alike."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import PASSWORD, UserFactory
from webapp.client_ip import ClientRateThrottle

LIMIT = 3


@pytest.fixture(autouse=True)
def small_limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT


def _login(client, username: str, password: str, ip: str = "203.0.113.5", forwarded: str | None = None):
    extra = {"REMOTE_ADDR": ip}
    if forwarded:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


@pytest.mark.django_db
def test_an_account_is_locked_after_repeated_wrong_passwords_even_with_the_right_one(client) -> None:
    user = UserFactory(username="target")
    for _ in range(LIMIT - 1):
        assert _login(client, "target", "wrong").status_code == 200  # the form again, with its error
    assert _login(client, "target", "wrong").status_code == 429, "the last allowed failure locks"
    locked = _login(client, "target", PASSWORD)
    assert locked.status_code == 429
    assert b"Too many sign-in attempts" in locked.content
    # From another address too: the account itself is paused.
    assert _login(client, "target", PASSWORD, ip="198.51.100.20").status_code == 429
    assert "_auth_user_id" not in client.session and user.pk


@pytest.mark.django_db
def test_a_guessing_client_is_locked_out_whatever_account_it_tries(client) -> None:
    UserFactory(username="victim")
    for k in range(LIMIT):
        _login(client, f"someone{k}", "guess")
    assert _login(client, "victim", PASSWORD).status_code == 429


@pytest.mark.django_db
def test_a_forged_forwarded_header_does_not_reset_the_count(client, settings) -> None:
    settings.PREFLOOP_TRUSTED_PROXIES = []
    for k in range(LIMIT):
        _login(client, f"someone{k}", "guess", forwarded=f"192.0.2.{k}")
    assert _login(client, "anyone", "guess", forwarded="192.0.2.99").status_code == 429


@pytest.mark.django_db
def test_a_successful_sign_in_clears_earlier_failures(client) -> None:
    UserFactory(username="forgetful")
    for _ in range(LIMIT - 1):
        _login(client, "forgetful", "wrong")
    assert _login(client, "forgetful", PASSWORD).status_code == 302
    client.logout()
    _login(client, "forgetful", "wrong")
    assert _login(client, "forgetful", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_the_token_endpoint_shares_the_lockout() -> None:
    UserFactory(username="robot")
    api = APIClient(REMOTE_ADDR="203.0.113.9")
    url = reverse("api_token")
    assert api.post(url, {"username": "robot", "password": PASSWORD}).status_code == 200
    for _ in range(LIMIT - 1):
        assert api.post(url, {"username": "robot", "password": "wrong"}).status_code == 400
    assert api.post(url, {"username": "robot", "password": "wrong"}).status_code == 429
    refused = api.post(url, {"username": "robot", "password": PASSWORD})
    assert refused.status_code == 429
    assert "token" not in refused.json() and "Too many failed sign-ins" in refused.json()["detail"]


@pytest.mark.django_db
def test_the_token_rate_limit_counts_per_client_not_per_forwarded_header(settings, monkeypatch) -> None:
    settings.AXES_ENABLED = False  # the rate limit alone
    monkeypatch.setattr(ClientRateThrottle, "THROTTLE_RATES", {"anon": "3/minute"})
    UserFactory(username="robot")
    api = APIClient(REMOTE_ADDR="203.0.113.9")
    url = reverse("api_token")
    codes = [
        api.post(url, {"username": "robot", "password": "wrong"}, HTTP_X_FORWARDED_FOR=f"192.0.2.{k}").status_code
        for k in range(5)
    ]
    assert codes[:3] == [400, 400, 400] and codes[3:] == [429, 429]
