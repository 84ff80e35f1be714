"""Crowd entry: invite links, Prolific-style participants, quotas and completion codes."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from django.urls import reverse

from annotation.models import Membership, Study
from annotation.services import ParticipantInUse, TooManyEntries, invite_accept
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


def _signed_in_as(client: Client) -> int | None:
    raw = client.session.get("_auth_user_id")
    return int(raw) if raw is not None else None


def _participants(study: Study) -> int:
    return Membership.objects.filter(study=study).exclude(external_id="").count()


# --- rate limit on new participants ----------------------------------------------------


def _entry(k: int, **extra: str) -> dict[str, str]:
    return {"PROLIFIC_PID": f"pid{k:04d}", "STUDY_ID": "st-1", "SESSION_ID": f"se-{k}", **extra}


def test_new_participants_per_client_address_are_limited_with_a_429(settings):
    settings.PREFLOOP_CROWD_ENTRY_LIMIT, settings.PREFLOOP_CROWD_ENTRY_WINDOW_SECONDS = 3, 60
    study = study_with_queue()
    for k in range(3):
        assert Client(REMOTE_ADDR="203.0.113.5").get(_join_url(study), _entry(k)).status_code == 302
    refused = Client(REMOTE_ADDR="203.0.113.5").get(_join_url(study), _entry(3))
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "Too many new participants" in refused.content.decode()
    assert _participants(study) == 3
    # Other addresses are counted apart, and a returning participant is no new account.
    assert Client(REMOTE_ADDR="198.51.100.7").get(_join_url(study), _entry(3)).status_code == 302
    again = Client(REMOTE_ADDR="203.0.113.5")
    assert again.get(_join_url(study), _entry(1)).status_code == 302
    assert _signed_in_as(again) == Membership.objects.get(study=study, external_id="pid0001").user_id
    assert _participants(study) == 4


def test_the_limit_counts_the_client_behind_trusted_proxies_only(settings):
    settings.PREFLOOP_CROWD_ENTRY_LIMIT = 2
    settings.PREFLOOP_TRUSTED_PROXIES = ["10.0.0.2"]
    study = study_with_queue()
    behind_proxy = [
        Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"192.0.2.{k}").get(_join_url(study), _entry(k))
        for k in range(4)
    ]
    assert [r.status_code for r in behind_proxy] == [302] * 4
    # A client that is no proxy cannot claim a new address for each entry.
    spoofed = [
        Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"192.0.2.{k}").get(_join_url(study), _entry(k))
        for k in range(10, 13)
    ]
    assert [r.status_code for r in spoofed] == [302, 302, 429]


def test_the_limit_starts_over_in_the_next_window(settings):
    settings.PREFLOOP_CROWD_ENTRY_LIMIT, settings.PREFLOOP_CROWD_ENTRY_WINDOW_SECONDS = 2, 60
    study = study_with_queue()

    def enter(k: int, now: float) -> None:
        invite_accept(study=study, user=AnonymousUser(), params=_entry(k), client="203.0.113.5", now=now)

    enter(0, now=1200.0)
    enter(1, now=1230.0)
    with pytest.raises(TooManyEntries) as refused:
        enter(2, now=1259.5)
    assert refused.value.retry_after == 1
    enter(2, now=1260.0)
    assert _participants(study) == 3


def test_a_limit_of_zero_turns_the_limit_off(settings):
    settings.PREFLOOP_CROWD_ENTRY_LIMIT = 0
    study = study_with_queue()
    for k in range(15):
        invite_accept(study=study, user=AnonymousUser(), params=_entry(k), client="203.0.113.5", now=5.0)
    assert _participants(study) == 15


# --- a participant id is bound to the session that entered --------------------------------


def test_a_participant_id_alone_does_not_sign_in(client):
    study = study_with_queue()
    assert client.get(_join_url(study), PROLIFIC).status_code == 302
    owner = _signed_in_as(client)
    for params in (
        {**PROLIFIC, "SESSION_ID": "someone-else"},
        {**PROLIFIC, "STUDY_ID": "another-study"},
        {"PROLIFIC_PID": PROLIFIC["PROLIFIC_PID"], "STUDY_ID": PROLIFIC["STUDY_ID"]},
        {"PROLIFIC_PID": PROLIFIC["PROLIFIC_PID"]},
    ):
        intruder = Client()
        response = intruder.get(_join_url(study), params)
        assert response.status_code in (400, 403), params
        assert _signed_in_as(intruder) is None, params
        if "SESSION_ID" in params:
            assert "already in use in another session" in response.content.decode()
        else:
            assert "SESSION_ID" in response.content.decode()
    # The session that entered is still the participant's.
    assert _signed_in_as(client) == owner
    assert Membership.objects.get(study=study, external_id=PROLIFIC["PROLIFIC_PID"]).entry == {
        "via": "prolific", "study_id": "st-1", "session_id": "se-9"
    }  # fmt: skip


def test_other_platforms_bind_the_participant_to_their_session_parameter(client):
    study = study_with_queue()
    assert client.get(_join_url(study), {"participant": "worker-7", "session": "a1"}).status_code == 302
    assert Client().get(_join_url(study), {"participant": "worker-7", "session": "a1"}).status_code == 302
    assert Client().get(_join_url(study), {"participant": "worker-7", "session": "b2"}).status_code == 403
    assert Client().get(_join_url(study), {"participant": "worker-7"}).status_code == 400


def test_a_participant_who_entered_before_sessions_were_recorded_is_bound_to_the_next_session():
    study = study_with_queue()
    invite_accept(study=study, user=AnonymousUser(), params={**PROLIFIC, "SESSION_ID": "first"}, client="x")
    Membership.objects.filter(study=study).update(entry={"via": "prolific"})  # as stored before
    invite_accept(study=study, user=AnonymousUser(), params={**PROLIFIC, "SESSION_ID": "second"}, client="x")
    with pytest.raises(ParticipantInUse):
        invite_accept(study=study, user=AnonymousUser(), params={**PROLIFIC, "SESSION_ID": "third"}, client="x")
    assert Membership.objects.get(study=study).entry["session_id"] == "second"


def test_a_participant_id_that_names_an_account_with_a_password_signs_no_one_in(client):
    study = study_with_queue()
    UserFactory(username=f"p{study.id}-{PROLIFIC['PROLIFIC_PID']}")  # made by hand, with a password
    response = client.get(_join_url(study), PROLIFIC)
    assert response.status_code == 403 and _signed_in_as(client) is None


# --- a join link never silently replaces a signed-in person --------------------------------


@pytest.mark.parametrize("kind", ["staff", "superuser", "researcher elsewhere", "researcher here", "other account"])
def test_a_crafted_link_does_not_sign_out_a_signed_in_person(client_for, kind):
    study = study_with_queue()
    elsewhere = study_with_queue()
    user = UserFactory(username="alice", is_staff=kind == "staff", is_superuser=kind == "superuser")
    if kind.startswith("researcher"):
        Membership.objects.create(
            user=user, study=study if kind.endswith("here") else elsewhere, role=Membership.Role.RESEARCHER
        )
    client = client_for(user)
    response = client.get(_join_url(study), PROLIFIC)
    assert response.status_code == 200
    html = response.content.decode()
    assert "You are signed in as <strong>alice</strong>" in html
    assert "Sign out and continue as a participant" in html
    assert _signed_in_as(client) == user.pk
    assert _participants(study) == 0


def test_signing_out_to_continue_as_a_participant_takes_a_post_with_csrf():
    study = study_with_queue()
    researcher = UserFactory(username="res")
    Membership.objects.create(user=researcher, study=study, role=Membership.Role.RESEARCHER)
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)
    url = _join_url(study) + "?PROLIFIC_PID=5f1e2d3c4b5a69788796a5b4&STUDY_ID=st-1&SESSION_ID=se-9"
    assert client.post(url).status_code == 403  # no CSRF token: nothing happens
    assert _signed_in_as(client) == researcher.pk
    page = client.get(url)
    token = page.context["csrf_token"]
    assert f'action="{url.replace("&", "&amp;")}"' in page.content.decode()
    response = client.post(url, {"csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302 and response["Location"] == annotate_url(study)
    participant = Membership.objects.get(study=study, external_id=PROLIFIC["PROLIFIC_PID"]).user
    assert _signed_in_as(client) == participant.pk


def test_a_signed_in_annotator_of_the_study_continues_as_themself(client_for, make_member):
    study = study_with_queue()
    annotator = make_member(study, Membership.Role.ANNOTATOR, username="ann")
    client = client_for(annotator)
    response = client.get(_join_url(study), PROLIFIC)
    assert response.status_code == 302 and response["Location"] == annotate_url(study)
    assert _signed_in_as(client) == annotator.pk
    assert _participants(study) == 0


def test_a_signed_in_crowd_participant_is_replaced_by_the_participant_the_link_names(client):
    study = study_with_queue()
    client.get(_join_url(study), {**PROLIFIC, "PROLIFIC_PID": "first0001", "SESSION_ID": "s1"})
    first = _signed_in_as(client)
    assert client.get(_join_url(study), PROLIFIC).status_code == 302
    second = Membership.objects.get(study=study, external_id=PROLIFIC["PROLIFIC_PID"]).user_id
    assert _signed_in_as(client) == second != first


def test_the_signed_in_participant_continues_whatever_session_id_the_link_carries(client):
    study = study_with_queue()
    client.get(_join_url(study), PROLIFIC)
    owner = _signed_in_as(client)
    response = client.get(_join_url(study), {**PROLIFIC, "SESSION_ID": "reopened"})
    assert response.status_code == 302 and _signed_in_as(client) == owner
