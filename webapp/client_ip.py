"""Who is asking: the client's address, trusting forwarded headers only from our proxies.

Sign-in lockouts (django-axes) and the API token endpoint's rate limit count
attempts per client address. ``X-Forwarded-For`` is written by whoever sends the
request, so it is believed only when the request came from a proxy listed in
``PREFLOOP_TRUSTED_PROXIES``; otherwise an attacker could claim a new address on
every guess. Behind trusted proxies the client is the right-most address in the
header that is not itself a trusted proxy (each proxy appends the address it
saw, so addresses to the left of the last untrusted one are the client's own
claims).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest
from rest_framework.throttling import AnonRateThrottle


def is_trusted_proxy(address: str) -> bool:
    """Whether ``address`` is one of ``PREFLOOP_TRUSTED_PROXIES`` (an address or
    inside a network listed there)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in settings.PREFLOOP_TRUSTED_PROXIES)


def client_ip(request: HttpRequest) -> str:
    """The address of the client that sent ``request`` (see the module docstring)."""
    peer = request.META.get("REMOTE_ADDR", "") or ""
    if not is_trusted_proxy(peer):
        return peer
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    for address in reversed(forwarded):
        if not is_trusted_proxy(address):
            return address
    return forwarded[0] if forwarded else peer


class ClientRateThrottle(AnonRateThrottle):
    """DRF's anonymous rate limit, counted per :func:`client_ip` (DRF's own
    identification takes ``X-Forwarded-For`` from anyone)."""

    def get_ident(self, request: HttpRequest) -> str:
        return client_ip(request)
