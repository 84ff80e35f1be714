"""Crowd entry: invite links, Prolific-style participants, quotas and completion codes."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from annotation.models import Membership, Study
from tests.annotation.test_views import HTMX, annotate_url, comparison_id_in, open_comparison, submit_url
from tests.factories import UserFactory, study_with_queue

pytestmark = pytest.mark.django_db

PROLIFIC = {"PROLIFIC_PID": "5f1e2d3c4b5a69788796a5b4", "STUDY_ID": "st-1", "SESSION_ID": "se-9"}


def _join_url(study: Study) -> str:
    return reverse("join", args=[study.invite_token])


def test_prolific_participant_gets_an_account_for_this_study_only(client):
    study = study_with_queue(completion_code="C0DE42")
    other = study_with_queue()
    response = client.get(_join_url(study), PROLIFIC)
    assert response.status_code == 302 and response["Location"] == annotate_url(study)
    membership = Membership.objects.get(study=study, external_id=PROLIFIC["PROLIFIC_PID"])
    assert membership.role == Membership.Role.ANNOTATOR
    assert membership.entry == {"via": "prolific", "study_id": "st-1", "session_id": "se-9"}
    assert not membership.user.has_usable_password()
    assert client.get(annotate_url(study)).status_code == 200
    assert client.get(annotate_url(other)).status_code == 404
    home = client.get(reverse("home")).content.decode()
    assert study.name in home and other.name not in home


def test_returning_participant_continues_as_the_same_account(client):
    study = study_with_queue()
    client.get(_join_url(study), PROLIFIC)
    first = open_comparison(client, study)
    again = type(client)()
    again.get(_join_url(study), PROLIFIC)
    assert comparison_id_in(again.get(annotate_url(study)).content.decode()) == first
    assert get_user_model().objects.filter(memberships__study=study).count() == 1


@pytest.mark.parametrize("pid", ["", "a b", "x" * 65, "<script>"])
def test_bad_participant_ids_are_refused(client, pid):
    study = study_with_queue()
    response = client.get(_join_url(study), {"PROLIFIC_PID": pid})
    assert response.status_code == 400 and "participant id" in response.content.decode()
    assert not Membership.objects.exists()


def test_invite_link_makes_a_signed_in_user_an_annotator_and_asks_others_to_sign_in(client, client_for):
    study = study_with_queue()
    response = client.get(_join_url(study))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert _join_url(study) in response["Location"]
    user = UserFactory()
    assert client_for(user).get(_join_url(study)).status_code == 302
    assert Membership.objects.get(user=user, study=study).role == Membership.Role.ANNOTATOR


def test_unknown_or_revoked_tokens_and_closed_studies_admit_no_one(client):
    study = study_with_queue()
    old = _join_url(study)
    study.invite_token = "new-token-after-revoking"
    study.save(update_fields=["invite_token"])
    assert client.get(old, PROLIFIC).status_code == 404
    Study.objects.filter(id=study.id).update(status=Study.Status.CLOSED)
    response = client.get(_join_url(study), PROLIFIC)
    assert response.status_code == 400 and "closed" in response.content.decode()
    assert not Membership.objects.exists()


def test_quota_ends_with_the_completion_code_and_return_link(client):
    study = study_with_queue(
        annotator_quota=2,
        completion_code="C0DE42",
        completion_url="https://app.prolific.com/submissions/complete?cc=C0DE42",
    )
    client.get(_join_url(study), PROLIFIC)
    comparison_id = open_comparison(client, study)
    assert "You: <strong>0</strong> / 2 judgments" in client.get(annotate_url(study)).content.decode()
    for _ in range(2):
        html = client.post(submit_url(study), {"comparison_id": comparison_id, "choice": "a"}, **HTMX).content.decode()
        comparison_id = comparison_id_in(html)
    assert comparison_id is None
    assert "all 2 comparisons asked of you" in html
    assert '<strong class="completion-code">C0DE42</strong>' in html
    assert 'href="https://app.prolific.com/submissions/complete?cc=C0DE42"' in html
    # The quota holds on reload, and nothing more is leased.
    page = client.get(annotate_url(study)).content.decode()
    assert "C0DE42" in page and comparison_id_in(page) is None


def test_researcher_page_shows_the_invite_and_prolific_links(client_for, make_member):
    study = study_with_queue()
    researcher = make_member(study, Membership.Role.RESEARCHER)
    html = client_for(researcher).get(reverse("study_detail", args=[study.slug])).content.decode()
    assert f"http://testserver/join/{study.invite_token}/" in html
    assert "PROLIFIC_PID={{%PROLIFIC_PID%}}&amp;STUDY_ID={{%STUDY_ID%}}&amp;SESSION_ID={{%SESSION_ID%}}" in html
