"""A browser-like HTTP client for one simulated annotator.

It keeps a cookie jar, reads CSRF tokens from the pages, logs in at
``/accounts/login/``, opens ``/s/<slug>/annotate/`` and answers by posting to
``/s/<slug>/annotate/submit/`` with ``HX-Request: true``, reading the next
comparison from the ``#comparison`` partial that comes back. Nothing is added to
the pages for its sake: it reads them the way a person reads the screen.
"""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

_COMPARISON_ID = re.compile(r'id="comparison"[^>]*?data-comparison-id="(\d*)"', re.S)
_CSRF = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')
EMPTY_TEXT = "There is nothing waiting for you right now"
BUDGET_TEXT = "This study has all the judgments it needs"
CLOSED_TEXT = "This study is not open"


class SimulationError(RuntimeError):
    """A simulated annotator cannot go on (e.g. it cannot log in)."""


@dataclass(frozen=True)
class PageState:
    """What the annotate page or ``#comparison`` partial shows."""

    kind: str  # "comparison", "empty", "budget", "closed" or "unknown"
    comparison_id: int | None = None
    csrf: str = ""
    status: int = 200


def page_state(html: str, status: int = 200) -> PageState:
    """Read the ``#comparison`` section the way a person reads the screen."""
    csrf_match = _CSRF.search(html)
    csrf = csrf_match.group(1) if csrf_match else ""
    id_match = _COMPARISON_ID.search(html)
    if id_match and id_match.group(1):
        return PageState("comparison", int(id_match.group(1)), csrf, status)
    if CLOSED_TEXT in html or "study_closed" in html:
        return PageState("closed", None, csrf, status)
    if BUDGET_TEXT in html:
        return PageState("budget", None, csrf, status)
    if EMPTY_TEXT in html:
        return PageState("empty", None, csrf, status)
    return PageState("unknown", None, csrf, status)


class HttpAnnotator:
    """One browser-like session: a cookie jar, CSRF tokens from the pages, htmx posts."""

    def __init__(self, *, base_url: str, slug: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.slug = slug
        self.timeout = timeout
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def _request(self, path: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, str, str]:
        url = self.base_url + path
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(url, data=body, headers=headers or {})
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return response.status, response.geturl(), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            # 400 carries the refused answer's message and a still-answerable comparison.
            return exc.code, exc.geturl(), exc.read().decode("utf-8", "replace")

    def _post_headers(self, referer: str) -> dict[str, str]:
        return {"Referer": self.base_url + referer, "Origin": self.base_url}

    def login(self, username: str, password: str) -> None:
        """Log in through the login form; :class:`SimulationError` when that fails."""
        status, _, html = self._request("/accounts/login/")
        match = _CSRF.search(html)
        if status != 200 or not match:
            raise SimulationError(f"login page for {username!r} gave HTTP {status} without a CSRF token")
        status, final_url, _ = self._request(
            "/accounts/login/",
            {"csrfmiddlewaretoken": match.group(1), "username": username, "password": password, "next": ""},
            self._post_headers("/accounts/login/"),
        )
        if status != 200 or "/accounts/login/" in final_url:
            raise SimulationError(f"could not log in as {username!r} (HTTP {status}, ended at {final_url})")

    def annotate_page(self) -> PageState:
        """Open the study's annotate page."""
        status, _, html = self._request(f"/s/{self.slug}/annotate/")
        return page_state(html, status)

    def submit(self, *, comparison_id: int, choice: str, csrf: str, time_on_task_ms: int) -> PageState:
        """Answer a comparison as the page's htmx form does; the reply is the next one."""
        headers = self._post_headers(f"/s/{self.slug}/annotate/")
        headers.update({"HX-Request": "true", "HX-Target": "comparison"})
        status, _, html = self._request(
            f"/s/{self.slug}/annotate/submit/",
            {
                "csrfmiddlewaretoken": csrf,
                "comparison_id": str(comparison_id),
                "time_on_task_ms": str(time_on_task_ms),
                "choice": choice,
            },
            headers,
        )
        return page_state(html, status)
