"""The annotator and researcher pages, driven through the test client.

These go through the real flow (client → view → selectors/services → DB); only
the Celery side of the loop is replaced by the ``loop_calls`` recorder.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from activelearn import refill
from annotation.models import Assignment, Candidate, Comparison, Judgment, Membership, Prompt, RewardModelVersion, Study
from tests.factories import CandidateFactory, PromptFactory, StudyFactory, UserFactory, study_with_queue

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def on_screen(html: str) -> str:
    """The page without the comparison leased ahead (kept in a <template>, not shown)."""
    return re.sub(r'<template id="comparison-ahead">.*?</template>', "", html, flags=re.S)


def comparison_id_in(html: str) -> int | None:
    """The comparison id the page asks the annotator to judge (None in the done state)."""
    match = re.search(r'name="comparison_id" value="(\d+)"', html)
    return int(match.group(1)) if match else None


def annotate_url(study: Study) -> str:
    return reverse("annotate", args=[study.slug])


def submit_url(study: Study) -> str:
    return reverse("annotate_submit", args=[study.slug])


def open_comparison(client, study: Study) -> int:
    response = client.get(annotate_url(study))
    assert response.status_code == 200
    comparison_id = comparison_id_in(response.content.decode())
    assert comparison_id is not None, "expected a comparison to answer"
    return comparison_id


def answer(client, study: Study, comparison_id: int, choice: str = "a", **extra):
    data = {"comparison_id": comparison_id, "choice": choice, **extra}
    return client.post(submit_url(study), data, **HTMX)


# --- access -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["home", "annotate", "study_detail"])
def test_anonymous_user_is_sent_to_login(client, study, name):
    url = reverse(name) if name == "home" else reverse(name, args=[study.slug])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_anonymous_submit_is_sent_to_login_and_saves_nothing(client, study):
    response = client.post(submit_url(study), {"comparison_id": 1, "choice": "a"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Judgment.objects.exists()


@pytest.mark.parametrize("name", ["annotate", "study_detail", "study_dashboard"])
def test_non_member_gets_404(client_for, outsider, study, name):
    response = client_for(outsider).get(reverse(name, args=[study.slug]), **HTMX)
    assert response.status_code == 404


def test_non_member_cannot_submit(client_for, outsider, study):
    comparison = Comparison.objects.filter(study=study).first()
    response = answer(client_for(outsider), study, comparison.id)
    assert response.status_code == 404
    assert not Judgment.objects.exists()


@pytest.mark.parametrize("name", ["study_detail", "study_dashboard"])
def test_annotator_cannot_see_researcher_pages(client_for, annotator, study, name):
    response = client_for(annotator).get(reverse(name, args=[study.slug]), **HTMX)
    assert response.status_code == 404


def test_annotator_cannot_import_into_study(client_for, annotator, study):
    upload = SimpleUploadedFile("more.jsonl", b'{"prompt": "p", "candidates": ["x", "y"]}\n')
    response = client_for(annotator).post(reverse("study_import", args=[study.slug]), {"file": upload})
    assert response.status_code == 404
    assert not Prompt.objects.filter(study=study, text="p").exists()


def test_member_of_another_study_gets_404(client_for, make_member, study):
    other = study_with_queue(n_prompts=1, n_candidates=2)
    user = make_member(other, Membership.Role.RESEARCHER)
    client = client_for(user)
    assert client.get(annotate_url(study)).status_code == 404
    assert client.get(reverse("study_detail", args=[study.slug])).status_code == 404


def test_superuser_may_open_study_page_without_membership(client_for, study):
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    assert client_for(admin).get(reverse("study_detail", args=[study.slug])).status_code == 200


# --- home ---------------------------------------------------------------------------


def test_home_lists_studies_with_the_actions_of_each_role(client_for, make_member, study):
    second = study_with_queue(n_prompts=1, n_candidates=2, name="Second study")
    user = make_member(study, Membership.Role.ANNOTATOR)
    Membership.objects.create(user=user, study=second, role=Membership.Role.RESEARCHER)
    html = client_for(user).get(reverse("home")).content.decode()
    assert study.name in html and "Second study" in html
    assert reverse("annotate", args=[study.slug]) in html
    assert reverse("study_detail", args=[second.slug]) in html
    assert f'href="{reverse("study_detail", args=[study.slug])}"' not in html  # only an annotator there
    # Researchers somewhere may start a new study; logging out is a POST form.
    assert "New study from file" in html
    assert f'method="post" action="{reverse("logout")}"' in html


def test_plain_annotator_home_has_no_study_upload(client_for, annotator):
    html = client_for(annotator).get(reverse("home")).content.decode()
    assert "New study from file" not in html


def test_staff_home_lists_only_the_studies_they_belong_to(client_for, make_member, study):
    other = study_with_queue(n_prompts=1, n_candidates=2, name="Someone else's study")
    staff = make_member(study, Membership.Role.RESEARCHER)
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    html = client_for(staff).get(reverse("home")).content.decode()
    assert study.name in html
    assert other.name not in html and reverse("annotate", args=[other.slug]) not in html
    listed = client_for(staff).get("/api/v1/studies/").json()
    assert [row["slug"] for row in listed] == [study.slug]
    assert "Annotate" in html


# --- the annotate page ------------------------------------------------------------------


def test_annotate_page_shows_prompt_candidates_buttons_and_guidelines(client_for, annotator, study):
    response = client_for(annotator).get(annotate_url(study))
    html = on_screen(response.content.decode())
    assert response.status_code == 200
    assignment = Assignment.objects.filter(annotator=annotator, status="active").order_by("leased_at", "id").first()
    # A and B in this annotator's own order.
    first, second = (Candidate.objects.get(id=c) for c in assignment.display_order)
    assert assignment.comparison.prompt.text in html
    assert first.text in html and second.text in html
    assert html.index(first.text) < html.index(second.text)
    for label in ("A is better", "B is better", "Tie"):
        assert label in html
    assert comparison_id_in(html) == assignment.comparison_id
    # Guidelines: Markdown rendered, open on the first visit.
    assert "<strong>more helpful</strong>" in html
    assert '<details class="guidelines" open>' in html
    # Annotators judge blind: model names are never shown.
    assert first.source not in html
    # htmx and the keyboard script are loaded from static files, not inline.
    assert "vendor/htmx/htmx.min.js" in html and "js/annotate.js" in html
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None


def test_reload_shows_the_same_leased_comparison(client_for, annotator, study):
    client = client_for(annotator)
    assert open_comparison(client, study) == open_comparison(client, study)
    # The one on screen and the one leased ahead of it; reloading leases nothing more.
    assert Assignment.objects.filter(annotator=annotator).count() == 2


def test_the_next_comparison_comes_leased_ahead_and_is_the_one_shown_after_an_answer(client_for, annotator, study):
    client = client_for(annotator)
    html = client.get(annotate_url(study)).content.decode()
    current = comparison_id_in(html)
    ahead_html = re.search(r'<template id="comparison-ahead">(.*?)</template>', html, flags=re.S).group(1)
    ahead = comparison_id_in(ahead_html)
    assert ahead not in (None, current)
    assert Assignment.objects.get(annotator=annotator, comparison_id=ahead).status == "active"
    reply = answer(client, study, current).content.decode()
    assert comparison_id_in(on_screen(reply)) == ahead, "the server agrees with what the page already shows"
    assert comparison_id_in(
        re.search(r'<template id="comparison-ahead">(.*?)</template>', reply, re.S).group(1)
    ) not in (
        current,
        ahead,
    )


def test_a_page_already_showing_the_next_comparison_gets_only_the_parts_around_it(client_for, annotator, study):
    client = client_for(annotator)
    html = client.get(annotate_url(study)).content.decode()
    current = comparison_id_in(on_screen(html))
    ahead = comparison_id_in(re.search(r'<template id="comparison-ahead">(.*?)</template>', html, re.S).group(1))

    def answer_showing(comparison_id: int, showing: int, choice: str = "a"):
        data = {"comparison_id": comparison_id, "choice": choice}
        return client.post(submit_url(study), data, **HTMX, HTTP_X_PREFLOOP_SHOWING=str(showing))

    with CaptureQueriesContext(connection) as slim:
        reply = answer_showing(current, ahead).content.decode()
    assert Judgment.objects.filter(annotator=annotator, comparison_id=current).exists()
    shown = on_screen(reply)
    assert f'data-comparison-id="{ahead}"' in shown, "the reply names the comparison the page keeps"
    assert 'id="answer-form"' not in shown and 'class="candidate' not in shown, "and does not send it again"
    assert "You: <strong>1</strong> judgment" in shown and 'class="undo-bar"' in shown
    after = comparison_id_in(re.search(r'<template id="comparison-ahead">(.*?)</template>', reply, re.S).group(1))
    assert after not in (None, current, ahead), "the one after it comes leased ahead, in full"

    # A page that shows something else than what is next gets the whole comparison.
    with CaptureQueriesContext(connection) as whole:
        reply = answer_showing(ahead, ahead).content.decode()
    assert comparison_id_in(on_screen(reply)) == after
    assert len(slim) < len(whole), "the comparison kept on the page is not read again"
    # And a refused answer always comes back whole, with its message.
    refused = answer_showing(after, after, choice="nonsense")
    assert refused.status_code == 400 and comparison_id_in(on_screen(refused.content.decode())) == after


def test_nothing_is_leased_ahead_past_the_budget(client_for, make_member):
    study = study_with_queue(n_prompts=2, n_candidates=3, budget=1)
    user = make_member(study)
    html = client_for(user).get(annotate_url(study)).content.decode()
    assert comparison_id_in(html) is not None and "comparison-ahead" not in html
    assert Assignment.objects.filter(annotator=user).count() == 1


def test_guidelines_start_closed_after_the_first_answer(client_for, annotator, study):
    client = client_for(annotator)
    answer(client, study, open_comparison(client, study))
    html = client.get(annotate_url(study)).content.decode()
    assert '<details class="guidelines">' in html


def test_tie_button_only_when_the_study_allows_ties(client_for, make_member):
    study = study_with_queue(n_prompts=1, n_candidates=3, allow_tie=False)
    html = client_for(make_member(study)).get(annotate_url(study)).content.decode()
    assert "A is better" in html
    assert 'value="tie"' not in html


def test_conversation_prompt_is_shown_turn_by_turn(client_for, make_member):
    study = StudyFactory()
    messages = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! <b>ok</b>"}]
    prompt = PromptFactory(study=study, text=json.dumps(messages), format=Prompt.Format.CONVERSATION)
    CandidateFactory.create_batch(2, prompt=prompt)
    html = client_for(make_member(study)).get(annotate_url(study)).content.decode()
    assert '<ol class="conversation">' in html
    assert "Hi there" in html
    assert "Hello! &lt;b&gt;ok&lt;/b&gt;" in html
    assert "[{&quot;role&quot;" not in html  # not dumped as raw JSON


def test_empty_queue_is_topped_up_synchronously_and_the_worker_is_asked(client_for, make_member, loop_calls):
    """A few random pairs at once, not a whole queue: the worker's refill,
    asked for at the same time, brings the strategy's picks."""
    study = study_with_queue(n_prompts=2, n_candidates=3, fill=False)
    assert not Comparison.objects.filter(study=study).exists()
    html = client_for(make_member(study)).get(annotate_url(study)).content.decode()
    assert comparison_id_in(html) is not None
    queued = Comparison.objects.filter(study=study)
    assert queued.count() == refill.FALLBACK_MOST < 6  # of the 6 pairs of 3, for 2 prompts
    assert set(queued.values_list("strategy", flat=True)) == {"random"}
    assert loop_calls.refill and set(loop_calls.refill) == {study.id}


def test_low_queue_after_leasing_asks_the_worker_for_more(client_for, make_member, loop_calls):
    study = study_with_queue(n_prompts=1, n_candidates=3, queue_low_water=8)
    client_for(make_member(study)).get(annotate_url(study))
    assert loop_calls.refill and set(loop_calls.refill) == {study.id}


def test_annotate_page_query_count_is_small(client_for, annotator, study, django_assert_max_num_queries):
    client = client_for(annotator)
    with django_assert_max_num_queries(32):
        first = client.get(annotate_url(study))  # a new lease, and one leased ahead
    with django_assert_max_num_queries(13):
        again = client.get(annotate_url(study))  # both live leases again
    assert comparison_id_in(first.content.decode()) == comparison_id_in(again.content.decode())


def test_closed_study_shows_a_clear_message(client_for, make_member):
    study = study_with_queue(n_prompts=1, n_candidates=2, status=Study.Status.PAUSED)
    response = client_for(make_member(study)).get(annotate_url(study))
    assert response.status_code == 200
    html = response.content.decode()
    assert "is not open" in html and "paused" in html
    assert comparison_id_in(html) is None


# --- submitting -----------------------------------------------------------------------


def test_htmx_submit_saves_the_judgment_and_returns_the_next_comparison(
    client_for, annotator, study, loop_calls, django_capture_on_commit_callbacks
):
    client = client_for(annotator)
    first = open_comparison(client, study)
    with django_capture_on_commit_callbacks(execute=True):
        response = answer(client, study, first, "b", time_on_task_ms="4321")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="comparison"'), "a partial, not a full page"
    assert "<html" not in html
    second = comparison_id_in(html)
    assert second is not None and second != first
    judgment = Judgment.objects.get()
    assert (judgment.comparison_id, judgment.annotator, judgment.choice) == (first, annotator, "b")
    assert judgment.time_on_task_ms == 4321
    assert "You: <strong>1</strong> judgment" in html
    # The committed judgment told the loop to retrain.
    assert loop_calls.retrain == [study.id]


def test_double_submit_is_harmless(client_for, annotator, study):
    client = client_for(annotator)
    first = open_comparison(client, study)
    one = answer(client, study, first, "a")
    two = answer(client, study, first, "b")
    assert one.status_code == two.status_code == 200
    assert Judgment.objects.filter(annotator=annotator).count() == 1
    assert Judgment.objects.get().choice == "a"  # the first answer stands
    assert comparison_id_in(two.content.decode()) == comparison_id_in(one.content.decode())


def test_answering_a_comparison_not_leased_to_me_shows_an_error(client_for, annotator, study):
    client = client_for(annotator)
    mine = open_comparison(client, study)
    other = Comparison.objects.filter(study=study).exclude(assignments__annotator=annotator).first()
    response = answer(client, study, other.id)
    assert response.status_code == 400
    html = on_screen(response.content.decode())
    assert "was not assigned to you" in html
    assert comparison_id_in(html) == mine  # still answerable
    assert not Judgment.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [({"choice": "a"}, "missing the comparison"), ({"choice": "maybe"}, "Unknown answer")],
)
def test_malformed_answers_are_refused_without_a_500(client_for, annotator, study, data, message):
    client = client_for(annotator)
    mine = open_comparison(client, study)
    if data["choice"] != "a":
        data = {**data, "comparison_id": mine}
    response = client.post(submit_url(study), data, **HTMX)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Judgment.objects.exists()


def test_study_closing_between_answers_keeps_the_answer_and_says_so(client_for, annotator, study):
    client = client_for(annotator)
    first = open_comparison(client, study)
    Study.objects.filter(id=study.id).update(status=Study.Status.CLOSED)
    response = answer(client, study, first)
    assert response.status_code == 200
    html = response.content.decode()
    assert "This study is not open" in html and "closed" in html
    assert comparison_id_in(html) is None
    assert Judgment.objects.filter(comparison_id=first).exists()  # the work was done; it is kept


def test_plain_form_submit_redirects_back_to_the_annotate_page(client_for, annotator, study):
    client = client_for(annotator)
    first = open_comparison(client, study)
    response = client.post(submit_url(study), {"comparison_id": first, "choice": "tie", "time_on_task_ms": ""})
    assert response.status_code == 302
    assert response["Location"] == annotate_url(study)
    judgment = Judgment.objects.get()
    assert judgment.choice == "tie" and judgment.time_on_task_ms is None
    assert open_comparison(client, study) != first


def test_plain_form_error_is_shown_as_a_message_after_redirect(client_for, annotator, study):
    client = client_for(annotator)
    open_comparison(client, study)
    response = client.post(submit_url(study), {"comparison_id": 999999, "choice": "a"}, follow=True)
    assert "does not belong to this study" in response.content.decode()


def test_expired_lease_returns_the_comparison_to_the_queue(client_for, make_member):
    study = study_with_queue(n_prompts=1, n_candidates=2)  # exactly one pair
    first, second = client_for(make_member(study)), client_for(make_member(study))
    held = open_comparison(first, study)
    # While the first annotator holds it, nothing is left for the second.
    assert comparison_id_in(second.get(annotate_url(study)).content.decode()) is None
    Assignment.objects.filter(comparison_id=held).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert open_comparison(second, study) == held
    assert Assignment.objects.get(comparison_id=held, status=Assignment.Status.EXPIRED)


def test_overlap_two_gives_a_comparison_to_two_annotators_but_never_twice_to_one(client_for, make_member):
    study = study_with_queue(n_prompts=1, n_candidates=3, overlap=2)  # three pairs
    alice, bob = client_for(make_member(study)), client_for(make_member(study))
    assert open_comparison(alice, study) == open_comparison(bob, study)

    seen: dict[str, list[int]] = {"alice": [], "bob": []}
    for name, client in (("alice", alice), ("bob", bob)):
        current = open_comparison(client, study)
        while current is not None:
            seen[name].append(current)
            current = comparison_id_in(answer(client, study, current).content.decode())
    assert len(seen["alice"]) == len(set(seen["alice"])) == 3
    assert sorted(seen["alice"]) == sorted(seen["bob"])
    assert Judgment.objects.count() == 6
    assert set(Comparison.objects.filter(study=study).values_list("status", flat=True)) == {"done"}


def test_budget_reached_shows_the_done_state(client_for, annotator):
    study = Study.objects.get()
    Study.objects.filter(id=study.id).update(budget=2)
    client = client_for(annotator)
    first = open_comparison(client, study)
    second = comparison_id_in(answer(client, study, first).content.decode())
    html = answer(client, study, second).content.decode()
    assert "All done — thank you" in html
    assert "all the judgments it needs" in html
    assert comparison_id_in(html) is None
    page = client.get(annotate_url(study)).content.decode()
    assert "All done — thank you" in page


def test_candidate_text_is_escaped(client_for, make_member):
    study = StudyFactory(guidelines="Be fair. <script>alert('g')</script> [x](javascript:alert(1))")
    prompt = PromptFactory(study=study, text="<b onmouseover=alert(2)>prompt</b>")
    CandidateFactory(prompt=prompt, text="<script>alert(1)</script>")
    CandidateFactory(prompt=prompt, text="<img src=x onerror=alert(1)>")
    html = client_for(make_member(study)).get(annotate_url(study)).content.decode()
    assert "<script>alert" not in html
    assert "<img src=x" not in html and "<b onmouseover" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "javascript:" not in html


def test_an_empty_response_is_shown_as_one(client_for, make_member):
    """An imported empty reply (four rows of HH-RLHF's test split) is said to be empty, not a blank box."""
    study = StudyFactory()
    prompt = PromptFactory(study=study, text="What do you think?")
    CandidateFactory(prompt=prompt, text="")
    CandidateFactory(prompt=prompt, text="I think so.")
    html = client_for(make_member(study)).get(annotate_url(study)).content.decode()
    assert html.count("(empty response)") == 1
    assert "I think so." in html


def test_markdown_prompt_is_sanitised(client_for, make_member):
    study = StudyFactory()
    prompt = PromptFactory(
        study=study, format=Prompt.Format.MARKDOWN, text="**bold** <img src=x onerror=alert(1)> <script>x()</script>"
    )
    CandidateFactory.create_batch(2, prompt=prompt)
    html = client_for(make_member(study)).get(annotate_url(study)).content.decode()
    assert "<strong>bold</strong>" in html
    assert "<img" not in html and "<script>x()" not in html
    # Raw HTML in Markdown is shown as text, not interpreted.
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


# --- researcher pages --------------------------------------------------------------


def test_study_detail_shows_queue_depth_and_model_versions(client_for, researcher, study):
    RewardModelVersion.objects.create(
        study=study,
        version=1,
        model_type="mlp",
        embedder_key="test",
        n_judgments=12,
        n_train=10,
        n_heldout=24,
        heldout_accuracy=0.8333,
        heldout_accuracy_low=0.64,
        heldout_accuracy_high=0.93,
        heldout_log_loss=0.51234,
        heldout_log_loss_low=0.4,
        heldout_log_loss_high=0.62,
        fixed_evaluation=True,
        train_seconds=1.25,
        device="cpu",
        checkpoint_path="/nowhere/v1",
    )
    RewardModelVersion.objects.create(
        study=study, version=2, model_type="mlp", embedder_key="test", n_judgments=20, n_heldout=7, device="cuda:0",
        fixed_evaluation=True, checkpoint_path="/nowhere/v2",
    )  # fmt: skip
    response = client_for(researcher).get(reverse("study_detail", args=[study.slug]))
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'data-stat="queue-depth">\s*9\s*<', html)
    assert "83 %" in html and "(64 %–93 %, n = 24)" in html and "0.512" in html
    # newest first (as table cells: a random token on the page may contain "v1")
    assert html.index("<td>v2</td>") < html.index("<td>v1</td>")
    assert "cuda:0" in html and "—" in html  # v2 has no metrics
    # The live version (v2) was scored on too few evaluation judgments to show a figure.
    assert 'data-stat="heldout-accuracy">— (needs 20 evaluation judgments, has 7)<' in html
    assert 'hx-trigger="every 5s"' in html
    assert reverse("study_dashboard", args=[study.slug]) in html


def test_dashboard_partial_for_htmx_and_redirect_without(client_for, researcher, study, django_assert_max_num_queries):
    client = client_for(researcher)
    url = reverse("study_dashboard", args=[study.slug])
    # Session and user, the study and its access check, the dashboard's own
    # aggregates, the annotator-quality table and the analytics: fixed, not per
    # row (tests/annotation/dashboard/test_selectors.py counts them exactly, at
    # two study sizes).
    with django_assert_max_num_queries(20):
        partial = client.get(url, **HTMX)
    assert partial.status_code == 200
    assert partial.content.decode().lstrip().startswith('<section id="dashboard"')
    plain = client.get(url)
    assert plain.status_code == 302 and plain["Location"] == reverse("study_detail", args=[study.slug])


def test_import_with_a_bad_line_shows_the_error_and_creates_nothing(client_for, researcher, study):
    before = (Prompt.objects.count(), Candidate.objects.count())
    content = b'{"prompt": "good", "candidates": ["x", "y"]}\n{"prompt": "bad", "candidates": [null]}\n'
    response = client_for(researcher).post(
        reverse("study_import", args=[study.slug]),
        {"file": SimpleUploadedFile("bad.jsonl", content)},
        follow=True,
    )
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == reverse("study_detail", args=[study.slug])
    assert "Nothing imported" in html
    assert "line 2" in html and "candidates[0]" in html
    assert (Prompt.objects.count(), Candidate.objects.count()) == before


def test_import_into_study_reports_what_was_added(client_for, researcher, study):
    content = b'{"prompt": "new prompt", "candidates": ["x", {"text": "y", "source": "m"}]}\n'
    response = client_for(researcher).post(
        reverse("study_import", args=[study.slug]), {"file": SimpleUploadedFile("ok.jsonl", content)}, follow=True
    )
    html = response.content.decode()
    assert "Imported 1 new prompt (0 already there) and 2 candidates; 0 duplicates skipped." in html
    assert Candidate.objects.filter(study=study, prompt__text="new prompt").count() == 2


def test_create_study_from_file_makes_the_uploader_researcher(client_for, researcher):
    content = b'{"prompt": "p1", "candidates": ["a", "b", "c"]}\n{"prompt": "p2", "candidates": ["d", "e"]}\n'
    response = client_for(researcher).post(
        reverse("study_create_from_file"), {"name": "Fresh study", "file": SimpleUploadedFile("f.jsonl", content)}
    )
    created = Study.objects.get(name="Fresh study")
    assert response.status_code == 302
    assert response["Location"] == reverse("study_detail", args=[created.slug])
    assert Membership.objects.get(study=created, user=researcher).role == Membership.Role.RESEARCHER
    assert Candidate.objects.filter(study=created).count() == 5


def test_create_study_from_bad_file_creates_nothing(client_for, researcher):
    studies_before = Study.objects.count()
    content = b'{"prompt": "p1", "candidates": ["a", "b"]}\nnot json\n'
    response = client_for(researcher).post(
        reverse("study_create_from_file"),
        {"name": "Broken", "file": SimpleUploadedFile("broken.jsonl", content)},
        follow=True,
    )
    assert "No study created" in response.content.decode()
    assert "line 2" in response.content.decode()
    assert Study.objects.count() == studies_before
    assert not Prompt.objects.filter(text="p1").exists()


def test_plain_annotator_cannot_create_studies(client_for, annotator):
    content = b'{"prompt": "p1", "candidates": ["a", "b"]}\n'
    response = client_for(annotator).post(
        reverse("study_create_from_file"), {"name": "Nope", "file": SimpleUploadedFile("f.jsonl", content)}
    )
    assert response.status_code == 403
    assert not Study.objects.filter(name="Nope").exists()


# --- login page ----------------------------------------------------------------------


def test_login_page_logs_in_and_lands_on_home(client, annotator):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert '<label for="id_username">' in page.content.decode()
    response = client.post(reverse("login"), {"username": "ann", "password": "correct horse battery staple"})
    assert response.status_code == 302 and response["Location"] == reverse("home")


def test_login_failure_shows_an_error(client, annotator):
    response = client.post(reverse("login"), {"username": "ann", "password": "wrong"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()


def test_logout_is_a_post_that_ends_the_session(client_for, annotator):
    client = client_for(annotator)
    response = client.post(reverse("logout"))
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert client.get(reverse("home")).status_code == 302  # logged out now


# --- listwise -------------------------------------------------------------------


def _listwise_study(make_member, *, allow_tie: bool = True, k: int = 4):
    study = study_with_queue(n_prompts=2, n_candidates=5, mode="listwise", list_size=k, allow_tie=allow_tie)
    return study, make_member(study)


def _shown_items(comparison_id: int) -> list[int]:
    """Candidate ids in the order the (only) annotator of the comparison saw them."""
    return Assignment.objects.get(comparison_id=comparison_id).display_order


def test_listwise_page_shows_every_item_with_a_place_and_one_submit(client_for, make_member):
    study, user = _listwise_study(make_member, k=4)
    html = on_screen(client_for(user).get(annotate_url(study)).content.decode())
    assert html.count('class="candidate rank-item"') == 4
    for position in range(4):
        assert f'name="rank_{position}"' in html
    assert 'value="ranked"' in html and 'value="a"' not in html
    assert "Sortable.min.js" in html and "rank.js" in html
    assert "Tie with the one above" in html


def test_listwise_without_ties_offers_no_tie_toggle(client_for, make_member):
    study, user = _listwise_study(make_member, allow_tie=False)
    html = client_for(user).get(annotate_url(study)).content.decode()
    assert "Tie with the one above" not in html and "ties it with" not in html


def test_listwise_places_are_stored_as_a_ranking_of_candidate_ids(
    client_for, make_member, loop_calls, django_capture_on_commit_callbacks
):
    study, user = _listwise_study(make_member)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    shown = _shown_items(comparison_id)
    places = {"rank_0": 3, "rank_1": 1, "rank_2": 4, "rank_3": 2}
    with django_capture_on_commit_callbacks(execute=True):
        response = answer(client, study, comparison_id, choice="ranked", **places)
    assert response.status_code == 200
    judgment = Judgment.objects.get(comparison_id=comparison_id)
    assert judgment.choice == Judgment.Choice.RANKED
    assert judgment.ranking == [shown[1], shown[3], shown[0], shown[2]]
    assert loop_calls.retrain == [study.id]
    assert comparison_id_in(response.content.decode()) not in (None, comparison_id)


def test_listwise_equal_places_are_a_tie_when_allowed(client_for, make_member):
    study, user = _listwise_study(make_member)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    shown = _shown_items(comparison_id)
    answer(client, study, comparison_id, choice="ranked", rank_0=2, rank_1=1, rank_2=2, rank_3=4)
    assert Judgment.objects.get(comparison_id=comparison_id).ranking == [shown[1], [shown[0], shown[2]], shown[3]]


@pytest.mark.parametrize(
    ("places", "message"),
    [
        ({"rank_0": 1, "rank_1": 1, "rank_2": 3, "rank_3": 4}, "does not allow ties"),
        ({"rank_0": 1, "rank_1": 2, "rank_2": 3}, "Rank every one of the 4 items"),
        ({"rank_0": 1, "rank_1": 2, "rank_2": 3, "rank_3": "x"}, "Rank every one of the 4 items"),
        ({"rank_0": 1, "rank_1": 2, "rank_2": 3, "rank_3": 4, "rank_9": 5}, "Rank every one of the 4 items"),
    ],
)
def test_listwise_bad_rankings_are_refused_and_the_list_stays(client_for, make_member, places, message):
    study, user = _listwise_study(make_member, allow_tie=False)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    response = answer(client, study, comparison_id, choice="ranked", **places)
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert comparison_id_in(html) == comparison_id
    assert not Judgment.objects.exists()


def test_listwise_double_submit_keeps_the_first_ranking(client_for, make_member):
    study, user = _listwise_study(make_member)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    answer(client, study, comparison_id, choice="ranked", rank_0=1, rank_1=2, rank_2=3, rank_3=4)
    again = answer(client, study, comparison_id, choice="ranked", rank_0=4, rank_1=3, rank_2=2, rank_3=1)
    assert again.status_code == 200
    assert Judgment.objects.get(comparison_id=comparison_id).ranking == _shown_items(comparison_id)


def test_a_pairwise_answer_to_a_list_is_refused(client_for, make_member):
    study, user = _listwise_study(make_member)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    response = answer(client, study, comparison_id, choice="a")
    assert response.status_code == 400
    assert "rank them all" in response.content.decode()
