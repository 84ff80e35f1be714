"""Project middleware."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class ServerTimingMiddleware:
    """Add ``Server-Timing: app;dur=<ms>``: the time Django spent on the request.

    Browsers show it in their network panel and expose it to the page's
    Resource Timing entries, which is how benchmarks/annotator_ui.py splits a
    slow answer into server time and everything else. It reveals nothing but
    a duration.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        response.headers.setdefault("Server-Timing", f"app;dur={elapsed_ms:.1f}")
        return response
