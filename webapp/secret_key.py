"""Whether a production ``SECRET_KEY`` is a secret.

The key signs sessions and password-reset links, and pseudonymised exports are
an HMAC keyed by it (``annotation/exports/rows.py``): with a key anyone can
read, anyone holding a pseudonymised file can tell which user is behind each
pseudonym. So with DEBUG off the settings refuse, instead of starting with, a
key that is missing, the placeholder that ``.env.example`` shows, another value
published in this repository, or one that Django's ``check --deploy`` calls
weak (security.W009: under 50 characters, under 5 distinct ones, or
``startproject``'s ``django-insecure-`` prefix).
"""

from __future__ import annotations

from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)

__all__ = ["DEVELOPMENT_KEY", "PLACEHOLDER_KEYS", "secret_key_problem"]

# The key settings use when DEBUG is on and none is set.
DEVELOPMENT_KEY = "dev-only-insecure-key-do-not-use-in-production"
# Values published in this repository (.env.example, settings, the Dockerfile's build step).
PLACEHOLDER_KEYS = frozenset({"change-me-to-a-long-random-string", DEVELOPMENT_KEY, "collectstatic-only"})

_HOW = "Generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"


def secret_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a production ``SECRET_KEY``, with how to make one;
    None when it can."""
    if not key:
        return f"SECRET_KEY is not set. Set it in the environment or .env (or DEBUG=true for development). {_HOW}"
    if key in PLACEHOLDER_KEYS:
        return f"SECRET_KEY is a placeholder published with prefloop (.env.example), not a secret. {_HOW}"
    if (
        len(key) < SECRET_KEY_MIN_LENGTH
        or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or key.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        return (
            f"SECRET_KEY is weak: Django's check --deploy wants at least {SECRET_KEY_MIN_LENGTH} characters, "
            f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} of them different, and no {SECRET_KEY_INSECURE_PREFIX!r} "
            f"prefix. {_HOW}"
        )
    return None
