"""Answer options a study can turn on: both bad, strength, rationale, aspect ratings, skip.

Through the real flow (client → view → service → DB). A refused answer must
say what to fix and give back what the annotator typed and rated.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotation.models import Assignment, Comparison, Judgment, Study
from tests.annotation.test_views import HTMX, annotate_url, comparison_id_in, open_comparison, submit_url
from tests.factories import study_with_queue

pytestmark = pytest.mark.django_db


def _study(make_member, **options):
    study = study_with_queue(n_prompts=2, n_candidates=3, **options)
    return study, make_member(study)


def _post(client, study, comparison_id, **data):
    return client.post(submit_url(study), {"comparison_id": comparison_id, **data}, **HTMX)


def _items(comparison_id: int) -> list[int]:
    """Candidate ids in the order the (only) annotator of the comparison saw them."""
    return Assignment.objects.get(comparison_id=comparison_id).display_order


def test_default_study_offers_only_a_b_tie_and_skip(client_for, make_member):
    study, user = _study(make_member)
    html = client_for(user).get(annotate_url(study)).content.decode()
    assert [v for v in ("a", "b", "tie", "both_bad") if f'value="{v}"' in html] == ["a", "b", "tie"]
    assert 'name="rationale"' not in html and "aspect_" not in html
    assert 'value="skip"' in html and "Skip this comparison" in html


def test_both_bad_is_stored_as_a_flagged_tie_and_trains_as_both_bad(client_for, make_member):
    from activelearn.features import study_preferences

    study, user = _study(make_member, allow_both_bad=True)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    html = client.get(annotate_url(study)).content.decode()
    assert 'value="both_bad"' in html and 'aria-keyshortcuts="4"' in html
    assert _post(client, study, comparison_id, choice="both_bad").status_code == 200
    judgment = Judgment.objects.get()
    first, second = _items(comparison_id)
    assert (judgment.choice, judgment.ranking) == ("both_bad", [[first, second]])
    data = study_preferences(study_id=study.id, index={first: 0, second: 1})
    assert data.pair_both_bad.tolist() == [True] and data.pair_outcome.tolist() == [0.5]


def test_both_bad_is_refused_when_the_study_does_not_offer_it(client_for, make_member):
    study, user = _study(make_member)
    client = client_for(user)
    response = _post(client, study, open_comparison(client, study), choice="both_bad")
    assert response.status_code == 400 and "does not offer “Both bad”" in response.content.decode()
    assert not Judgment.objects.exists()


def test_strength_scale_is_one_press_from_a_much_better_to_b_much_better(client_for, make_member):
    study, user = _study(make_member, ask_strength=True, allow_both_bad=True)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    html = client.get(annotate_url(study)).content.decode()
    values = ["a:strong", "a:clear", "a:slight", "tie", "b:slight", "b:clear", "b:strong", "both_bad"]
    positions = [html.index(f'value="{v}"') for v in values]
    assert positions == sorted(positions), "the scale runs from A much better to B much better"
    for key, value in enumerate(values, start=1):
        assert f'value="{value}" class="btn btn-choice' in html
        assert f'aria-keyshortcuts="{key}"' in html
    assert _post(client, study, comparison_id, choice="b:slight").status_code == 200
    judgment = Judgment.objects.get()
    assert (judgment.choice, judgment.strength) == ("b", "slight")


def test_a_preference_without_strength_is_refused_when_strength_is_asked(client_for, make_member):
    study, user = _study(make_member, ask_strength=True)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    response = _post(client, study, comparison_id, choice="a")
    assert response.status_code == 400 and "how much better" in response.content.decode()
    # A tie needs no strength.
    assert _post(client, study, comparison_id, choice="tie").status_code == 200
    assert Judgment.objects.get().strength == ""


def test_required_rationale_refusal_keeps_what_was_rated(client_for, make_member):
    study, user = _study(make_member, ask_rationale="required", aspects=["helpfulness", "honesty"])
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    ratings = {"aspect_0_0": "4", "aspect_0_1": "5", "aspect_1_0": "2", "aspect_1_1": "3"}
    response = _post(client, study, comparison_id, choice="a", rationale="   ", **ratings)
    assert response.status_code == 400
    html = response.content.decode()
    assert "explain your answer" in html
    assert comparison_id_in(html) == comparison_id
    for name, value in ratings.items():
        assert f'name="{name}" value="{value}" required checked' in html, name
    assert not Judgment.objects.exists()

    response = _post(client, study, comparison_id, choice="a", rationale=" A cites its source. ", **ratings)
    assert response.status_code == 200
    judgment = Judgment.objects.get()
    first, second = _items(comparison_id)
    assert judgment.rationale == "A cites its source."
    assert judgment.aspect_ratings == {
        str(first): {"helpfulness": 4, "honesty": 5},
        str(second): {"helpfulness": 2, "honesty": 3},
    }


def test_missing_aspect_ratings_are_named(client_for, make_member):
    study, user = _study(make_member, aspects=["helpfulness", "harmlessness"])
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    response = _post(client, study, comparison_id, choice="b", aspect_0_0="3", aspect_1_0="9", rationale="x")
    assert response.status_code == 400
    html = response.content.decode()
    assert "missing: harmlessness of A, helpfulness of B, harmlessness of B" in html
    # A rationale the study does not ask for is not stored.
    ok = _post(
        client,
        study,
        comparison_id,
        choice="b",
        rationale="x",
        **{f"aspect_{p}_{a}": "3" for p in (0, 1) for a in (0, 1)},
    )
    assert ok.status_code == 200
    assert Judgment.objects.get().rationale == ""


def test_optional_rationale_is_stored_when_given(client_for, make_member):
    study, user = _study(make_member, ask_rationale="optional")
    client = client_for(user)
    html = client.get(annotate_url(study)).content.decode()
    assert (
        'name="rationale"' in html
        and "(optional)" in html
        and " required" not in html.split('name="rationale"')[1][:80]
    )
    comparison_id = comparison_id_in(html)
    _post(client, study, comparison_id, choice="tie", rationale="Both are correct.")
    assert Judgment.objects.get().rationale == "Both are correct."


def test_skip_returns_the_comparison_to_others_and_never_to_me(client_for, make_member):
    study, user = _study(make_member)
    other = make_member(study)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    response = _post(client, study, comparison_id, choice="skip", skip_reason="cannot_judge", skip_note="  ")
    assert response.status_code == 200
    following = comparison_id_in(response.content.decode())
    assert following not in (None, comparison_id)
    assignment = Assignment.objects.get(comparison_id=comparison_id, annotator=user)
    assert (assignment.status, assignment.skip_reason) == ("skipped", "cannot_judge")
    assert Comparison.objects.get(id=comparison_id).status == Comparison.Status.QUEUED
    assert not Judgment.objects.exists()
    # Another annotator gets it (it is first in the queue again); I never see it again.
    assert open_comparison(client_for(other), study) == comparison_id
    mine = set()
    for _ in range(10):
        mine.add(following)
        response = _post(client, study, following, choice="a")
        following = comparison_id_in(response.content.decode())
        if following is None:
            break
    # Everything else, except what the other annotator holds (on screen and leased ahead).
    theirs = set(Assignment.objects.filter(annotator=other).values_list("comparison_id", flat=True))
    everything = set(Comparison.objects.filter(study=study).values_list("id", flat=True))
    assert comparison_id in theirs
    assert mine == everything - theirs


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"skip_reason": ""}, "Choose why you are skipping"),
        ({"skip_reason": "other", "skip_note": " "}, "say briefly why"),
    ],
)
def test_skip_needs_a_reason_and_keeps_the_form(client_for, make_member, data, message):
    study, user = _study(make_member)
    client = client_for(user)
    comparison_id = open_comparison(client, study)
    response = _post(client, study, comparison_id, choice="skip", **data)
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert comparison_id_in(html) == comparison_id
    assert '<details class="skip" open>' in html
    assert Assignment.objects.get(comparison_id=comparison_id).status == "active"


def test_skip_is_refused_when_the_study_does_not_allow_it(client_for, make_member):
    study, user = _study(make_member, allow_skip=False)
    client = client_for(user)
    html = client.get(annotate_url(study)).content.decode()
    assert 'value="skip"' not in html
    response = _post(client, study, comparison_id_in(html), choice="skip", skip_reason="broken")
    assert response.status_code == 400 and "does not allow skipping" in response.content.decode()


def test_aspects_must_be_a_short_list_of_distinct_names():
    study = Study(name="x", slug="x", aspects=["Helpfulness", "helpfulness"])
    with pytest.raises(ValidationError, match="distinct"):
        study.full_clean()
    study.aspects = "helpfulness"
    with pytest.raises(ValidationError, match="list of names"):
        study.full_clean()


def test_blind_study_hides_model_names_and_orders_items_per_annotator(client_for, make_member, monkeypatch):
    import random

    from annotation import services

    rng = random.Random(7)  # seeded, so the test is not at the mercy of chance
    monkeypatch.setattr(services.leasing.random, "SystemRandom", lambda: rng)
    study = study_with_queue(n_prompts=6, n_candidates=2, overlap=2)
    users = [make_member(study), make_member(study)]
    orders: dict[int, list[list[int]]] = {}
    for user in users:
        client = client_for(user)
        html = client.get(annotate_url(study)).content.decode()
        assert "model-" not in html, "a model name was shown in a blind study"
        comparison_id = comparison_id_in(html)
        for _ in range(6):
            shown = Assignment.objects.get(comparison_id=comparison_id, annotator=user).display_order
            orders.setdefault(comparison_id, []).append(shown)
            response = _post(client, study, comparison_id, choice="a")
            judgment = Judgment.objects.get(comparison_id=comparison_id, annotator=user)
            # "A is better" means the response shown first to this annotator.
            assert judgment.shown_order == shown and judgment.ranking == shown
            comparison_id = comparison_id_in(response.content.decode())
            if comparison_id is None:
                break
    both = [pair for pair in orders.values() if len(pair) == 2]
    assert len(both) == 6
    assert any(first != second for first, second in both), "every annotator saw the queued order"


def test_unblinded_study_shows_model_names_in_the_queued_order(client_for, make_member):
    study, user = _study(make_member, blind=False)
    client = client_for(user)
    html = client.get(annotate_url(study)).content.decode()
    comparison_id = comparison_id_in(html)
    assert _items(comparison_id) == _queued_order(comparison_id)
    for source in Comparison.objects.get(id=comparison_id).candidates.values_list("source", flat=True):
        assert f'<span class="tag source">{source}</span>' in html


def _queued_order(comparison_id: int) -> list[int]:
    return list(
        Comparison.objects.get(id=comparison_id).items.order_by("position").values_list("candidate_id", flat=True)
    )


# --- undo ---------------------------------------------------------------------------


def _undo(client, study, judgment_id):
    return client.post(reverse("annotate_undo", args=[study.slug]), {"judgment_id": judgment_id}, **HTMX)


def test_undo_takes_the_answer_back_and_shows_that_comparison_again(
    client_for, make_member, loop_calls, django_capture_on_commit_callbacks
):
    study, user = _study(make_member)
    client = client_for(user)
    first = open_comparison(client, study)
    response = _post(client, study, first, choice="a")
    html = response.content.decode()
    judgment = Judgment.objects.get()
    assert f'name="judgment_id" value="{judgment.id}"' in html and "Answer saved." in html
    second = comparison_id_in(html)
    with django_capture_on_commit_callbacks(execute=True):
        response = _undo(client, study, judgment.id)
    assert response.status_code == 200
    assert comparison_id_in(response.content.decode()) == first
    assert not Judgment.objects.exists()
    assert Assignment.objects.get(comparison_id=first).status == "active"
    assert Comparison.objects.get(id=first).status == Comparison.Status.LEASED
    assert loop_calls.retrain == [study.id], "the next model must leave the answer out"
    # Answer it again, differently; then the comparison that was next comes back.
    response = _post(client, study, first, choice="b")
    assert Judgment.objects.get().choice == "b"
    assert comparison_id_in(response.content.decode()) == second


def test_undo_is_refused_for_old_answers_and_other_peoples(client_for, make_member):
    from datetime import timedelta

    from django.utils import timezone

    study, user = _study(make_member)
    other = make_member(study)
    client = client_for(user)
    first = open_comparison(client, study)
    _post(client, study, first, choice="a")
    judgment = Judgment.objects.get()
    response = _undo(client_for(other), study, judgment.id)
    assert response.status_code == 400 and "no answer of yours to undo" in response.content.decode()
    Judgment.objects.filter(id=judgment.id).update(created_at=timezone.now() - timedelta(minutes=5))
    response = _undo(client, study, judgment.id)
    assert response.status_code == 400 and "too old to undo" in response.content.decode()
    assert Judgment.objects.filter(id=judgment.id).exists()
    # Undoing twice is harmless: the second finds nothing.
    Judgment.objects.filter(id=judgment.id).update(created_at=timezone.now())
    assert _undo(client, study, judgment.id).status_code == 200
    assert _undo(client, study, judgment.id).status_code == 400
