"""Project middleware."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse

from webapp.client_ip import is_trusted_proxy


class ServerTimingMiddleware:
    """Add ``Server-Timing: app;dur=<ms>``: the time Django spent on the request.

    Browsers show it in their network panel and expose it to the page's
    Resource Timing entries, which is how benchmarks/annotator_ui.py splits a
    slow answer into server time and everything else. A duration is still a
    timing side channel for anyone, so it is sent only where
    ``settings.PREFLOOP_SERVER_TIMING`` asks for it (development, benchmarks);
    elsewhere the middleware takes itself out at start-up.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if not settings.PREFLOOP_SERVER_TIMING:
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        response.headers.setdefault("Server-Timing", f"app;dur={elapsed_ms:.1f}")
        return response


class ContentSecurityPolicyMiddleware:
    """Send ``settings.PREFLOOP_CSP`` as the Content-Security-Policy of every response.

    Annotators read model output and imported text from anywhere, so the pages
    allow no inline script or style at all: a ``<script>`` or ``onerror=`` that
    slipped past escaping would not run. Django's admin works under it too
    (tests/e2e/test_csp_browser.py), so no path gets another policy. A
    response that already carries the header keeps it; an empty setting sends
    none.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = settings.PREFLOOP_CSP

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy:
            response.headers.setdefault("Content-Security-Policy", self.policy)
        return response


class ForwardedProtoMiddleware:
    """Drop ``X-Forwarded-Proto`` unless a trusted proxy sent the request.

    Django's ``SECURE_PROXY_SSL_HEADER`` believes the header from whoever sends
    it, so a client that reaches gunicorn past the proxy could call a plain
    HTTP request https (and dodge the redirect). The proxies are those of
    ``PREFLOOP_TRUSTED_PROXIES``, the same list that decides whose
    ``X-Forwarded-For`` names the client (``webapp/client_ip.py``).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "HTTP_X_FORWARDED_PROTO" in request.META and not is_trusted_proxy(request.META.get("REMOTE_ADDR", "")):
            del request.META["HTTP_X_FORWARDED_PROTO"]
        return self.get_response(request)
