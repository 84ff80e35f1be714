"""System checks of the deployment (``manage.py check --deploy``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register

# Caches that count per process (or not at all): a rate limit kept there is not one.
UNSHARED_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register(Tags.caches, Tags.security, deploy=True)
def shared_cache_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The limits on new crowd participants and on the API token endpoint are
    counted in the default cache: every web process must share it."""
    if settings.CACHES["default"]["BACKEND"] not in UNSHARED_CACHES:
        return []
    return [
        Warning(
            "The cache is each process's own, so the limits counted there (new crowd participants per "
            "address, API token requests per address) are multiplied by the number of web processes.",
            hint="Set CACHE_URL to a cache every web process shares, e.g. redis://host:6379/1.",
            id="annotation.W001",
        )
    ]
