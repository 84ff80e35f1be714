"""What the annotate page does with answers that come too fast, twice, or from a
stale page (issue 13 §6): no-store pages, a visible notice for a superseded
answer, and answers too fast to have been read counted on the study page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Judgment, Membership
from annotation.services import FAST_ANSWER_MS
from annotation.views import SUPERSEDED_NOTICE
from tests.annotation.test_views import HTMX, annotate_url, answer, comparison_id_in, on_screen, open_comparison

pytestmark = pytest.mark.django_db


def test_task_pages_and_partials_are_never_cached(client_for, annotator, study):
    """Back/forward must not show an answered comparison with stale counts."""
    client = client_for(annotator)
    page = client.get(annotate_url(study))
    assert "no-store" in page["Cache-Control"]
    first = comparison_id_in(page.content.decode())
    reply = answer(client, study, first, "a")
    assert "no-store" in reply["Cache-Control"]
    judgment = Judgment.objects.get()
    undo = client.post(reverse("annotate_undo", args=[study.slug]), {"judgment_id": judgment.id}, **HTMX)
    assert "no-store" in undo["Cache-Control"]


def test_a_second_tabs_different_answer_is_refused_with_a_visible_notice(client_for, annotator, study):
    client = client_for(annotator)
    first = open_comparison(client, study)
    answer(client, study, first, "a")  # the first tab
    other_tab = answer(client, study, first, "b")  # the second tab, still showing the same comparison
    assert other_tab.status_code == 200
    assert Judgment.objects.get().choice == "a"  # the first answer stands
    html = on_screen(other_tab.content.decode())
    assert SUPERSEDED_NOTICE in html and 'class="alert alert-warning answer-notice"' in html
    assert comparison_id_in(html) not in (None, first)  # and here is the next one


def test_a_double_submit_of_the_same_answer_stays_a_silent_no_op(client_for, annotator, study):
    client = client_for(annotator)
    first = open_comparison(client, study)
    one = answer(client, study, first, "b")
    two = answer(client, study, first, "b")
    assert Judgment.objects.count() == 1
    assert SUPERSEDED_NOTICE not in two.content.decode()
    assert comparison_id_in(two.content.decode()) == comparison_id_in(one.content.decode())


def test_a_superseded_plain_form_post_says_so_after_the_redirect(client_for, annotator, study):
    client = client_for(annotator)
    first = open_comparison(client, study)
    answer(client, study, first, "a")
    response = client.post(reverse("annotate_submit", args=[study.slug]), {"comparison_id": first, "choice": "b"})
    assert response.status_code == 302
    assert SUPERSEDED_NOTICE in client.get(response["Location"]).content.decode()


def test_answers_too_fast_to_read_are_counted_and_flagged_on_the_study_page(client_for, make_member, study):
    hasty, careful = make_member(study, username="hasty"), make_member(study, username="careful")
    for user, ms in ((hasty, [17, 300, 4000]), (careful, [2500, 4000, FAST_ANSWER_MS])):
        client = client_for(user)
        for time_on_task in ms:
            comparison = open_comparison(client, study)
            answer(client, study, comparison, "a", time_on_task_ms=time_on_task)
    researcher = make_member(study, Membership.Role.RESEARCHER)
    html = client_for(researcher).get(reverse("study_detail", args=[study.slug])).content.decode()
    row = {name: html.split(f"<td>{name}</td>", 1)[1].split("</tr>", 1)[0] for name in ("hasty", "careful")}
    assert "2 too fast (answered in under 1 s)" in row["hasty"] and "Flagged" in row["hasty"]
    assert "too fast" not in row["careful"] and ">OK<" in row["careful"]
