"""With DEBUG off the app refuses to start on a secret key that is not secret:
missing, the placeholder from ``.env.example`` (pseudonymised exports are keyed
by it, so anyone could link them back to users), a known demo value, or one
that Django's ``check --deploy`` calls weak (security.W009). The message says
how to make a good one."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from webapp.secret_key import PLACEHOLDER_KEYS, secret_key_problem

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = secrets.token_urlsafe(50)


def _env_example_key() -> str:
    match = re.search(r"^SECRET_KEY=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    assert match, ".env.example shows a SECRET_KEY line"
    return match.group(1).strip()


def test_the_env_example_placeholder_is_a_known_placeholder():
    assert _env_example_key() in PLACEHOLDER_KEYS


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        ("", "not set"),
        ("change-me-to-a-long-random-string", "placeholder"),
        ("dev-only-insecure-key-do-not-use-in-production", "placeholder"),
        ("x" * 60, "weak"),  # long, but four unique characters at most
        ("abcdefghij" * 4, "weak"),  # 40 characters
        ("django-insecure-" + GOOD_KEY, "weak"),  # startproject's development key
    ],
)
def test_keys_that_are_not_secret_are_named_with_a_way_to_make_one(key: str, complaint: str):
    problem = secret_key_problem(key)
    assert problem is not None and complaint in problem
    assert "secrets.token_urlsafe(50)" in problem


def test_a_random_key_of_fifty_characters_is_fine():
    assert secret_key_problem(GOOD_KEY) is None


def _settings_load(tmp_path: Path, **env_vars: str) -> subprocess.CompletedProcess:
    """Load the settings in a fresh interpreter with only these variables (no .env)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    env.update(PREFLOOP_ENV_FILE=str(tmp_path / "no.env"), PREFLOOP_VAR_DIR=str(tmp_path / "var"), **env_vars)
    code = "import django; django.setup(); from django.conf import settings; print(len(settings.SECRET_KEY))"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "webapp.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_refuse_the_env_example_placeholder(tmp_path: Path):
    refused = _settings_load(tmp_path, DEBUG="false", SECRET_KEY=_env_example_key())
    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr and "placeholder" in refused.stderr
    assert "secrets.token_urlsafe(50)" in refused.stderr
    weak = _settings_load(tmp_path, DEBUG="false", SECRET_KEY="my-own-but-short-key")
    assert weak.returncode != 0 and "weak" in weak.stderr


def test_production_settings_start_with_a_random_key_and_development_with_any(tmp_path: Path):
    good = _settings_load(tmp_path, DEBUG="false", SECRET_KEY=GOOD_KEY)
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == str(len(GOOD_KEY))
    development = _settings_load(tmp_path, DEBUG="true", SECRET_KEY=_env_example_key())
    assert development.returncode == 0, development.stderr
