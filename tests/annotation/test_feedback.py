"""Richer feedback (issue 18, part 3): issue tags per response, tagged spans,
and a better response written by the annotator, which becomes a candidate.

Through the real flow (client → view → service → DB) and the API; exports read
what was stored. A refusal says what to fix and gives back what was sent.
"""

from __future__ import annotations

import json
import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from activelearn.refill import queue_refill
from annotation.exports import registry
from annotation.exports.kinds import judgments as judgments_kind
from annotation.exports.kinds import sft
from annotation.models import Assignment, Candidate, Comparison, ComparisonItem, Judgment, Prompt
from annotation.services import judgment_undo
from tests.annotation.test_api import api_as
from tests.annotation.test_views import HTMX, annotate_url, on_screen, open_comparison, submit_url
from tests.factories import CandidateFactory, PromptFactory, StudyFactory, study_with_queue

pytestmark = pytest.mark.django_db

TAGS = ["factual error", "unsafe", "off topic"]


def _study(make_member, **options):
    study = study_with_queue(n_prompts=2, n_candidates=3, **options)
    return study, make_member(study)


def _post(client, study, comparison_id, **data):
    return client.post(submit_url(study), {"comparison_id": comparison_id, **data}, **HTMX)


def _shown(comparison_id: int) -> list[int]:
    return Assignment.objects.get(comparison_id=comparison_id).display_order


def test_a_study_without_feedback_shows_no_panel(client_for, make_member):
    study, user = _study(make_member)
    html = client_for(user).get(annotate_url(study)).content.decode()
    assert 'class="feedback"' not in html and "feedback.js" not in html


def test_tags_are_stored_per_response_in_the_studys_order(client_for, make_member):
    study, user = _study(make_member, feedback_tags=TAGS)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    html = on_screen(client.get(annotate_url(study)).content.decode())
    assert 'name="tag_0" value="unsafe"' in html and 'name="tag_1" value="off topic"' in html
    assert "<kbd>F</kbd>" in html and "feedback.js" in html
    response = _post(client, study, comparison_id, choice="a", tag_0=["off topic", "factual error"], tag_1=["unsafe"])
    assert response.status_code == 200
    first, second = _shown(comparison_id)
    judgment = Judgment.objects.get()
    assert judgment.response_tags == {str(first): ["factual error", "off topic"], str(second): ["unsafe"]}
    assert judgment.spans == [] and judgment.rewrite_id is None


def test_an_unknown_tag_is_refused_and_the_form_keeps_what_was_given(client_for, make_member):
    study, user = _study(make_member, feedback_tags=TAGS, allow_rewrite=True)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    response = _post(
        client, study, comparison_id, choice="b", tag_0=["unsafe", "boring"], tag_1=["off topic"], rewrite_text="Mine."
    )
    html = on_screen(response.content.decode())
    assert response.status_code == 400
    assert "Unknown issue tag &#x27;boring&#x27;; this study&#x27;s tags are: factual error, unsafe, off topic." in html
    assert 'name="tag_0" value="unsafe" checked' in html and 'name="tag_1" value="off topic" checked' in html
    assert 'name="tag_0" value="factual error">' in html, "only what was ticked comes back ticked"
    assert ">Mine.</textarea>" in html and '<details class="feedback" open' in html
    assert not Judgment.objects.exists() and not Candidate.objects.filter(author__isnull=False).exists()


def test_spans_are_stored_with_their_text_in_code_points(client_for, make_member):
    study, user = _study(make_member, feedback_tags=TAGS, tag_spans=True)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    second = _shown(comparison_id)[1]
    Candidate.objects.filter(id=second).update(text="Paris 🗼 is in\r\nGermany.")
    html = on_screen(client.get(annotate_url(study)).content.decode())
    assert 'class="span-marker" hidden' in html, "shown by the script, which reads the selection"
    assert "Paris 🗼 is in\\r\\nGermany." in html, "the text travels as JSON, line ends and all"
    # "Germany" starts after "Paris 🗼 is in\r\n": 15 code points (the tower is one).
    response = _post(client, study, comparison_id, choice="a", span=["1:15:22:factual error", "1:15:22:factual error"])
    assert response.status_code == 200
    judgment = Judgment.objects.get()
    span = {"candidate_id": second, "start": 15, "end": 22, "tag": "factual error", "text": "Germany"}
    assert judgment.spans == [span]


@pytest.mark.parametrize(
    ("options", "span", "message"),
    [
        ({"tag_spans": True}, "0:5:900:unsafe", "must lie within its"),
        ({"tag_spans": True}, "0:3:3:unsafe", "must lie within its"),
        ({"tag_spans": True}, "0:0:3:rude", "Unknown issue tag &#x27;rude&#x27;"),
        ({"tag_spans": True}, "5:0:3:unsafe", "There is no response F to mark."),
        ({}, "0:0:3:unsafe", "This study does not ask for tagged spans."),
    ],
)
def test_a_bad_span_is_refused_and_kept_on_the_form(client_for, make_member, options, span, message):
    study, user = _study(make_member, feedback_tags=TAGS, **options)
    client = client_for(user)
    response = _post(client, study, open_comparison(client, study), choice="a", span=[span])
    html = response.content.decode()
    assert response.status_code == 400 and message in html
    if options and not span.startswith("5:"):
        assert f'name="span" value="{span}"' in html, "the marked span comes back with the refused form"
    assert not Judgment.objects.exists()


def test_spans_need_tags_to_choose_from():
    study = StudyFactory.build(tag_spans=True)
    with pytest.raises(ValidationError) as raised:
        study.full_clean(exclude=["slug", "invite_token"])
    assert "Tagged spans need issue tags" in str(raised.value.message_dict["tag_spans"])
    bad = StudyFactory.build(feedback_tags=["unsafe", "Unsafe"])
    with pytest.raises(ValidationError, match="distinct"):
        bad.full_clean(exclude=["slug", "invite_token"])


def test_a_written_response_becomes_a_candidate_with_its_author_and_enters_the_loop(client_for, make_member):
    # One prompt with two responses, each pair judged once: the only pairs left
    # after the first answer are the written response against the two others.
    study = StudyFactory(allow_rewrite=True, overlap=1, budget=100)
    prompt = PromptFactory(study=study)
    a, b = CandidateFactory.create_batch(2, prompt=prompt)
    queue_refill(study_id=study.id, use_model=False, seed=0)
    user = make_member(study)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    response = _post(client, study, comparison_id, choice="a", rewrite_of="1", rewrite_text="  A better answer.  ")
    assert response.status_code == 200
    judgment = Judgment.objects.get()
    written = Candidate.objects.get(author=user)
    revised = _shown(comparison_id)[1]
    assert (written.text, written.source, written.prompt_id, written.revises_id) == (
        "A better answer.", "human", prompt.id, revised,
    )  # fmt: skip
    assert judgment.rewrite_id == written.id
    queue_refill(study_id=study.id, use_model=False, seed=0)
    pairs = {
        frozenset(ComparisonItem.objects.filter(comparison=c).values_list("candidate_id", flat=True))
        for c in Comparison.objects.exclude(id=comparison_id)
    }
    assert pairs == {frozenset({a.id, written.id}), frozenset({b.id, written.id})}


def test_a_written_response_the_same_as_a_shown_one_is_refused(client_for, make_member):
    study, user = _study(make_member, allow_rewrite=True)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    second_text = Candidate.objects.get(id=_shown(comparison_id)[1]).text
    response = _post(client, study, comparison_id, choice="a", rewrite_text=f"{second_text}\n")
    assert response.status_code == 400
    assert "Your response is the same as response B: change it, or clear the box." in response.content.decode()
    assert Candidate.objects.filter(author__isnull=False).count() == 0


def test_writing_is_refused_where_the_study_does_not_ask_and_an_empty_box_is_nothing(client_for, make_member):
    study, user = _study(make_member)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    refused = _post(client, study, comparison_id, choice="a", rewrite_text="Something.")
    assert refused.status_code == 400 and "does not ask for written responses" in refused.content.decode()
    assert _post(client, study, comparison_id, choice="a", rewrite_text="   ").status_code == 200
    assert Judgment.objects.get().rewrite_id is None


def test_undo_takes_back_the_written_response_and_the_same_text_can_be_given_again(client_for, make_member):
    study, user = _study(make_member, allow_rewrite=True)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    assert _post(client, study, comparison_id, choice="a", rewrite_text="Better.").status_code == 200
    judgment = Judgment.objects.get()
    judgment_undo(study=study, annotator=user, judgment_id=judgment.id)
    assert not Candidate.objects.filter(author=user).exists()
    assert _post(client, study, comparison_id, choice="b", rewrite_text="Better.").status_code == 200
    assert Candidate.objects.filter(author=user).count() == 1


def test_a_double_submit_writes_one_response(client_for, make_member):
    study, user = _study(make_member, allow_rewrite=True, feedback_tags=TAGS)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    for _ in range(2):
        assert _post(client, study, comparison_id, choice="a", tag_0="unsafe", rewrite_text="Mine.").status_code == 200
    assert Judgment.objects.count() == 1 and Candidate.objects.filter(author=user).count() == 1


def test_the_api_takes_tags_spans_and_a_rewrite_and_returns_them(make_member):
    study, user = _study(make_member, feedback_tags=TAGS, tag_spans=True, allow_rewrite=True)
    client = api_as(user)
    seen = client.get(f"/api/v1/studies/{study.slug}/").json()
    assert (seen["feedback_tags"], seen["tag_spans"], seen["allow_rewrite"]) == (TAGS, True, True)
    shown = client.get(f"/api/v1/studies/{study.slug}/next/").json()
    text = shown["candidates"][0]["text"]
    body = {
        "comparison_id": shown["comparison_id"],
        "choice": "b",
        "tags": {"0": ["unsafe"]},
        "spans": [{"position": 0, "start": 0, "end": 9, "tag": "factual error"}],
        "rewrite": "Written through the API.",
        "rewrite_of": 0,
    }
    answered = client.post(f"/api/v1/studies/{study.slug}/judgments/", body, format="json")
    assert answered.status_code == 201, answered.content
    data = answered.json()
    first = Judgment.objects.get().shown_order[0]
    assert data["response_tags"] == {str(first): ["unsafe"]}
    assert data["spans"] == [{"candidate_id": first, "start": 0, "end": 9, "tag": "factual error", "text": text[:9]}]
    assert data["rewrite_id"] == Candidate.objects.get(author=user).id
    bad = client.post(
        f"/api/v1/studies/{study.slug}/judgments/",
        {**body, "comparison_id": client.get(f"/api/v1/studies/{study.slug}/next/").json()["comparison_id"],
         "tags": {"0": ["nope"]}},
        format="json",
    )  # fmt: skip
    assert bad.status_code == 400 and "Unknown issue tag 'nope'" in bad.json()["detail"]


def _records(kind, study, form=None, pseudonymise=False):
    picked = kind.pick(study=study, form=form) if hasattr(kind, "choices") and kind.choices else kind
    return [r for chunk in picked.records(study=study, pseudonymise=pseudonymise) for r in chunk]


def test_exports_carry_tags_spans_and_written_responses(client_for, make_member):
    study, user = _study(make_member, feedback_tags=TAGS, tag_spans=True, allow_rewrite=True)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    second = _shown(comparison_id)[1]
    prompt = Prompt.objects.get(id=Comparison.objects.get(id=comparison_id).prompt_id)
    response = _post(
        client, study, comparison_id, choice="a", tag_1=["unsafe"], span=["1:0:9:unsafe"], rewrite_of="1",
        rewrite_text="A written reply.",
    )  # fmt: skip
    assert response.status_code == 200
    written = Candidate.objects.get(author=user)
    (record,) = _records(judgments_kind.KIND, study)
    assert record["response_tags"] == {str(second): ["unsafe"]}
    assert record["spans"][0]["candidate_id"] == second and record["spans"][0]["tag"] == "unsafe"
    assert record["rewrite_id"] == written.id

    assert sft.default_form(study) == sft.PROMPT_COMPLETION
    (pc,) = _records(sft.KIND, study)
    assert (pc["prompt"], pc["completion"]) == (prompt.text, " A written reply.")
    assert (pc["author"], pc["revises_id"], pc["judgment_id"]) == (user.username, second, Judgment.objects.get().id)
    (chat,) = _records(sft.KIND, study, form="messages", pseudonymise=True)
    assert chat["messages"] == [
        {"role": "user", "content": prompt.text},
        {"role": "assistant", "content": "A written reply."},
    ]
    assert chat["author"].startswith("anon-") and chat["author"] != user.username


def test_sft_download_is_listed_and_streams(client_for, make_member):
    study, user = _study(make_member, allow_rewrite=True)
    researcher = make_member(study, role="researcher")
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    assert _post(client, study, comparison_id, choice="a", rewrite_text="Written.").status_code == 200
    assert registry.get("sft.jsonl") is not None and registry.get("sft.parquet") is not None
    download = client_for(researcher).get(reverse("study_export", args=[study.slug, "sft.jsonl"]) + "?form=messages")
    assert download.status_code == 200, download.content[:300]
    (line,) = b"".join(download.streaming_content).decode().splitlines()
    assert json.loads(line)["messages"][-1] == {"role": "assistant", "content": "Written."}
    refused = client.get(reverse("study_export", args=[study.slug, "sft.jsonl"]))
    assert refused.status_code in (403, 404), "annotators do not download the study's data"


def test_the_prompt_page_shows_who_wrote_a_response_and_what_was_flagged(client_for, make_member):
    study, user = _study(make_member, feedback_tags=TAGS, allow_rewrite=True)
    researcher = make_member(study, role="researcher")
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    posted = _post(client, study, comparison_id, choice="a", tag_1=["unsafe"], rewrite_text="Mine, better.")
    assert posted.status_code == 200
    prompt_id = Comparison.objects.get(id=comparison_id).prompt_id
    html = client_for(researcher).get(reverse("data_prompt", args=[study.slug, prompt_id])).content.decode()
    assert f"written by {user.username}" in html and "Mine, better." in html
    assert re.search(r'<span class="tag" dir="auto">[A-D]: unsafe</span>', html)


def test_reviewers_see_the_issues_each_answer_flagged(client_for, make_member):
    from annotation.services.review import review_items_send

    study, user = _study(make_member, feedback_tags=TAGS, tag_spans=True, review_rules=["flagged"])
    reviewer = make_member(study, role="reviewer")
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    posted = _post(client, study, comparison_id, choice="a", tag_0=["off topic"], span=["1:0:4:unsafe"])
    assert posted.status_code == 200
    review_items_send(study=study, firsts={comparison_id: Judgment.objects.get().id}, detail="check")
    item = study.review_items.get()
    html = client_for(reviewer).get(reverse("review_item", args=[study.slug, item.id])).content.decode()
    first, second = _shown(comparison_id)
    letters = dict(zip(ComparisonItem.objects.filter(comparison_id=comparison_id).order_by("position").values_list(
        "candidate_id", flat=True), "AB", strict=True))  # fmt: skip
    text = Candidate.objects.get(id=second).text
    assert f'<span class="tag">{letters[first]}: off topic</span>' in html
    assert f'<span class="tag">{letters[second]} “{text[:4]}”: unsafe</span>' in html
