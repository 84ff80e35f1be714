"""AI judges in a study (issue 17): the run that asks them about the queue through a
real chat-completions server on 127.0.0.1, what their answers count for (no
person's slot, no budget), and routing: trusted judges settle comparisons within
the study's share, the audit and the evaluation set still go to people."""

from __future__ import annotations

import re

import pytest

from annotation.models import AIJudge, Comparison, GenerationSource, Judgment, RewardModelVersion, Study
from annotation.selectors.annotating import study_progress
from annotation.services.judging import ai_judge_create, ai_judge_update, judges_run
from annotation.services.leasing import assignment_lease_next, study_judgment_count
from models_runtime.generation import Generation, GenerationCache, GenerationRequest
from models_runtime.generation.openai_compat import ChatCompletionsGenerator, EndpointConfig
from tests.chat_server import ChatServer, Fault
from tests.factories import UserFactory, study_with_queue

pytestmark = pytest.mark.django_db

_SHOWN = re.compile(r"\[Response A\]\n(.*?)\n\n\[Response B\]\n(.*?)\n\n", re.S)
_QUALITY = re.compile(r"quality (\d+)")
_LISTED = re.compile(r"\[Response \d+\]\n(.*?)(?=\n\n\[Response|\n\nRank)", re.S)


class ScriptedJudge:
    """A judge model for the server: reads the two responses the template shows and
    answers in the template's verdict form. ``mode`` "right" prefers the response of
    higher quality, "wrong" the lower, "first" always the one shown first (pure
    position bias), "mute" states no verdict."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    @property
    def key(self) -> str:
        return f"scripted:{self.mode}"

    def _reply(self, request: GenerationRequest) -> str:
        listed = _LISTED.findall(request.messages[-1].content)
        if listed:  # a list: rank by quality (best first), or state nothing
            if self.mode == "mute":
                return "They all have merits."
            order = sorted(range(len(listed)), key=lambda i: -int(_QUALITY.search(listed[i]).group(1)))
            if self.mode == "wrong":
                order.reverse()
            return "Ranking: [[" + " > ".join(str(i + 1) for i in order) + "]]"
        first, second = _SHOWN.search(request.messages[-1].content).groups()
        q1, q2 = (int(_QUALITY.search(text).group(1)) for text in (first, second))
        if self.mode == "mute":
            return "Both have merits."
        if self.mode == "first":
            return "Let me think. [[A]]"
        first_better = q1 > q2 if self.mode == "right" else q1 < q2
        return "Weighing both... [[A]]" if first_better else "Weighing both... [[B]]"

    def generate(self, requests):
        return [Generation(self._reply(r), "stop", 40, 5, self.key) for r in requests]


@pytest.fixture
def servers():
    running = {mode: ChatServer(generator=ScriptedJudge(mode)) for mode in ("right", "wrong", "first", "mute")}
    for server in running.values():
        server.__enter__()
    yield running
    for server in running.values():
        server.__exit__(None, None, None)


def client_of(server: ChatServer, **options) -> ChatCompletionsGenerator:
    config = EndpointConfig(base_url=server.base_url, model=server.model, **options)
    return ChatCompletionsGenerator(config, sleep=lambda seconds: None)


@pytest.fixture
def study() -> Study:
    """Four prompts of four candidates each, "quality k" in each text, a filled queue."""
    study = study_with_queue(n_prompts=4, n_candidates=4, overlap=1, evaluation_rate=0.0)
    for k, candidate in enumerate(study.candidates.order_by("id")):
        candidate.text = f"A response of quality {(k * 7) % 16}."
        candidate.save(update_fields=["text"])
    return study


def judge_of(study: Study, server: ChatServer, name: str) -> AIJudge:
    source = GenerationSource.objects.create(study=study, name=f"src-{name}", base_url=server.base_url, model="tiny")
    return ai_judge_create(study=study, source_id=source.id, name=name)


def quality(candidate_id: int) -> int:
    from annotation.models import Candidate

    return int(_QUALITY.search(Candidate.objects.get(id=candidate_id).text).group(1))


def trust(study: Study, accuracies: dict[AIJudge, tuple[float, float]], reference: float = 0.8) -> None:
    """A published version whose fit measured the judges: accuracy and weight each."""
    RewardModelVersion.objects.create(
        study=study, version=1, model_type="mlp", embedder_key="t", n_judgments=10, checkpoint_path="/nowhere",
        metrics={"reliability": {"reference": reference, "annotators": {
            str(judge.user_id): {"kind": "model", "accuracy": acc, "low": acc - 0.1, "high": acc + 0.05,
                                 "anchored": 30, "agreed": 27.0, "weight": weight}
            for judge, (acc, weight) in accuracies.items()
        }}},
    )  # fmt: skip


def queued(study: Study) -> set[int]:
    return set(Comparison.objects.filter(study=study, status=Comparison.Status.QUEUED).values_list("id", flat=True))


def test_judges_answer_the_queue_as_judgments_that_take_no_persons_slot_nor_budget(study, servers) -> None:
    right, first = judge_of(study, servers["right"], "Right"), judge_of(study, servers["first"], "Biased")
    waiting = queued(study)
    assert len(waiting) >= 8
    outcome = judges_run(
        study_id=study.id,
        generators={right.pk: client_of(servers["right"]), first.pk: client_of(servers["first"])},
        cache=GenerationCache(),
    )
    n = len(waiting)
    assert (outcome.asked, outcome.judged, outcome.failed, outcome.settled) == (2 * n, 2 * n, 0, 0)
    assert outcome.tokens == 2 * len(waiting) * 2 * 45, "both orders of every comparison, 45 tokens a reply"

    for judgment in Judgment.objects.filter(annotator=right.user):
        winner, loser = judgment.ranking
        assert judgment.by_model and quality(winner) > quality(loser)
        assert judgment.client_info["consistent"] and judgment.client_info["ai_judge"] == "Right"
        assert judgment.evaluation is False
        assert judgment.prompt_id == judgment.comparison.prompt_id is not None  # the copy the data browser reads
    biased = Judgment.objects.filter(annotator=first.user)
    assert {j.choice for j in biased} == {"tie"}, "each order named the first shown: position bias, a tie"
    assert not any(j.client_info["consistent"] for j in biased)

    # Nothing was settled (no fit has measured the judges yet), no person's slot taken, no budget spent.
    assert queued(study) == waiting
    assert study_judgment_count(study_id=study.id) == 0
    assert study_progress(study=study, user=UserFactory()).total == 0
    right.refresh_from_db()
    assert (right.judged, right.failed, right.tokens, right.last_error) == (len(waiting), 0, len(waiting) * 90, "")

    # A person still gets those comparisons, and a rerun asks nothing it asked before.
    person = UserFactory()
    assert assignment_lease_next(study=study, annotator=person).assignment.comparison_id in waiting
    asked = len(servers["right"].received)
    again = judges_run(study_id=study.id, generators={right.pk: client_of(servers["right"])}, cache=GenerationCache())
    assert (again.asked, again.judged) == (0, 0) and len(servers["right"].received) == asked


def test_trusted_judges_settle_comparisons_within_the_share_and_the_audit_sends_some_to_people(
    study, servers, loop_calls
) -> None:
    right, wrong = judge_of(study, servers["right"], "Right"), judge_of(study, servers["wrong"], "Wrong")
    trust(study, {right: (0.93, 1.0), wrong: (0.2, 0.0)})
    study.judge_share, study.judge_audit_rate = 0.5, 0.0
    study.save()
    waiting = queued(study)
    total = Comparison.objects.filter(study=study, is_gold=False).count()
    outcome = judges_run(
        study_id=study.id,
        generators={right.pk: client_of(servers["right"]), wrong.pk: client_of(servers["wrong"])},
        cache=GenerationCache(),
    )
    settled = Comparison.objects.filter(study=study, settled_by_judges=True)
    assert outcome.settled == settled.count() > 0
    assert settled.count() <= 0.5 * total, "never more than the study's share of its comparisons"
    assert all(c.status == Comparison.Status.DONE and c.completed_at for c in settled)
    assert queued(study) == waiting - set(settled.values_list("id", flat=True))
    # Settled by the trusted judge's verdict (the adversarial one has weight 0): the better one won.
    for judgment in Judgment.objects.filter(annotator=right.user, comparison__in=settled):
        assert quality(judgment.ranking[0]) > quality(judgment.ranking[1])
    # No person is asked about a settled comparison; the budget is untouched; the loop heard.
    person = UserFactory()
    leased = set()
    while (lease := assignment_lease_next(study=study, annotator=person)) is not None:
        leased.add(lease.assignment.comparison_id)
        lease.assignment.status = "skipped"
        lease.assignment.save()
    assert leased and not leased & set(settled.values_list("id", flat=True))
    assert study_judgment_count(study_id=study.id) == 0
    assert study.id in loop_calls.retrain or study.id in loop_calls.refill


def test_the_audit_the_evaluation_set_and_a_share_of_zero_keep_comparisons_for_people(study, servers) -> None:
    right = judge_of(study, servers["right"], "Right")
    trust(study, {right: (0.93, 1.0)})
    study.judge_audit_rate = 1.0
    study.save()
    outcome = judges_run(study_id=study.id, generators={right.pk: client_of(servers["right"])}, cache=GenerationCache())
    assert outcome.settled == 0 and outcome.audited == outcome.judged > 0

    Judgment.objects.filter(annotator=right.user).delete()
    study.judge_audit_rate, study.evaluation_rate = 0.0, 0.5
    study.save()
    judges_run(study_id=study.id, generators={right.pk: client_of(servers["right"])}, cache=GenerationCache())
    for comparison in Comparison.objects.filter(study=study, settled_by_judges=True):
        assert not Judgment.objects.get(comparison=comparison, annotator=right.user).evaluation
    assert Judgment.objects.filter(annotator=right.user, evaluation=True).exists()
    assert not Comparison.objects.filter(study=study, settled_by_judges=True, judgments__evaluation=True).exists(), (
        "held-out comparisons always go to people"
    )

    Judgment.objects.filter(annotator=right.user).delete()
    Comparison.objects.filter(study=study).update(settled_by_judges=False, status=Comparison.Status.QUEUED)
    study.judge_share = 0.0
    study.save()
    outcome = judges_run(study_id=study.id, generators={right.pk: client_of(servers["right"])}, cache=GenerationCache())
    assert outcome.judged > 0 and outcome.settled == 0, "share 0: judges only add weighted votes"


def test_a_judge_that_fails_or_states_no_verdict_is_counted_and_says_why(study, servers) -> None:
    mute, flaky = judge_of(study, servers["mute"], "Mute"), judge_of(study, servers["right"], "Flaky")
    n = len(queued(study))
    # Every request of the first batch fails (no retries), the rest are answered.
    servers["right"].fail_next(*[Fault(status=500)] * 32)
    outcome = judges_run(
        study_id=study.id,
        generators={mute.pk: client_of(servers["mute"]), flaky.pk: client_of(servers["right"], max_retries=0)},
        cache=GenerationCache(),
    )
    mute.refresh_from_db()
    flaky.refresh_from_db()
    assert (mute.judged, mute.failed) == (0, n) and "neither reply states a verdict" in mute.last_error
    assert flaky.failed == min(16, n) and flaky.judged == n - flaky.failed and "500" in flaky.last_error
    assert outcome.failed == n + flaky.failed
    assert not Judgment.objects.filter(annotator=mute.user).exists()

    # The next run asks again about what failed, and a clean run clears the error.
    judges_run(study_id=study.id, generators={flaky.pk: client_of(servers["right"])}, cache=GenerationCache())
    flaky.refresh_from_db()
    assert flaky.judged == n and flaky.last_error == ""


def test_an_inactive_judge_and_a_paused_study_ask_nobody(servers) -> None:
    study = study_with_queue(n_prompts=2, n_candidates=3)
    judge = judge_of(study, servers["right"], "Right")
    ai_judge_update(judge=judge, active=False)
    assert judges_run(study_id=study.id, generators={judge.pk: client_of(servers["right"])}).asked == 0
    ai_judge_update(judge=judge, active=True)
    Study.objects.filter(id=study.id).update(status=Study.Status.PAUSED)
    assert judges_run(study_id=study.id, generators={judge.pk: client_of(servers["right"])}).asked == 0
    assert not servers["right"].received


def test_a_judge_ranks_a_lists_responses_in_both_orders_and_is_measured_on_its_pairs(servers) -> None:
    from activelearn.reliability import study_reliability
    from annotation.services.answers import judgment_submit

    study = study_with_queue(n_prompts=3, n_candidates=4, mode=Study.Mode.LISTWISE, list_size=3, overlap=1,
                             evaluation_rate=0.0)  # fmt: skip
    for k, candidate in enumerate(study.candidates.order_by("id")):
        candidate.text = f"A response of quality {(k * 7) % 16}."
        candidate.save(update_fields=["text"])
    right, wrong = judge_of(study, servers["right"], "Right"), judge_of(study, servers["wrong"], "Wrong")
    waiting = queued(study)
    outcome = judges_run(
        study_id=study.id,
        generators={right.pk: client_of(servers["right"]), wrong.pk: client_of(servers["wrong"])},
        cache=GenerationCache(),
    )
    assert outcome.judged == 2 * len(waiting) and outcome.settled == 0, "lists are never settled by judges"
    for judgment in Judgment.objects.filter(annotator=right.user):
        assert judgment.choice == "ranked" and judgment.client_info["consistent"]
        assert [quality(c) for c in judgment.ranking] == sorted((quality(c) for c in judgment.ranking), reverse=True)
    reversed_ = Judgment.objects.filter(annotator=wrong.user).first()
    assert [quality(c) for c in reversed_.ranking] == sorted(quality(c) for c in reversed_.ranking)
    # Requests go out concurrently: match each list with its reverse, whatever the order they came in.
    lists = [
        tuple(re.findall(r"\[Response \d\]\n(.*)", r["body"]["messages"][-1]["content"]))
        for r in servers["right"].received
    ]
    assert len(lists) == 2 * len(waiting) and all(lst[::-1] in lists for lst in lists), (
        "each list is asked in its order and reversed"
    )

    # A person ranks every list by quality: the right judge agrees on every pair, the wrong one on none.
    person = UserFactory()
    while (lease := assignment_lease_next(study=study, annotator=person)) is not None:
        shown = lease.assignment.display_order
        places = sorted(range(len(shown)), key=lambda p: -quality(shown[p]))
        judgment_submit(study=study, annotator=person, comparison_id=lease.assignment.comparison_id,
                        ranking=[[p] for p in places])  # fmt: skip
    rel = study_reliability(study_id=study.id)
    good, bad = rel.estimates[right.user_id], rel.estimates[wrong.user_id]
    n_lists = Judgment.objects.filter(annotator=person).count()
    assert good.anchored == bad.anchored == 2 * n_lists, "a ranking of 3 counts as 2 answers, not 3"
    assert good.accuracy > 0.8 and good.weight > 0 and bad.accuracy < 0.2 and bad.weight == 0.0


def test_the_judges_own_source_is_asked_when_none_is_given(study, servers, settings, tmp_path) -> None:
    settings.PREFLOOP_VAR_DIR = tmp_path
    judge_of(study, servers["right"], "Right")
    outcome = judges_run(study_id=study.id)
    assert outcome.judged == len(queued(study)) > 0 and servers["right"].received


def test_a_refill_that_queues_comparisons_asks_the_active_judges(monkeypatch, servers) -> None:
    from activelearn import tasks
    from annotation import tasks as annotation_tasks

    started: list[int] = []
    monkeypatch.setattr(annotation_tasks.judges_run, "delay", lambda study_id: started.append(study_id))
    study = study_with_queue(n_prompts=3, n_candidates=4, fill=False)
    tasks.refill_queue(study.id)
    assert started == [], "no judges: nobody is asked"
    Comparison.objects.filter(study=study).delete()
    judge_of(study, servers["right"], "Right")
    assert tasks.refill_queue(study.id) > 0
    assert started == [study.id]
    # Refills close together ask for one run: it takes every queued comparison anyway.
    Comparison.objects.filter(study=study).delete()
    assert tasks.refill_queue(study.id) > 0
    assert started == [study.id]


def test_a_researcher_adds_a_judge_sets_routing_and_sees_what_it_did_on_the_study_page(
    study, servers, client_for, make_member, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    from django.urls import reverse

    from annotation import tasks
    from annotation.models import Membership

    started: list[int] = []
    monkeypatch.setattr(tasks.judges_run, "delay", lambda study_id: started.append(study_id))
    researcher = client_for(make_member(study, role=Membership.Role.RESEARCHER))
    page = reverse("study_detail", args=[study.slug])
    assert "add a source</a> first" in researcher.get(page).content.decode()
    source = GenerationSource.objects.create(study=study, name="judge-llm", base_url=servers["right"].base_url,
                                             model="tiny")  # fmt: skip

    refused = researcher.post(reverse("judge_add", args=[study.slug]), {"judge-name": "J", "judge-source": source.id,
                              "judge-template": "Which is better?"}, follow=True)  # fmt: skip
    assert "Judge not added" in refused.content.decode() and "{prompt}" in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        added = researcher.post(
            reverse("judge_add", args=[study.slug]), {"judge-name": "Careful", "judge-source": source.id}, follow=True
        )
    assert "Judge &#x27;Careful&#x27; added" in added.content.decode() and started == [study.id]
    judge = AIJudge.objects.get(study=study, name="Careful")
    assert not judge.user.is_active and not judge.user.has_usable_password()

    judges_run(study_id=study.id, generators={judge.pk: client_of(servers["right"])}, cache=GenerationCache())
    # A person answered one comparison the judge answered too, the same way: agreement 1 of 1.
    person = UserFactory()
    lease = assignment_lease_next(study=study, annotator=person)
    from annotation.services.answers import judgment_submit

    verdict = Judgment.objects.get(annotator=judge.user, comparison_id=lease.assignment.comparison_id)
    shown = lease.assignment.display_order or []
    winner_position = 0 if not shown else shown.index(verdict.ranking[0])
    judgment_submit(study=study, annotator=person, comparison_id=lease.assignment.comparison_id,
                    choice="a" if winner_position == 0 else "b")  # fmt: skip

    html = researcher.get(page).content.decode()
    assert 'id="judge-table"' in html and "Careful" in html and "judge-llm" in html
    assert '100% <span class="muted small">(1 of 1)</span>' in html
    assert "not measured yet" in html and "Routing saved</strong> 0 person judgments" in html

    bad = researcher.post(reverse("judge_routing_set", args=[study.slug]), {"share": 95, "audit": 20}, follow=True)
    assert "Routing not changed" in bad.content.decode()
    researcher.post(reverse("judge_routing_set", args=[study.slug]), {"share": 30, "audit": 10})
    study.refresh_from_db()
    assert (study.judge_share, study.judge_audit_rate) == (0.3, 0.1)
    researcher.post(reverse("judge_active_set", args=[study.slug, judge.pk]), {"active": "0"})
    judge.refresh_from_db()
    assert not judge.active and "Turn on" in researcher.get(page).content.decode()
    asked = researcher.post(reverse("judges_ask", args=[study.slug]), follow=True)
    assert "No judge is on" in asked.content.decode()

    annotator = client_for(make_member(study))
    for name, args in (("judge_add", [study.slug]), ("judge_routing_set", [study.slug]),
                       ("judge_active_set", [study.slug, judge.pk]), ("judges_ask", [study.slug])):  # fmt: skip
        assert annotator.post(reverse(name, args=args), {"active": "1", "share": 10, "audit": 0}).status_code == 404
    judge.refresh_from_db()
    assert not judge.active


def test_the_api_adds_lists_and_switches_judges_and_sets_routing(
    study, servers, make_member, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    from annotation import tasks
    from annotation.models import Membership
    from tests.annotation.test_api import api_as

    started: list[int] = []
    monkeypatch.setattr(tasks.judges_run, "delay", lambda study_id: started.append(study_id))
    client = api_as(make_member(study, role=Membership.Role.RESEARCHER))
    base = f"/api/v1/studies/{study.slug}"
    source = GenerationSource.objects.create(study=study, name="judge-llm", base_url=servers["right"].base_url,
                                             model="tiny")  # fmt: skip
    elsewhere = GenerationSource.objects.create(
        study=study_with_queue(n_prompts=1, n_candidates=2), name="x", base_url=servers["right"].base_url, model="t"
    )

    refused = client.post(f"{base}/judges/", {"name": "J", "source": elsewhere.id}, format="json")
    assert refused.status_code == 400 and "source" in refused.json()["fields"]
    refused = client.post(f"{base}/judges/", {"name": "J", "source": source.id, "template": "{first}"}, format="json")
    assert refused.status_code == 400 and "{prompt}" in refused.json()["fields"]["template"][0]
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(f"{base}/judges/", {"name": "Careful", "source": source.id}, format="json")
    assert created.status_code == 201 and started == [study.id]
    body = created.json()
    assert (body["name"], body["source"], body["source_name"], body["active"]) == ("Careful", source.id,
                                                                                  "judge-llm", True)  # fmt: skip
    assert body["accuracy"] is None and body["weight"] is None and body["judged"] == 0

    judge = AIJudge.objects.get(pk=body["id"])
    trust(study, {judge: (0.9, 0.8)})
    judges_run(study_id=study.id, generators={judge.pk: client_of(servers["right"])}, cache=GenerationCache())
    (listed,) = client.get(f"{base}/judges/").json()
    assert listed["judged"] == Judgment.objects.filter(annotator=judge.user).count() > 0 and listed["tokens"] > 0
    assert (listed["accuracy"], listed["weight"]) == (0.9, 0.8)
    assert listed["accuracy_interval"] == pytest.approx([0.8, 0.95])

    switched = client.patch(f"{base}/judges/{judge.pk}/", {"active": False}, format="json")
    assert switched.status_code == 200 and switched.json()["active"] is False
    assert client.get(f"{base}/judges/999999/").status_code == 404

    routing = client.get(f"{base}/judge-routing/").json()
    settled = Comparison.objects.filter(study=study, settled_by_judges=True).count()
    assert routing["settled"] == settled > 0 and routing["person_judgments_saved"] == settled * study.overlap
    assert (routing["judge_share"], routing["audit_rate"]) == (0.5, 0.2)
    assert (
        client.put(f"{base}/judge-routing/", {"judge_share": 0.95, "audit_rate": 0.1}, format="json").status_code == 400
    )
    put = client.put(f"{base}/judge-routing/", {"judge_share": 0.25, "audit_rate": 0.5}, format="json")
    assert put.status_code == 200 and (put.json()["judge_share"], put.json()["audit_rate"]) == (0.25, 0.5)
    index = client.get("/api/v1/").json()["endpoints"]
    assert index["judge"].endswith("/api/v1/studies/{slug}/judges/{judge_id}/")
