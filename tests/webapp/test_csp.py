"""The Content-Security-Policy: every response carries the strict policy, and the
HTML the app renders has nothing that policy would block (inline scripts and
styles, style attributes, event-handler attributes, javascript: URLs)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from annotation.models import ImportJob, Membership
from tests.factories import UserFactory, study_with_queue

pytestmark = pytest.mark.django_db

DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


class InlineFinder(HTMLParser):
    """Collects what a policy without 'unsafe-inline' blocks in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src") and names.get("type") not in ("application/json", "text/template"):
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs:
            if name == "style":
                self.found.append(f"style attribute on <{tag}>")
            if name.startswith("on"):
                self.found.append(f"{name} handler on <{tag}>")
            if name.startswith("hx-on") or (name == "hx-vals" and (value or "").lstrip().startswith("js:")):
                self.found.append(f"{name} (needs eval) on <{tag}>")
            url_attribute = name in ("href", "src", "action", "formaction")
            if url_attribute and (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"javascript: URL in {name} on <{tag}>")


def assert_strict(response, where: str) -> None:
    policy = response.headers.get("Content-Security-Policy")
    assert policy, f"{where}: no Content-Security-Policy"
    assert policy == django_settings.PREFLOOP_CSP
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "unsafe-hashes" not in policy
    directives = dict(part.strip().split(None, 1) for part in policy.split(";") if part.strip())
    for directive, value in DIRECTIVES.items():
        assert directives.get(directive) == value, (where, directive, directives.get(directive))
    if response.get("Content-Type", "").startswith("text/html") and not response.streaming:
        finder = InlineFinder()
        finder.feed(response.content.decode())
        assert finder.found == [], (where, finder.found)


def test_the_policy_is_strict_and_covers_every_kind_of_resource():
    policy = django_settings.PREFLOOP_CSP
    assert "unsafe" not in policy and "*" not in policy and "http" not in policy
    assert "img-src 'self' data:" in policy


def test_every_html_page_carries_the_policy_and_nothing_it_would_block(client_for, settings):
    pairwise = study_with_queue(n_prompts=2, n_candidates=3, name="Pairwise")
    listwise = study_with_queue(n_prompts=2, n_candidates=4, name="Ranked", mode="listwise", list_size=3)
    annotator = UserFactory(username="ann")
    researcher = UserFactory(username="res")
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    for study in (pairwise, listwise):
        Membership.objects.create(user=annotator, study=study, role=Membership.Role.ANNOTATOR)
        Membership.objects.create(user=researcher, study=study, role=Membership.Role.RESEARCHER)
    job = ImportJob.objects.create(study=pairwise, format="csv", file_path="/x.csv", original_name="x.csv")
    anonymous = Client()
    as_annotator, as_researcher, as_staff = client_for(annotator), client_for(researcher), client_for(staff)
    slug = pairwise.slug
    pages = [
        (anonymous, reverse("login"), 200),
        (anonymous, reverse("home"), 302),
        (anonymous, reverse("join", args=[pairwise.invite_token]), 302),
        (anonymous, "/no-such-page/", 404),
        (as_annotator, reverse("home"), 200),
        (as_annotator, reverse("annotate", args=[slug]), 200),
        (as_annotator, reverse("annotate", args=[listwise.slug]), 200),
        (as_annotator, reverse("study_detail", args=[slug]), 404),
        (as_researcher, reverse("home"), 200),
        (as_researcher, reverse("study_detail", args=[slug]), 200),
        (as_researcher, reverse("study_settings", args=[slug]), 200),
        (as_researcher, reverse("study_new"), 200),
        (as_researcher, reverse("import_job_detail", args=[slug, job.pk]), 200),
        (as_researcher, reverse("study_export", args=[slug, "dpo.jsonl"]), 200),
        (as_staff, reverse("admin:index"), 200),
        (as_staff, reverse("admin:annotation_study_change", args=[pairwise.pk]), 200),
    ]
    for client, url, status in pages:
        response = client.get(url)
        assert response.status_code == status, (url, response.status_code)
        assert_strict(response, url)
    # htmx partials carry it too.
    dashboard = as_researcher.get(reverse("study_dashboard", args=[slug]), headers={"HX-Request": "true"})
    assert dashboard.status_code == 200
    assert_strict(dashboard, "dashboard partial")
    # The join link's own pages: signed in as someone else, a participant id in use, too many entries.
    join = reverse("join", args=[pairwise.invite_token])
    entry = {"PROLIFIC_PID": "abc", "STUDY_ID": "s", "SESSION_ID": "one"}
    confirm = as_researcher.get(join, entry)
    assert confirm.status_code == 200 and b"Sign out and continue" in confirm.content
    assert_strict(confirm, "join page asking to sign out")
    assert Client().get(join, entry).status_code == 302
    in_use = Client().get(join, {**entry, "SESSION_ID": "two"})
    assert in_use.status_code == 403
    assert_strict(in_use, "participant id in use")
    settings.PREFLOOP_CROWD_ENTRY_LIMIT = 1
    too_many = Client().get(join, {**entry, "PROLIFIC_PID": "def"})
    assert too_many.status_code == 429
    assert_strict(too_many, "too many entries")
    # A closed study's join page (an error page of its own).
    pairwise.status = pairwise.Status.CLOSED
    pairwise.save(update_fields=["status"])
    closed = anonymous.get(reverse("join", args=[pairwise.invite_token]) + "?PROLIFIC_PID=abc")
    assert closed.status_code == 400
    assert_strict(closed, "closed study's join page")


def test_the_api_answers_carry_the_policy_too():
    response = Client().get("/api/v1/")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == django_settings.PREFLOOP_CSP


def test_the_inline_finder_sees_what_the_policy_blocks():
    finder = InlineFinder()
    finder.feed(
        '<script>alert(1)</script><script src="/a.js"></script><style>p{}</style><p style="color:red" onclick="x()">'
        '<a href="javascript:alert(1)">x</a><div hx-on:click="x()" hx-vals=\'js:{a: 1}\'></div>'
    )
    assert finder.found == [
        "inline <script>",
        "<style> element",
        "style attribute on <p>",
        "onclick handler on <p>",
        "javascript: URL in href on <a>",
        "hx-on:click (needs eval) on <div>",
        "hx-vals (needs eval) on <div>",
    ]
