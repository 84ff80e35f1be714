"""The data browser (issue 18): search and filters, a prompt's page, bulk actions,
the per-prompt model figures and the disagreement flag, with query counts."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from activelearn import features
from annotation.models import (
    Candidate,
    Comparison,
    ComparisonItem,
    Judgment,
    JudgmentChange,
    Membership,
    Prompt,
    ReviewItem,
    RewardModelVersion,
)
from annotation.selectors import browse
from annotation.services.browse import judgments_exclude, prompt_model_summary_write
from annotation.services.leasing import study_judgment_count
from annotation.services.review import reviews_sweep
from tests.annotation.test_review import _answer
from tests.factories import CandidateFactory, PromptFactory, StudyFactory

pytestmark = pytest.mark.django_db


def _study(n_prompts: int = 3):
    """Prompts about fruit, one comparison of two responses each (sources "big" and "small")."""
    study = StudyFactory(evaluation_rate=0.0)
    words = ["apple orchard", "banana bread", "cherry blossom", "date palm", "elderberry jam"]
    for k in range(n_prompts):
        prompt = PromptFactory(study=study, text=f"Tell me about the {words[k % 5]} number {k}")
        a = CandidateFactory(prompt=prompt, text=f"A long answer {k} mentioning saffron", source="big")
        b = CandidateFactory(prompt=prompt, text=f"Short answer {k}", source="small")
        comparison = Comparison.objects.create(study=study, prompt=prompt, item_key=f"{a.id}-{b.id}", strategy="t")
        ComparisonItem.objects.create(comparison=comparison, candidate=a, position=0)
        ComparisonItem.objects.create(comparison=comparison, candidate=b, position=1)
    return study


def _filters(**params):
    filters, errors = browse.filters_from(params)
    assert not errors, errors
    return filters


def _ids(study, **params) -> list[int]:
    return list(browse.browse_queryset(study=study, filters=_filters(**params)).values_list("id", flat=True))


def _prompt(study, k: int) -> Prompt:
    return Prompt.objects.filter(study=study).order_by("id")[k]


def test_search_finds_prompts_by_their_text_or_their_responses_text():
    study = _study(5)
    assert _ids(study, q="cherry") == [_prompt(study, 2).id]
    assert len(_ids(study, q="saffron")) == 5  # a word in the responses only
    assert _ids(study, q="nothing-like-this") == []
    if connection.vendor == "postgresql":  # full-text search: words, in any order
        assert _ids(study, q="blossom cherry") == [_prompt(study, 2).id]


def test_filters_by_source_annotator_date_agreement_and_model_certainty(make_member):
    study = _study(4)
    Candidate.objects.filter(prompt=_prompt(study, 3), source="small").update(source="tiny")
    ann, bob = make_member(study, username="ann"), make_member(study, username="bob")
    comparisons = list(Comparison.objects.filter(study=study).order_by("id"))
    _answer(study, ann, comparisons[0], "a")
    _answer(study, bob, comparisons[0], "b")  # they disagree on prompt 0
    _answer(study, ann, comparisons[1], "a")
    _answer(study, bob, comparisons[1], "a")  # they agree on prompt 1
    old = _answer(study, ann, comparisons[2], "a")
    Judgment.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(days=10))
    reviews_sweep()  # keeps each comparison's disagreement flag, rules or none
    assert list(Comparison.objects.filter(study=study, disagreement=True)) == [comparisons[0]]

    p = [_prompt(study, k).id for k in range(4)]
    assert _ids(study, source="tiny") == [p[3]]
    assert sorted(_ids(study, annotator="bob")) == [p[0], p[1]]
    since = (timezone.now() - timedelta(days=2)).date().isoformat()
    assert sorted(_ids(study, annotator="ann", since=since)) == [p[0], p[1]]
    assert _ids(study, until=(timezone.now() - timedelta(days=5)).date().isoformat()) == [p[2]]
    assert _ids(study, agreement="disagree") == [p[0]]
    assert sorted(_ids(study, agreement="agree")) == [p[1], p[2]]
    assert _ids(study, agreement="unjudged") == [p[3]]
    Prompt.objects.filter(id=p[1]).update(model_p_best=0.4, model_version=1)
    Prompt.objects.filter(id=p[2]).update(model_p_best=0.9, model_version=1)
    assert _ids(study, below="0.5") == [p[1]]
    assert _ids(study, sort="uncertain")[:2] == [p[1], p[2]]  # least sure first, unscored last

    filters, errors = browse.filters_from({"since": "yesterday", "below": "2", "agreement": "maybe", "sort": "x"})
    assert set(errors) == {"since", "below", "agreement", "sort"} and filters == browse.BrowseFilters()


@pytest.mark.django_db(transaction=True)
def test_each_judgment_keeps_its_comparisons_prompt_however_it_was_written(make_member):
    """The who/when filters read the prompt each judgment keeps: an answer, a row
    written through the ORM and the judgments the migration found all carry it."""
    from django.db.migrations.executor import MigrationExecutor

    study = _study(3)
    ann = make_member(study, username="ann")
    comparisons = list(Comparison.objects.filter(study=study).order_by("id"))
    answered = _answer(study, ann, comparisons[0], "a")
    assert answered.prompt_id == comparisons[0].prompt_id
    written = Judgment.objects.create(study=study, comparison=comparisons[1], annotator=ann, choice="b")
    assert written.prompt_id == comparisons[1].prompt_id
    assert sorted(_ids(study, annotator="ann")) == sorted(c.prompt_id for c in comparisons[:2])

    # Judgments from before the copy existed: 0036 fills it in.
    MigrationExecutor(connection).migrate([("annotation", "0035_judgment_indexes")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert dict(Judgment.objects.filter(study=study).values_list("comparison_id", "prompt_id")) == {
        c.id: c.prompt_id for c in comparisons[:2]
    }
    _answer(study, ann, comparisons[2], "a")  # the tally's triggers still count (SQLite rebuilt the table)
    assert Judgment.objects.filter(study=study).count() == 3
    assert study_judgment_count(study_id=study.id) == 3


def test_the_browser_page_runs_the_same_queries_for_5_or_60_prompts(make_member, client_for):
    counts = []
    for n in (5, 60):
        study = _study(n)
        researcher = make_member(study, Membership.Role.RESEARCHER)
        annotator = make_member(study)
        for comparison in Comparison.objects.filter(study=study)[:4]:
            _answer(study, annotator, comparison, "a")
        client = client_for(researcher)
        url = reverse("data_browser", args=[study.slug]) + "?q=Tell&agreement=agree&sort=uncertain"
        client.get(url)  # session and permission caches warm
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 10, counts


def test_a_prompt_page_shows_its_responses_by_the_models_scores_and_every_answer(make_member, client_for):
    study = _study(2)
    prompt = _prompt(study, 0)
    a, b = Candidate.objects.filter(prompt=prompt).order_by("id")
    ann = make_member(study, username="ann")
    _answer(study, ann, Comparison.objects.get(prompt=prompt), "b")
    RewardModelVersion.objects.create(
        study=study, version=3, model_type="kernel", embedder_key="k", checkpoint_path="x", n_judgments=1,
        recommendation={"prompts": {str(prompt.id): {"best": b.id, "leaderboard": [
            {"candidate": b.id, "mean": 0.8, "std": 0.1, "p_best": 0.7},
            {"candidate": a.id, "mean": -0.2, "std": 0.3, "p_best": 0.3},
        ]}}},
    )  # fmt: skip
    detail = browse.prompt_detail(study=study, prompt_id=prompt.id)
    assert [row.candidate.id for row in detail.candidates] == [b.id, a.id]  # best first
    assert (detail.candidates[0].letter, detail.candidates[0].p_best) == ("A", 0.7)
    assert detail.comparisons[0].answers[0]["said"] == "A>B"  # ann preferred b, now called A
    researcher = make_member(study, Membership.Role.RESEARCHER)
    client = client_for(researcher)
    url = reverse("data_prompt", args=[study.slug, prompt.id])
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url).content.decode()
    assert len(queries) <= 12, [q["sql"][:80] for q in queries.captured_queries]
    assert "70 %" in page and "ann" in page and "A&gt;B" in page
    other = _study(1)
    assert client.get(reverse("data_prompt", args=[study.slug, _prompt(other, 0).id])).status_code == 404


def test_published_versions_write_each_prompts_model_certainty():
    study = _study(3)
    p = [_prompt(study, k) for k in range(3)]
    version = RewardModelVersion.objects.create(
        study=study, version=2, model_type="kernel", embedder_key="k", checkpoint_path="x", n_judgments=1,
        recommendation={"prompts": {
            str(p[0].id): {"leaderboard": [{"candidate": 1, "mean": 1, "std": 0, "p_best": 0.55}]},
            str(p[1].id): {"leaderboard": [{"candidate": 2, "mean": 1, "std": 0, "p_best": 0.95}]},
        }},
    )  # fmt: skip
    Prompt.objects.filter(id=p[2].id).update(model_p_best=0.5, model_version=1)
    assert prompt_model_summary_write(study_id=study.id, version=version) == 2
    got = dict(Prompt.objects.filter(study=study).values_list("id", "model_p_best"))
    assert got == {p[0].id: 0.55, p[1].id: 0.95, p[2].id: None}


def test_bulk_actions_exclude_review_and_export_the_selection(make_member, client_for):
    study = _study(3)
    researcher = make_member(study, Membership.Role.RESEARCHER, username="lead")
    ann, bob = make_member(study, username="ann"), make_member(study, username="bob")
    comparisons = list(Comparison.objects.filter(study=study).order_by("id"))
    mine = [_answer(study, ann, c, "a") for c in comparisons]
    theirs = [_answer(study, bob, c, "a") for c in comparisons[:2]]
    client = client_for(researcher)
    url = reverse("data_bulk", args=[study.slug])
    p0, p1 = _prompt(study, 0).id, _prompt(study, 1).id

    refused = client.post(url, {"action": "exclude", "prompt": [p0]}, follow=True)
    assert "needs a reason" in refused.content.decode()
    assert not Judgment.objects.filter(review_state="excluded").exists()
    client.post(url, {"action": "exclude", "prompt": [p0], "reason": "the prompt is garbled"})
    assert set(Judgment.objects.filter(review_state="excluded").values_list("id", flat=True)) == {
        mine[0].id,
        theirs[0].id,
    }
    change = JudgmentChange.objects.get(judgment=mine[0])
    assert (change.action, change.by_id, change.reason) == ("exclude", researcher.id, "the prompt is garbled")
    index = {c.id: k for k, c in enumerate(Candidate.objects.filter(study=study).order_by("id"))}
    kept = features.study_judged_preferences(study_id=study.id, index=index).judgment_ids.tolist()
    assert mine[0].id not in kept and mine[1].id in kept

    response = client.post(url, {"action": "review", "prompt": [p1], "reason": "check these"}, follow=True)
    assert "Sent 1 comparison to the review queue" in response.content.decode()
    item = ReviewItem.objects.get(comparison=comparisons[1])
    assert item.reasons[0]["rule"] == "sent" and "lead" in item.reasons[0]["detail"]

    export = client.post(url, {"action": "export", "all": "1", "annotator": "bob"})
    lines = [json.loads(line) for line in b"".join(export.streaming_content).decode().splitlines()]
    assert sorted(r["judgment_id"] for r in lines) == sorted(j.id for j in mine[:2] + theirs)  # prompts bob judged
    assert {r["review_state"] for r in lines if r["judgment_id"] == mine[0].id} == {"excluded"}

    client.post(url, {"action": "exclude_annotator", "annotator": "bob", "reason": "bob clicked through"})
    assert set(Judgment.objects.filter(annotator=bob).values_list("review_state", flat=True)) == {"excluded"}
    assert client.post(url, {"action": "review"}, follow=True).content.decode().count("Tick some prompts") == 1


def test_excluding_refuses_without_a_reason_or_a_selection(make_member):
    study = _study(1)
    researcher = make_member(study, Membership.Role.RESEARCHER)
    from annotation.services.errors import InvalidAnswer

    with pytest.raises(InvalidAnswer, match="reason"):
        judgments_exclude(study=study, by=researcher, reason=" ", prompt_ids=[1])
    with pytest.raises(InvalidAnswer, match="Choose"):
        judgments_exclude(study=study, by=researcher, reason="r")


def test_the_browser_page_and_its_htmx_results(make_member, client_for):
    study = _study(3)
    researcher = make_member(study, Membership.Role.RESEARCHER)
    client = client_for(researcher)
    page = client.get(reverse("data_browser", args=[study.slug]) + "?q=banana").content.decode()
    assert "1 prompt match" in page and "banana bread" in page and 'id="browse-filters"' in page
    url = reverse("data_browser", args=[study.slug]) + "?q=cherry"
    partial = client.get(url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="browse-results").content.decode()
    assert partial.lstrip().startswith("<section") and "cherry blossom" in partial and "browse-filters" not in partial
    bad = client.get(reverse("data_browser", args=[study.slug]) + "?since=soon").content.decode()
    assert "A date as YYYY-MM-DD." in bad
    annotator = make_member(study)
    assert client_for(annotator).get(reverse("data_browser", args=[study.slug])).status_code == 404


def test_the_data_browser_api(make_member):
    from rest_framework.test import APIClient

    study = _study(3)
    researcher = make_member(study, Membership.Role.RESEARCHER)
    ann = make_member(study, username="ann")
    comparisons = list(Comparison.objects.filter(study=study).order_by("id"))
    mine = _answer(study, ann, comparisons[0], "a")
    reviews_sweep()  # the counts follow new answers at the next scan
    api = APIClient()
    api.force_authenticate(researcher)
    base = f"/api/v1/studies/{study.slug}/prompts/"
    listing = api.get(base + "?q=apple").json()
    assert listing["count"] == 1 and listing["results"][0]["judgments"] == 1 and listing["next_page"] is None
    assert api.get(base + "?below=7").status_code == 400
    detail = api.get(f"{base}{_prompt(study, 0).id}/").json()
    assert detail["comparisons"][0]["answers"][0]["judgment_id"] == mine.id
    assert len(detail["candidates"]) == 2
    bulk = api.post(
        base + "bulk/", {"action": "exclude", "filters": {"annotator": "ann"}, "reason": "trial run"}, format="json"
    )
    assert bulk.json() == {"action": "exclude", "prompts": 1, "changed": 1}
    assert Judgment.objects.get(id=mine.id).review_state == "excluded"
    review = api.post(base + "bulk/", {"action": "review", "prompts": [_prompt(study, 0).id]}, format="json").json()
    assert review["changed"] == 1
    other = _study(1)
    refused = api.post(base + "bulk/", {"action": "review", "prompts": [_prompt(other, 0).id]}, format="json")
    assert refused.status_code == 400  # another study's prompt is no prompt of this one
    export = api.post(base + "bulk/", {"action": "export", "prompts": [_prompt(study, 0).id]}, format="json")
    assert [json.loads(x)["judgment_id"] for x in b"".join(export.streaming_content).decode().splitlines()] == [mine.id]


def test_a_page_past_the_end_shows_the_last_one():
    study = _study(3)
    page = browse.browse_page(study=study, filters=_filters(page="99"))
    assert page.page.number == 1 and len(page.rows) == 3 and page.page.paginator.count == 3
    empty = browse.browse_page(study=study, filters=_filters(q="no-such-words", page="4"))
    assert empty.page.number == 1 and empty.rows == [] and empty.page.paginator.count == 0


def test_conversation_prompts_read_as_turns(make_member, client_for):
    study = _study(1)
    Prompt.objects.filter(study=study).update(
        format="conversation", text=json.dumps([{"role": "user", "content": "Plan a picnic"}])
    )
    page = browse.browse_page(study=study, filters=_filters())
    assert page.rows[0].excerpt == "user: Plan a picnic"
    researcher = make_member(study, Membership.Role.RESEARCHER)
    html = client_for(researcher).get(reverse("data_prompt", args=[study.slug, _prompt(study, 0).id])).content.decode()
    assert "Plan a picnic" in html and "&quot;role&quot;" not in html
