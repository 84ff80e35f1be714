"""Review and adjudication: the rules that fill the review queue, verdicts and
their history, what the reward model and the exports then read, annotators'
amendments, flags, and the pages and API around them."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from activelearn import features
from annotation import services
from annotation.exports import registry as export_registry
from annotation.models import (
    Assignment,
    Comparison,
    ComparisonItem,
    Judgment,
    JudgmentChange,
    Membership,
    ReviewItem,
    RewardModelVersion,
    Study,
)
from annotation.services.errors import InvalidAnswer
from annotation.services.review import (
    judgment_amend,
    membership_flag_set,
    review_verdict,
    reviews_collect,
    reviews_sweep,
)
from tests.factories import study_with_queue

pytestmark = pytest.mark.django_db


def _items(comparison: Comparison) -> list[int]:
    return list(
        ComparisonItem.objects.filter(comparison=comparison).order_by("position").values_list("candidate_id", flat=True)
    )


def _answer(study: Study, user, comparison: Comparison, choice: str, *, flipped: bool = False) -> Judgment:
    """``user`` answers ``comparison`` with ``choice`` (a = first by position), shown
    in position order or, ``flipped``, the other way round."""
    shown = _items(comparison)
    if flipped:
        shown, choice = shown[::-1], {"a": "b", "b": "a"}.get(choice, choice)
    Assignment.objects.update_or_create(
        comparison=comparison, annotator=user,
        defaults={"study": study, "leased_at": timezone.now(), "expires_at": timezone.now() + timedelta(minutes=5),
                  "display_order": shown},
    )  # fmt: skip
    return services.judgment_submit(study=study, annotator=user, comparison_id=comparison.id, choice=choice).judgment


@pytest.fixture
def team(make_member):
    study = study_with_queue(
        n_prompts=2, n_candidates=3, review_rules=["disagreement", "gold", "flagged"], evaluation_rate=0.0
    )
    people = {name: make_member(study, username=name) for name in ("ann", "bob", "cy")}
    people["rev"] = make_member(study, Membership.Role.REVIEWER, username="rev")
    people["res"] = make_member(study, Membership.Role.RESEARCHER, username="res")
    return study, people


def _first(study: Study) -> Comparison:
    return Comparison.objects.filter(study=study, is_gold=False).order_by("id").first()


def test_people_who_disagree_send_the_comparison_to_review_once(team):
    study, p = team
    comparison = _first(study)
    _answer(study, p["ann"], comparison, "a")
    assert reviews_collect(study_id=study.id) == 0  # one answer: nothing to disagree with
    _answer(study, p["bob"], comparison, "a", flipped=True)  # bob saw them the other way round
    assert reviews_collect(study_id=study.id) == 0  # the same answer (a), seen the other way round
    cy = _answer(study, p["cy"], comparison, "b")
    assert reviews_collect(study_id=study.id) == 1
    item = ReviewItem.objects.get(comparison=comparison)
    assert item.status == "open"
    assert item.reasons == [{"rule": "disagreement", "judgment": cy.id, "detail": "2 different answers"}]
    assert reviews_collect(study_id=study.id) == 0 and reviews_sweep() == 0  # looked at once
    assert ReviewItem.objects.get(comparison=comparison).reasons == item.reasons


def test_a_verdict_confirms_overturns_and_excludes_and_keeps_the_history(team):
    study, p = team
    comparison = _first(study)
    a, b = _items(comparison)
    ann = _answer(study, p["ann"], comparison, "a")
    bob = _answer(study, p["bob"], comparison, "a", flipped=True)  # shown the other way: bob's "b" is candidate a
    cy = _answer(study, p["cy"], comparison, "b")
    reviews_collect(study_id=study.id)
    item = ReviewItem.objects.get(comparison=comparison)

    with pytest.raises(InvalidAnswer, match="needs a reason"):
        review_verdict(item=item, by=p["rev"], answer="a")
    with pytest.raises(InvalidAnswer, match="letters best first"):
        review_verdict(item=item, by=p["rev"], answer="first one", reason="x")
    review_verdict(item=item, by=p["rev"], answer="b", reason="B answers the question")

    ann.refresh_from_db(), bob.refresh_from_db(), cy.refresh_from_db()
    assert (ann.review_state, ann.adjudicated_ranking) == ("overturned", [b, a])
    assert ann.adjudicated_choice == "b"  # ann saw A first
    assert (bob.review_state, bob.adjudicated_ranking, bob.adjudicated_choice) == ("overturned", [b, a], "a")
    assert cy.review_state == "confirmed" and cy.adjudicated_ranking is None
    # The annotators' own answers are untouched.
    assert (ann.choice, ann.ranking, bob.choice, bob.ranking) == ("a", [a, b], "b", [a, b])
    history = list(JudgmentChange.objects.filter(review=item).order_by("judgment_id"))
    assert [(c.judgment_id, c.action, c.by_id) for c in history] == [
        (ann.id, "overturn", p["rev"].id), (bob.id, "overturn", p["rev"].id), (cy.id, "confirm", p["rev"].id),
    ]  # fmt: skip
    assert history[0].before["review_state"] == "" and history[0].after["adjudicated_ranking"] == [b, a]
    assert history[0].reason == "B answers the question"
    item.refresh_from_db()
    assert item.status == "resolved" and item.resolved_by_id == p["rev"].id and item.verdict["answer"] == "b"

    # The reward model learns the adjudicated labels: every pair now says b over a, at full weight.
    index = {cid: k for k, cid in enumerate(sorted({a, b}))}
    judged = features.study_judged_preferences(study_id=study.id, index=index)
    assert sorted(judged.judgment_ids.tolist()) == sorted([ann.id, bob.id, cy.id])
    assert {(int(x), int(y)) for x, y in zip(judged.data.pair_left, judged.data.pair_right, strict=True)} == {
        (index[b], index[a])
    }
    assert judged.reviewed.all()

    # A changed verdict: exclude bob's answer, keep the rest; only what changed is written.
    review_verdict(item=item, by=p["res"], answer="b", exclude=[bob.id], reason="bob did not read it")
    bob.refresh_from_db()
    assert bob.review_state == "excluded"
    assert JudgmentChange.objects.filter(review=item).count() == 4
    judged = features.study_judged_preferences(study_id=study.id, index=index)
    assert bob.id not in judged.judgment_ids.tolist()


def test_excluding_everything_and_list_answers(make_member):
    study = study_with_queue(
        n_prompts=1, n_candidates=3, mode="listwise", list_size=3, review_rules=["disagreement"], evaluation_rate=0.0
    )
    comparison = _first(study)
    x, y, z = _items(comparison)
    ann, bob, rev = make_member(study), make_member(study), make_member(study, Membership.Role.REVIEWER)
    for user, order in ((ann, [[0], [1], [2]]), (bob, [[2], [1], [0]])):
        Assignment.objects.create(
            study=study, comparison=comparison, annotator=user, leased_at=timezone.now(),
            expires_at=timezone.now() + timedelta(minutes=5), display_order=[x, y, z],
        )  # fmt: skip
        services.judgment_submit(study=study, annotator=user, comparison_id=comparison.id, ranking=order)
    reviews_collect(study_id=study.id)
    item = ReviewItem.objects.get(comparison=comparison)
    with pytest.raises(InvalidAnswer, match="exactly once"):
        review_verdict(item=item, by=rev, answer="C>B", reason="r")
    review_verdict(item=item, by=rev, answer="C>A>B", reason="neither had it right")
    assert set(Judgment.objects.filter(comparison=comparison).values_list("review_state", flat=True)) == {"overturned"}
    assert Judgment.objects.get(annotator=ann).adjudicated_ranking == [z, x, y]
    review_verdict(item=item, by=rev, answer="exclude", reason="the prompt is broken")
    assert set(Judgment.objects.filter(comparison=comparison).values_list("review_state", flat=True)) == {"excluded"}
    assert features.study_judged_preferences(study_id=study.id, index={x: 0, y: 1, z: 2}).judgment_ids.size == 0


def test_gold_misses_and_flagged_annotators_go_to_review(team):
    study, p = team
    comparisons = list(Comparison.objects.filter(study=study).order_by("id")[:3])
    gold = comparisons[0]
    better, worse = _items(gold)
    Comparison.objects.filter(id=gold.id).update(is_gold=True, gold_answer={"better": better, "worse": worse})
    right = _answer(study, p["ann"], gold, "a")
    wrong = _answer(study, p["bob"], gold, "b")
    reviews_collect(study_id=study.id)
    reasons = ReviewItem.objects.get(comparison=gold).reasons
    assert {"rule": "gold", "judgment": wrong.id, "detail": "misses the gold item's better response"} in reasons
    assert not any(r["rule"] == "gold" and r["judgment"] == right.id for r in reasons)

    # cy answers two comparisons; flagging her sends both to review at once.
    cy_answers = [_answer(study, p["cy"], c, "a") for c in comparisons[1:]]
    reviews_collect(study_id=study.id)
    assert not ReviewItem.objects.filter(comparison__in=comparisons[1:]).exists()
    membership_flag_set(study=study, user_id=p["cy"].id, flagged=True)
    flagged = ReviewItem.objects.filter(comparison__in=comparisons[1:])
    assert sorted(r["judgment"] for i in flagged for r in i.reasons) == sorted(j.id for j in cy_answers)
    assert all(r["detail"] == "flagged by a researcher" for i in flagged for r in i.reasons)
    # A resolved item opens again when a new finding arrives on an unreviewed answer.
    item = flagged.first()
    review_verdict(item=item, by=p["rev"], answer="a")
    later = _answer(study, p["cy"], Comparison.objects.filter(study=study).order_by("id")[3], "a")
    reviews_collect(study_id=study.id)
    assert ReviewItem.objects.get(comparison_id=later.comparison_id).status == "open"
    item.refresh_from_db()
    assert item.status == "resolved"  # its answer was reviewed: nothing new there


def test_the_model_rule_reads_the_contradictions_a_fit_recorded(team):
    study, p = team
    Study.objects.filter(id=study.id).update(review_rules=["model"])
    comparisons = list(Comparison.objects.filter(study=study).order_by("id")[:2])
    doubted = _answer(study, p["ann"], comparisons[0], "a")
    _answer(study, p["ann"], comparisons[1], "a")
    RewardModelVersion.objects.create(
        study=study, version=1, model_type="kernel", embedder_key="k", checkpoint_path="x", n_judgments=2,
        metrics={"review_contradictions": [[doubted.id, 0.04]]},
    )  # fmt: skip
    assert reviews_collect(study_id=study.id) == 1
    item = ReviewItem.objects.get()
    assert item.reasons == [{"rule": "model", "judgment": doubted.id, "detail": "v1 gives this answer 4%"}]
    assert reviews_collect(study_id=study.id) == 0  # the same version is not read twice


def test_a_fit_records_the_training_answers_it_contradicts_and_never_evaluation_ones(
    make_member, settings, tmp_path, monkeypatch
):
    from activelearn import services as loop_services

    reward_model_fit = loop_services.reward_model_fit
    settings.PREFLOOP_CHECKPOINT_DIR = tmp_path
    # Which pairs the publishing rule validates on is a hash of the study id; with six
    # pairs, some draws leave nothing to learn them from and the fit is (rightly) not
    # published. This test is about what a published fit records: no validation split.
    monkeypatch.setattr(loop_services, "_validation_rows", lambda **kwargs: np.zeros(0, dtype=np.int64))
    study = study_with_queue(
        n_prompts=1, n_candidates=4, review_rules=["model"], review_confidence=0.7, evaluation_rate=0.0,
        model_type="kernel",
    )  # fmt: skip
    prompt_candidates = sorted(c.id for c in study.candidates.all())
    utility = {cid: k for k, cid in enumerate(prompt_candidates)}  # higher id: better
    users = [make_member(study) for _ in range(6)]
    contrarian = make_member(study)
    comparisons = list(Comparison.objects.filter(study=study).order_by("id"))
    for comparison in comparisons:
        a, b = _items(comparison)
        truth = "a" if utility[a] > utility[b] else "b"
        for user in users:
            _answer(study, user, comparison, truth)
    a, b = _items(comparisons[0])
    wrong = _answer(study, contrarian, comparisons[0], "b" if utility[a] > utility[b] else "a")
    version = reward_model_fit(study_id=study.id)
    assert version is not None, Study.objects.get(id=study.id).last_fit_note
    doubted = dict(version.metrics["review_contradictions"])
    assert wrong.id in doubted and doubted[wrong.id] <= 0.3
    assert len(doubted) == 1  # the people who agreed with the rest are not doubted

    # Evaluation judgments are never looked at by the model rule.
    Judgment.objects.filter(id=wrong.id).update(evaluation=True)
    Study.objects.filter(id=study.id).update(last_fit_at=None, last_fit_train=0)
    RewardModelVersion.objects.filter(study=study).delete()
    version = reward_model_fit(study_id=study.id)
    assert wrong.id not in dict(version.metrics.get("review_contradictions", []))


def test_a_verdict_makes_the_next_fit_due(team, settings, tmp_path):
    from activelearn.services import _fit_due

    study, p = team
    comparison = _first(study)
    for name in ("ann", "bob", "cy"):
        _answer(study, p[name], comparison, "a" if name != "cy" else "b")
    Study.objects.filter(id=study.id).update(last_fit_at=timezone.now(), last_fit_train=3)
    study.refresh_from_db()
    assert not _fit_due(study=study, live=None, n_train=3)
    reviews_collect(study_id=study.id)
    review_verdict(item=ReviewItem.objects.get(), by=p["rev"], answer="a", reason="two of three, and right")
    assert _fit_due(study=study, live=None, n_train=3)


def test_annotators_amend_their_own_answers_within_the_window(team):
    study, p = team
    comparison = _first(study)
    a, b = _items(comparison)
    mine = _answer(study, p["ann"], comparison, "a")
    judgment_amend(study=study, annotator=p["ann"], judgment_id=mine.id, choice="b")
    mine.refresh_from_db()
    assert (mine.choice, mine.ranking) == ("b", [b, a]) and mine.amended_at is not None
    change = JudgmentChange.objects.get(judgment=mine)
    assert (change.action, change.by_id, change.before["choice"], change.after["choice"]) == (
        "amend",
        p["ann"].id,
        "a",
        "b",
    )
    judgment_amend(study=study, annotator=p["ann"], judgment_id=mine.id, choice="b")  # the same: nothing written
    assert JudgmentChange.objects.filter(judgment=mine).count() == 1
    with pytest.raises(services.AnnotationError):
        judgment_amend(study=study, annotator=p["bob"], judgment_id=mine.id, choice="a")  # not bob's
    with pytest.raises(InvalidAnswer, match="does not allow ties"):
        Study.objects.filter(id=study.id).update(allow_tie=False)
        study.refresh_from_db()
        judgment_amend(study=study, annotator=p["ann"], judgment_id=mine.id, choice="tie")
    Judgment.objects.filter(id=mine.id).update(created_at=timezone.now() - timedelta(seconds=study.amend_seconds + 1))
    with pytest.raises(InvalidAnswer, match="10 minutes after"):
        judgment_amend(study=study, annotator=p["ann"], judgment_id=mine.id, choice="a")
    Judgment.objects.filter(id=mine.id).update(created_at=timezone.now(), review_state="confirmed")
    with pytest.raises(InvalidAnswer, match="reviewer has settled"):
        judgment_amend(study=study, annotator=p["ann"], judgment_id=mine.id, choice="a")
    Study.objects.filter(id=study.id).update(amend_seconds=0)
    Judgment.objects.filter(id=mine.id).update(review_state="")
    study.refresh_from_db()
    with pytest.raises(InvalidAnswer, match="does not let annotators change"):
        judgment_amend(study=study, annotator=p["ann"], judgment_id=mine.id, choice="a")


def _export(client, study, key: str) -> list[dict]:
    response = client.get(reverse("study_export", args=[study.slug, key]))
    assert response.status_code == 200
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines() if line]


def test_exports_carry_the_raw_and_the_adjudicated_labels(team, client_for):
    study, p = team
    comparison = _first(study)
    a, b = _items(comparison)
    ann = _answer(study, p["ann"], comparison, "a")
    bob = _answer(study, p["bob"], comparison, "b")
    cy = _answer(study, p["cy"], comparison, "b")
    reviews_collect(study_id=study.id)
    review_verdict(item=ReviewItem.objects.get(), by=p["rev"], answer="b", exclude=[cy.id], reason="cy skimmed")
    client = client_for(p["res"])
    rows = {r["judgment_id"]: r for r in _export(client, study, "judgments.jsonl")}
    assert rows[ann.id]["ranking"] == [[a], [b]] and rows[ann.id]["choice"] == "a"
    assert rows[ann.id]["review_state"] == "overturned"
    assert (rows[ann.id]["adjudicated_choice"], rows[ann.id]["adjudicated_ranking"]) == ("b", [[b], [a]])
    assert (rows[bob.id]["review_state"], rows[bob.id]["adjudicated_ranking"]) == ("confirmed", None)
    assert rows[cy.id]["review_state"] == "excluded"
    pairs = _export(client, study, "dpo.jsonl")
    assert sorted(r["judgment_id"] for r in pairs) == sorted([ann.id, bob.id])  # cy's is excluded
    assert {(r["chosen_id"], r["rejected_id"]) for r in pairs} == {(b, a)}  # ann's as adjudicated
    assert "review_state" in export_registry.get("judgments.csv").kind.schema.names


def test_the_review_pages_for_reviewers_and_the_answers_page_for_annotators(team, client_for):
    study, p = team
    comparison = _first(study)
    _answer(study, p["ann"], comparison, "a")
    _answer(study, p["bob"], comparison, "b")
    reviews_collect(study_id=study.id)
    item = ReviewItem.objects.get()
    reviewer = client_for(p["rev"])
    queue = reviewer.get(reverse("review_queue", args=[study.slug]))
    assert queue.status_code == 200 and f"#{item.id}" in queue.content.decode()
    assert "Annotators disagree" in queue.content.decode()
    page = reviewer.get(reverse("review_item", args=[study.slug, item.id])).content.decode()
    assert "A is better" in page and "Why it is here" in page and "No change yet" in page
    assert client_for(p["ann"]).get(reverse("review_queue", args=[study.slug])).status_code == 404
    refused = reviewer.post(reverse("review_item_verdict", args=[study.slug, item.id]), {"answer": "b"}, follow=True)
    assert "needs a reason" in refused.content.decode()
    done = reviewer.post(
        reverse("review_item_verdict", args=[study.slug, item.id]), {"answer": "b", "reason": "clearer"}, follow=True
    )
    assert "settled on b" in done.content.decode()
    assert ReviewItem.objects.get().status == "resolved"
    history = reviewer.get(reverse("review_item", args=[study.slug, item.id])).content.decode()
    assert "Overturned" in history and "clearer" in history

    annotator = client_for(p["bob"])
    mine = annotator.get(reverse("my_answers", args=[study.slug])).content.decode()
    assert "Confirmed" in mine and "Change</a>" not in mine  # reviewed: no longer changeable
    cy = _answer(study, p["cy"], Comparison.objects.filter(study=study).order_by("id")[1], "a")
    cy_client = client_for(p["cy"])
    assert "Change</a>" in cy_client.get(reverse("my_answers", args=[study.slug])).content.decode()
    form = cy_client.get(reverse("answer_amend", args=[study.slug, cy.id])).content.decode()
    assert 'id="current-answer" dir="ltr">A&gt;B<' in form
    cy_client.post(reverse("answer_amend", args=[study.slug, cy.id]), {"choice": "b"})
    cy.refresh_from_db()
    assert cy.choice == "b"
    # ann cannot open cy's answer: she is sent back to her own list.
    elsewhere = client_for(p["ann"]).get(reverse("answer_amend", args=[study.slug, cy.id]), follow=True)
    assert elsewhere.redirect_chain[-1][0] == reverse("my_answers", args=[study.slug])
    assert "There is no answer of yours" in elsewhere.content.decode()


def test_the_review_api(team):
    study, p = team
    comparison = _first(study)
    a, b = _items(comparison)
    ann = _answer(study, p["ann"], comparison, "a")
    _answer(study, p["bob"], comparison, "b")
    reviews_collect(study_id=study.id)
    api = APIClient()
    api.force_authenticate(p["rev"])
    base = f"/api/v1/studies/{study.slug}/reviews/"
    listing = api.get(base).json()
    assert listing["count"] == 1 and listing["next_page"] is None
    item = listing["results"][0]
    assert item["candidate_ids"] == [a, b] and len(item["answers"]) == 2
    assert api.get(base + "?rule=gold").json()["count"] == 0
    assert api.get(base + "?status=nope").status_code == 400
    refused = api.post(f"{base}{item['id']}/verdict/", {"answer": "b"}, format="json")
    assert refused.status_code == 400 and "reason" in refused.json()["detail"]
    done = api.post(f"{base}{item['id']}/verdict/", {"answer": "b", "reason": "r"}, format="json").json()
    assert done["status"] == "resolved" and {h["action"] for h in done["history"]} == {"overturn", "confirm"}
    assert api.get(f"{base}{item['id']}/").json()["verdict"]["answer"] == "b"

    api.force_authenticate(p["ann"])
    assert api.get(base).status_code == 404
    mine = api.get(f"/api/v1/studies/{study.slug}/judgments/").json()["results"][0]
    assert mine["review_state"] == "overturned" and mine["adjudicated_ranking"] == [b, a]
    refused = api.post(f"/api/v1/studies/{study.slug}/judgments/{ann.id}/amend/", {"choice": "b"}, format="json")
    assert refused.status_code == 400 and "reviewer" in refused.json()["detail"]

    api.force_authenticate(p["res"])
    flag = api.put(f"/api/v1/studies/{study.slug}/members/cy/flag/", {"flagged": True}, format="json")
    assert flag.json() == {"user_id": p["cy"].id, "username": "cy", "role": "annotator", "flagged": True}
    nobody = api.put(f"/api/v1/studies/{study.slug}/members/nobody/flag/", {"flagged": True}, format="json")
    assert nobody.status_code == 404


def test_study_settings_take_the_review_rules(team, client_for):
    study, p = team
    with pytest.raises(ValidationError, match="review rules"):
        services.study_settings_update(study=study, changes={"review_rules": ["vibes"]})
    services.study_settings_update(study=study, changes={"review_rules": ["model"], "amend_seconds": 60})
    study.refresh_from_db()
    assert study.review_rules == ["model"] and study.amend_seconds == 60
    page = client_for(p["res"]).get(reverse("study_settings", args=[study.slug])).content.decode()
    assert "An answer contradicts a confident model" in page


def test_reviewers_are_a_role_researchers_give(team, client_for):
    study, p = team
    newcomer = type(p["ann"]).objects.create_user(username="newcomer", password="pw-newcomer-1")
    client_for(p["res"]).post(
        reverse("study_member_add", args=[study.slug]), {"username": "newcomer", "role": "reviewer"}
    )
    assert Membership.objects.get(study=study, user=newcomer).role == "reviewer"
    home = client_for(newcomer).get(reverse("home")).content.decode()
    assert reverse("review_queue", args=[study.slug]) in home


def test_review_queue_page_queries_do_not_grow_with_items(team, client_for, django_assert_max_num_queries):
    study, p = team
    for comparison in Comparison.objects.filter(study=study)[:4]:
        _answer(study, p["ann"], comparison, "a")
        _answer(study, p["bob"], comparison, "b")
    reviews_collect(study_id=study.id)
    assert ReviewItem.objects.count() == 4
    client = client_for(p["rev"])
    with django_assert_max_num_queries(12):
        assert client.get(reverse("review_queue", args=[study.slug])).status_code == 200
