"""Annotators on the annotate page, making the requests a browser makes.

What a browser does per answer (templates/annotation/_comparison.html,
static/js/annotate.js, htmx 2): the answer form posts (``hx-post`` to
``/s/<slug>/annotate/submit/``, urlencoded: the CSRF token, ``comparison_id``,
``time_on_task_ms``, the fields the form holds, and the pressed button's
``choice``; headers ``HX-Request``, ``HX-Trigger: answer-form``, ``HX-Target:
comparison``, ``HX-Current-URL``, the session and CSRF cookies, ``Origin``).
That one request is the whole cycle: its reply is the ``#comparison`` partial
with the next comparison and, in ``<template id="comparison-ahead">``, the one
after it, leased ahead. When an answer goes out annotate.js shows the ahead
comparison at once (the annotator's think time starts then), and the page
sends one request at a time (``hx-sync="closest main:queue all"``): the next
answer goes out when both the annotator has thought and the previous reply has
come. The answer then says which comparison the page shows (header
``X-Prefloop-Showing``), and a reply for that one carries only the parts around
it (progress, undo bar, the one leased after it); one showing another
comparison (or a 400 with the refused form) replaces it.
With nothing to show the page says "nothing waiting" and offers "Check again"
(a full page load), which these clients follow after 0.5 s.

Each client signs in once by a session of its own made in the database (what
the login form would leave; the password hashing is not what is measured),
then loads the annotate page (a full GET, as a browser does first).
"""

from __future__ import annotations

import http.client
import random
import re
import time
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode, urlsplit

from benchmarks.reliability.load import Answer, Crowd, _choose, send

AHEAD_MARK = '<template id="comparison-ahead">'
NOTHING_WAITING = "There is nothing waiting for you right now"


def sign_in(usernames: list[str]) -> list[str]:
    """A session key for each user, as django.contrib.auth.login stores it."""
    from django.contrib.auth import (  # noqa: PLC0415
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore  # noqa: PLC0415

    users = {u.username: u for u in get_user_model().objects.filter(username__in=usernames)}
    keys = []
    for name in usernames:
        user = users[name]
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        keys.append(session.session_key)
    return keys


@dataclass
class Shown:
    """One comparison as the page holds it."""

    comparison_id: int
    candidates: list[dict]  # {"position": 0.., "text": ...} for _choose
    fields: list[tuple[str, str]]  # the answer form's fields, as the browser would send them


class _PartParser(HTMLParser):
    """The first ``#comparison`` of a piece of HTML: its id, the answer form's
    fields, the candidates' shown text, and whether the empty state says
    "nothing waiting"."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.comparison_id: str | None = None
        self.fields: list[tuple[str, str]] = []
        self.candidates: dict[str, list[str]] = {}
        self._in_form = False
        self._card: str | None = None
        self._text_depth = 0  # >0 inside a candidate's rendered view
        self._textarea: str | None = None
        self._select: str | None = None
        self._select_value: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section" and a.get("id") == "comparison" and self.comparison_id is None:
            self.comparison_id = a.get("data-comparison-id", "")
        elif tag == "form" and a.get("id") == "answer-form":
            self._in_form = True
        elif tag == "article" and "candidate" in a.get("class", "").split():
            self._card = a.get("data-card", "")
            self.candidates.setdefault(self._card, [])
        elif self._card is not None and tag == "div" and (self._text_depth or "rendered-view" in a.get("class", "")):
            self._text_depth += 1
        if not self._in_form:
            return
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind not in ("submit", "button", "image", "file"):
                self.fields.append((a["name"], a.get("value", "")))
        elif tag == "textarea" and a.get("name"):
            self._textarea = a["name"]
            self.fields.append((a["name"], ""))
        elif tag == "select" and a.get("name"):
            self._select, self._select_value = a["name"], None
        elif tag == "option" and self._select is not None and (self._select_value is None or "selected" in a):
            self._select_value = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in_form:
            self._in_form = False
        elif tag == "article":
            self._card = None
            self._text_depth = 0
        elif tag == "div" and self._text_depth:
            self._text_depth -= 1
        elif tag == "textarea":
            self._textarea = None
        elif tag == "select" and self._select is not None:
            self.fields.append((self._select, self._select_value or ""))
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._card is not None and self._text_depth:
            self.candidates[self._card].append(data)
        if self._textarea is not None and self.fields:
            name, value = self.fields[-1]
            self.fields[-1] = (name, value + data)


def parse_comparison(html: str) -> tuple[Shown | None, Shown | None, bool]:
    """(the comparison shown, the one leased ahead, "nothing waiting" said)
    from an annotate page or a ``#comparison`` partial."""
    here, _, ahead = html.partition(AHEAD_MARK)
    return _shown(here), _shown(ahead) if ahead else None, NOTHING_WAITING in here


def _shown(html: str) -> Shown | None:
    parser = _PartParser()
    parser.feed(html)
    parser.close()
    if not parser.comparison_id:
        return None
    candidates = [
        {"position": position, "text": "".join(parser.candidates[card]).strip()}
        for position, card in enumerate(sorted(parser.candidates))
    ]
    return Shown(int(parser.comparison_id), candidates, parser.fields)


_UNDO_JUDGMENT = re.compile(r'name="judgment_id" value="(\d+)"')


class _Browser:
    """One annotator's browser: a kept-alive connection and its cookies."""

    def __init__(self, url: str, session_key: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.cookies = {"sessionid": session_key}
        self.conn: http.client.HTTPConnection | None = None
        self.last_used = 0.0

    def request(self, method: str, path: str, *, form: list[tuple[str, str]] | None = None, headers=None):
        """(status, body text), or (-1, the error's name) when the connection failed."""
        sent = {
            "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            **(headers or {}),
        }
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded; charset=UTF-8"
            sent["Origin"] = self.origin
        try:
            self.conn, response, raw = send(
                lambda: http.client.HTTPConnection(self.host, self.port, timeout=120),
                self.conn,
                method,
                path,
                body,
                sent,
                idle=time.monotonic() - self.last_used,
            )
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return -1, type(exc).__name__
        finally:
            self.last_used = time.monotonic()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return response.status, raw.decode("utf-8", "replace")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class HtmxCrowd(Crowd):
    """:class:`Crowd` on the annotate page instead of the API: ``tokens`` are
    session keys, and ``annotators`` the user ids in the same order (a reply
    names the judgment only when it offers its undo; the rest are looked up
    afterwards, see :meth:`resolve_judgments`)."""

    annotators: list[int] = field(default_factory=list)
    page_loads: list[tuple[float, float]] = field(default_factory=list)  # (ended at, ms)
    shown_ahead: int = 0  # answers after which the next comparison was already on the page
    shown_after_reply: int = 0  # … and after which the annotator waited for the reply

    def _page(self, browser: _Browser, page: str) -> tuple[int, Any, float]:
        began = time.monotonic()
        status, html = browser.request("GET", page)
        ended = time.monotonic()
        if status == 200:
            with self._lock:
                self.page_loads.append((ended - self.started_at, (ended - began) * 1000))
        return status, html, ended

    def _client(self, k: int, token: str) -> None:
        rng = random.Random(self.seed * 1000 + k)
        browser = _Browser(self.url, token)
        page = f"/s/{self.slug}/annotate/"
        submit = f"/s/{self.slug}/annotate/submit/"
        hx_headers = {
            "HX-Request": "true",
            "HX-Trigger": "answer-form",
            "HX-Target": "comparison",
            "HX-Current-URL": self.url + page,
            "Referer": self.url + page,
        }
        current: Shown | None = None
        ahead: Shown | None = None
        shown_at = 0.0
        idle_since: float | None = None
        waiting = False
        reload_page = True
        try:
            while not self.stop.is_set() and self.given() < self.target:
                if reload_page:
                    status, html, shown_at = self._page(browser, page)
                    if status != 200:
                        self._error(_describe_html("GET annotate", status, html))
                        time.sleep(0.2)
                        continue
                    current, ahead, waiting = parse_comparison(html)
                    reload_page = False
                if current is None:
                    if not waiting:
                        return  # all done (budget or quota), or the study closed
                    idle_since = idle_since or shown_at
                    if time.monotonic() - idle_since > 60:
                        self._error("GET annotate: no comparison for 60 s")
                        self._empty_spell(idle_since, time.monotonic())
                        return
                    time.sleep(0.5)  # then "Check again"
                    reload_page = True
                    continue
                if idle_since is not None:
                    self._empty_spell(idle_since, shown_at)
                    idle_since = None
                # The annotator reads and answers; the page sends when the previous reply is in.
                think = self.think_seconds(rng)
                if self.stop.wait(max(0.0, shown_at + think - time.monotonic())):
                    break
                sent = current
                choice = _choose(sent.candidates, rng)
                # The time on task as the API clients report it (the page would send its own clock's).
                on_task = str(rng.randint(1000, 9000))
                form = [(n, on_task if n == "time_on_task_ms" else v) for n, v in [*sent.fields, ("choice", choice)]]
                began = time.monotonic()
                shown_next = ahead  # annotate.js shows the ahead comparison as the answer goes out
                if shown_next is not None:
                    shown_at = began
                headers = hx_headers
                if shown_next is not None:  # as annotate.js says it (X-Prefloop-Showing)
                    headers = {**hx_headers, "X-Prefloop-Showing": str(shown_next.comparison_id)}
                status, html = browser.request("POST", submit, form=form, headers=headers)
                replied = time.monotonic()
                if status == 200:
                    reply, reply_ahead, waiting = parse_comparison(html)
                    judgment = _UNDO_JUDGMENT.search(html)
                    answered = Answer(
                        sent.comparison_id, int(judgment.group(1)) if judgment else -1, 201 if judgment else 200, k
                    )
                    self._answered(answered, began, None, (replied - began) * 1000)
                    if shown_next is not None and reply is not None and reply.comparison_id == shown_next.comparison_id:
                        # The reply agrees with what is on screen: only the parts around it are new.
                        current, ahead = shown_next, reply_ahead
                        with self._lock:
                            self.shown_ahead += 1
                    else:
                        current, ahead, shown_at = reply, reply_ahead, replied
                        with self._lock:
                            self.shown_after_reply += 1
                        if current is None and not waiting:
                            return
                    continue
                if status == 400:
                    # Refused: the page shows the server's form with its message.
                    self._error(_describe_html("POST submit", status, html))
                    current, ahead, waiting = parse_comparison(html)
                    shown_at = replied
                    continue
                # A failed request: annotate.js puts the answered comparison back; answer it again.
                self._error(_describe_html("POST submit", status, html))
                current, shown_at = sent, replied
                time.sleep(0.2)
            if idle_since is not None:
                self._empty_spell(idle_since, time.monotonic())
        finally:
            browser.close()

    def resolve_judgments(self, study_id: int) -> None:
        """Fill in the judgment of each answer whose reply did not name it: the
        one its annotator gave the comparison (an answer the database does not
        hold keeps a negative id, unique, and so counts as lost)."""
        from annotation.models import Judgment  # noqa: PLC0415

        unknown = [i for i, a in enumerate(self.answers) if a.judgment_id < 0]
        if not unknown:
            return
        wanted = {(self.annotators[self.answers[i].client], self.answers[i].comparison_id) for i in unknown}
        rows = Judgment.objects.filter(
            study_id=study_id, comparison_id__in={c for _, c in wanted}, annotator_id__in={a for a, _ in wanted}
        ).values_list("annotator_id", "comparison_id", "id")
        found = {(a, c): j for a, c, j in rows}
        for n, i in enumerate(unknown, start=1):
            a = self.answers[i]
            self.answers[i] = Answer(
                a.comparison_id, found.get((self.annotators[a.client], a.comparison_id), -n), a.status, a.client
            )


def _describe_html(request: str, status: int, body: str) -> str:
    if status < 0:
        return f"{request} connection: {body}"
    message = re.search(r'class="alert alert-error server-error"[^>]*>(.*?)</p>', body, re.S)
    detail = unescape(message.group(1)).strip() if message else re.sub(r"\s+", " ", body[:120])
    return f"{request} {status}: {detail[:160]}"
