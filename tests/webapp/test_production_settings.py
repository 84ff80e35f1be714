"""Production settings that hang together: one switch, ``PREFLOOP_HTTPS``, turns the
HTTPS redirect, Secure-only cookies and HSTS on or off together; the
``X-Forwarded-Proto`` of a TLS proxy counts only from the proxies named in
``PREFLOOP_TRUSTED_PROXIES`` (the same list the client address trusts); the
``Server-Timing`` header is for development and benchmarks only; and the docker
deployment passes ``manage.py check --deploy`` without a warning."""

from __future__ import annotations

import os
import re
import runpy
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[-?])(?P<arg>[^}]*))?\}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def docker_env(secret_key: str) -> dict[str, str]:
    """The web service's environment in docker/compose.yaml, with every
    ``${NAME:-default}`` at its default and ``SECRET_KEY`` and ``MINIO_ROOT_PASSWORD``
    set as the compose file asks."""
    given = {"SECRET_KEY": secret_key, "MINIO_ROOT_PASSWORD": "object-store-password-for-the-test"}

    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in given:
            return given[name]
        assert op == "-", f"{name} has no default in compose.yaml and the test does not set it"
        return arg

    environment = _compose()["services"]["web"]["environment"]
    return {name: _VARIABLE.sub(substitute, str(value)) for name, value in environment.items()}


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment without the test run's settings, and no .env file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SECRET_KEY", "PREFLOOP_", "SECURE_"))}
    env.update(PREFLOOP_ENV_FILE=str(tmp_path / "no.env"), PREFLOOP_VAR_DIR=str(tmp_path / "var"))
    return env


def _settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env_vars: str) -> dict[str, Any]:
    """webapp/settings.py run afresh under exactly these variables (Django's own settings untouched)."""
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in {**_clean_env(tmp_path), **env_vars}.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "webapp" / "settings.py"))


def test_check_deploy_is_clean_under_the_docker_environment(tmp_path: Path):
    """As in the image: static files collected (production URLs name hashed files), then the check."""
    env = {**_clean_env(tmp_path), **docker_env(secrets.token_urlsafe(50)), "STATIC_ROOT": str(tmp_path / "static")}
    for command in (["collectstatic", "--noinput", "-v0"], ["check", "--deploy"]):
        result = subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_docker_puts_gunicorn_behind_the_tls_proxy_it_trusts():
    compose = _compose()
    services = compose["services"]
    assert "ports" not in services["web"], "gunicorn is reachable only through the proxy"
    assert any(str(port).endswith(":443") for port in services["proxy"]["ports"])
    proxy_address = services["proxy"]["networks"]["default"]["ipv4_address"]
    env = docker_env("k" * 50)
    assert env["PREFLOOP_TRUSTED_PROXIES"] == _VARIABLE.sub(lambda m: m["arg"], proxy_address)
    assert env.get("PREFLOOP_HTTPS", "true") == "true" and env.get("PREFLOOP_SERVER_TIMING", "false") == "false"
    assert (ROOT / "docker" / services["proxy"]["volumes"][0].split(":")[0]).exists(), "the Caddyfile is mounted"
    for name in ("worker", "embed-worker", "generate-worker", "web"):
        assert services[name]["environment"]["PREFLOOP_TRUSTED_PROXIES"] == env["PREFLOOP_TRUSTED_PROXIES"]


def test_production_is_https_with_secure_cookies_hsts_and_the_redirect_together(monkeypatch, tmp_path: Path):
    on = _settings(monkeypatch, tmp_path, DEBUG="false", SECRET_KEY=secrets.token_urlsafe(50))
    assert on["SECURE_SSL_REDIRECT"] and on["SESSION_COOKIE_SECURE"] and on["CSRF_COOKIE_SECURE"]
    assert on["SECURE_HSTS_SECONDS"] == 31536000
    assert on.get("SECURE_PROXY_SSL_HEADER") is None, "no proxy named: X-Forwarded-Proto is nobody's word"
    assert on["PREFLOOP_SERVER_TIMING"] is False
    assert "webapp.middleware.ServerTimingMiddleware" in on["MIDDLEWARE"]  # present, and switched off at start-up


def test_plain_http_turns_off_the_redirect_the_secure_cookies_and_hsts_together(monkeypatch, tmp_path: Path):
    off = _settings(monkeypatch, tmp_path, DEBUG="false", SECRET_KEY=secrets.token_urlsafe(50), PREFLOOP_HTTPS="false")
    assert not off["SECURE_SSL_REDIRECT"] and not off["SESSION_COOKIE_SECURE"] and not off["CSRF_COOKIE_SECURE"]
    assert off["SECURE_HSTS_SECONDS"] == 0


def test_a_named_proxy_makes_its_forwarded_proto_count(monkeypatch, tmp_path: Path):
    behind = _settings(
        monkeypatch, tmp_path, DEBUG="false", SECRET_KEY=secrets.token_urlsafe(50), PREFLOOP_TRUSTED_PROXIES="10.0.0.2"
    )
    assert behind["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    development = _settings(monkeypatch, tmp_path, DEBUG="true")
    assert development["PREFLOOP_SERVER_TIMING"] is True and not development["SECURE_SSL_REDIRECT"]


@pytest.mark.django_db
def test_forwarded_proto_counts_only_from_a_trusted_proxy(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.PREFLOOP_TRUSTED_PROXIES = ["10.0.0.2"]
    from_proxy = Client(REMOTE_ADDR="10.0.0.2").get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert from_proxy.status_code == 200
    spoofed = Client(REMOTE_ADDR="203.0.113.5").get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert spoofed.status_code == 301 and spoofed["Location"].startswith("https://")
    plain = Client(REMOTE_ADDR="10.0.0.2").get("/accounts/login/")
    assert plain.status_code == 301, "the proxy's plain-HTTP request is redirected too"


@pytest.mark.django_db
@pytest.mark.parametrize("enabled", [True, False])
def test_server_timing_only_when_enabled(settings, enabled: bool):
    settings.PREFLOOP_SERVER_TIMING = enabled
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert ("Server-Timing" in response.headers) is enabled
    if enabled:
        assert re.fullmatch(r"app;dur=\d+\.\d", response["Server-Timing"])


def test_docker_web_processes_share_one_cache_for_the_rate_limits(monkeypatch, tmp_path: Path):
    """The token endpoint's rate limit and the crowd entry limit are counted in
    the cache; gunicorn's workers (and web hosts) must share it, or each process
    counts its own and every limit is multiplied by their number."""
    docker = _settings(monkeypatch, tmp_path, **docker_env(secrets.token_urlsafe(50)))
    assert docker["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert docker["CACHES"]["default"]["LOCATION"].startswith("redis://redis:6379/")
    assert docker["CACHES"]["default"]["LOCATION"] != docker["CELERY_BROKER_URL"], "not the broker's database"
    development = _settings(monkeypatch, tmp_path, DEBUG="true")
    assert development["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


@pytest.mark.parametrize(
    ("backend", "warned"),
    [
        ("django.core.cache.backends.locmem.LocMemCache", True),
        ("django.core.cache.backends.dummy.DummyCache", True),
        ("django.core.cache.backends.redis.RedisCache", False),
    ],
)
def test_check_deploy_warns_about_a_cache_each_process_keeps_to_itself(settings, backend: str, warned: bool):
    from django.core.checks import run_checks

    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": "redis://127.0.0.1:6379/4"}}
    ids = {message.id for message in run_checks(include_deployment_checks=True)}
    assert ("annotation.W001" in ids) is warned
    assert "annotation.W001" not in {message.id for message in run_checks()}, "a deployment check only"
