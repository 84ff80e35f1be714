"""Every main page works under the strict Content-Security-Policy: the header is
sent, and the browser reports no violation while the page loads, its htmx parts
refresh and an annotator answers."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import ImportJob, Membership
from tests.e2e.helpers import NEW_COMPARISON, Visitor, log_in, member, study_with_prompts
from tests.factories import UserFactory, study_with_queue

pytestmark = [pytest.mark.e2e]


def _htmx_refresh(page, target: str, url: str) -> None:
    """Swap ``target`` through htmx now (what its poll does every few seconds)."""
    page.evaluate(
        """([target, url]) => new Promise(done => {
          document.body.addEventListener("htmx:afterSettle", () => done(), {once: true});
          htmx.ajax("GET", url, {target, swap: "outerHTML"});
        })""",
        [target, url],
    )


def test_main_pages_load_under_the_policy_without_violations(live_server, transactional_db, browser, artifacts_dir):
    pairwise = study_with_prompts(
        {
            "Which reply is kinder?": ["Thank you, that helps.", "Whatever.", "Sure, here you go."],
            "Which summary is right?": ["The cat sat.", "A dog ran.", "Nothing happened."],
        },
        name="Pairwise CSP",
        completion_code="CSP123",
    )
    listwise = study_with_queue(n_prompts=2, n_candidates=4, name="Ranking CSP", mode="listwise", list_size=3)
    annotator = member(pairwise, "csp-annotator")
    Membership.objects.create(user=annotator, study=listwise, role=Membership.Role.ANNOTATOR)
    researcher = member(pairwise, "csp-researcher", Membership.Role.RESEARCHER)
    job = ImportJob.objects.create(
        study=pairwise, format="csv", file_path="/nowhere.csv", original_name="more.csv", created_by=researcher
    )

    visitor = Visitor(browser, viewport={"width": 1280, "height": 900})
    visitor.visit(live_server.url + reverse("login"))
    visitor.visit(live_server.url + reverse("login") + "?next=/nowhere/", status=200)

    # The annotator: home, pairwise (answering swaps the next comparison in), listwise.
    annotate = reverse("annotate", args=[pairwise.slug])
    log_in(visitor.page, live_server, annotator, annotate)
    visitor.assert_clean("login form")
    visitor.visit(live_server.url + reverse("home"))
    visitor.visit(live_server.url + annotate)
    assert visitor.page.locator("#comparison").count() == 1
    shown = visitor.page.get_attribute("#comparison", "data-comparison-id")
    visitor.page.get_by_role("button", name="A is better").click()
    visitor.page.wait_for_function(NEW_COMPARISON, arg=shown, timeout=10_000)
    visitor.assert_clean("after an answer")
    # Styles apply: the stylesheet's button style, not the browser's default.
    button = visitor.page.get_by_role("button", name="A is better")
    assert button.evaluate("el => getComputedStyle(el).borderRadius") not in ("", "0px")
    visitor.page.screenshot(path=str(artifacts_dir / "csp-annotate.png"), full_page=True)
    visitor.visit(live_server.url + reverse("annotate", args=[listwise.slug]))
    assert visitor.page.locator("#comparison").count() == 1
    visitor.close()

    # The researcher: home, the study page with its dashboard (refreshed by htmx),
    # exports and import form, settings, a new study, an import job.
    visitor = Visitor(browser, viewport={"width": 1280, "height": 900})
    detail = reverse("study_detail", args=[pairwise.slug])
    log_in(visitor.page, live_server, researcher, detail)
    visitor.visit(live_server.url + reverse("home"))
    visitor.visit(live_server.url + detail)
    assert visitor.page.locator("#dashboard").count() == 1
    assert visitor.page.locator("#export-links").count() == 1
    _htmx_refresh(visitor.page, "#dashboard", reverse("study_dashboard", args=[pairwise.slug]))
    visitor.assert_clean("after a dashboard refresh")
    visitor.page.locator("#dashboard").screenshot(path=str(artifacts_dir / "csp-dashboard.png"))
    visitor.visit(live_server.url + reverse("study_settings", args=[pairwise.slug]))
    visitor.visit(live_server.url + reverse("study_new"))
    visitor.visit(live_server.url + reverse("import_job_detail", args=[pairwise.slug, job.pk]))
    visitor.visit(live_server.url + "/no-such-page/", status=404)
    visitor.close()

    # A crowd participant's join link lands on the annotate page.
    visitor = Visitor(browser, viewport={"width": 390, "height": 844})
    join = reverse("join", args=[pairwise.invite_token])
    visitor.visit(live_server.url + join + "?PROLIFIC_PID=5f1e2d3c4b5a69788796a5b4&STUDY_ID=s1&SESSION_ID=x1")
    assert visitor.page.url == live_server.url + annotate
    visitor.visit(live_server.url + reverse("join", args=["not-a-token"]), status=404)
    visitor.close()


def test_the_admin_works_under_its_policy(live_server, transactional_db, browser):
    """Django's admin needs no relaxation: its index, a list, a change form and
    the add-user form load under the strict policy without violations."""
    study = study_with_queue(n_prompts=1, n_candidates=2, name="Admin CSP")
    staff = UserFactory(username="csp-staff", is_staff=True, is_superuser=True)
    visitor = Visitor(browser, viewport={"width": 1280, "height": 900})
    admin_index = reverse("admin:index")
    log_in(visitor.page, live_server, staff, admin_index)
    for url in (
        admin_index,
        reverse("admin:annotation_study_changelist"),
        reverse("admin:annotation_study_change", args=[study.pk]),
        reverse("admin:auth_user_add"),
    ):
        visitor.visit(live_server.url + url)
    visitor.close()
