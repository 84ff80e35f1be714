"""Prompt optimisation (issue 17; APOHF's setting): instructions are the candidates,
a target source (a real chat-completions server on 127.0.0.1 answering with a
scripted model) answers each instruction on each task input, annotators compare
the responses, and a rewriter proposes rewrites of the best instruction."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError

from activelearn.refill import queue_refill
from annotation.models import (
    Candidate,
    Comparison,
    GenerationSource,
    InstructionOutput,
    PromptOptimisation,
    RewardModelVersion,
    Study,
    TaskInput,
)
from annotation.selectors.annotating import comparison_for_display
from annotation.services.answers import judgment_submit
from annotation.services.leasing import assignment_lease_next
from annotation.services.prompt_opt import (
    best_instructions,
    outputs_run,
    prompt_optimisation_configure,
    ready_candidate_ids,
    rewrite_due,
    rewrite_round_run,
)
from models_runtime.generation import Generation, GenerationCache
from models_runtime.generation.openai_compat import ChatCompletionsGenerator, EndpointConfig
from tests.annotation.exports.answered import jsonl
from tests.chat_server import ChatServer, Fault
from tests.factories import CandidateFactory, PromptFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db

_STYLE = re.compile(r"\[style (\d+)\]")
INSTRUCTIONS = [f"Answer the question politely. [style {k}]" for k in (1, 4, 2)]
INPUTS = ["How do I return a parcel?", "Can I get a refund after 30 days?"]


class Target:
    """The target model: answers an instruction and an input in the instruction's style."""

    key = "scripted:target"

    def generate(self, requests):
        out = []
        for r in requests:
            text = r.messages[-1].content
            style = _STYLE.search(text).group(1)
            question = text.split("\n\n", 1)[1]
            out.append(Generation(f"Reply in style {style} to: {question}", "stop", 20, 8, self.key))
        return out


class Rewriter:
    """The rewriting model: proposes the best instruction's style plus 10 × (seed − 999)."""

    key = "scripted:rewriter"

    def generate(self, requests):
        out = []
        for r in requests:
            style = int(_STYLE.search(r.messages[-1].content).group(1))
            out.append(Generation(f'"Answer the question politely. [style {style + 10 * (r.seed - 999)}]"', "stop",
                                  30, 12, self.key))  # fmt: skip
        return out


@pytest.fixture
def servers():
    with ChatServer(generator=Target()) as target, ChatServer(generator=Rewriter()) as rewriter:
        yield target, rewriter


def client_of(server: ChatServer, **options) -> ChatCompletionsGenerator:
    return ChatCompletionsGenerator(
        EndpointConfig(base_url=server.base_url, model=server.model, **options), sleep=lambda s: None
    )


def configured(servers, **fields) -> tuple[Study, PromptOptimisation]:
    target, rewriter = servers
    study = StudyFactory(**fields)
    t = GenerationSource.objects.create(study=study, name="target", base_url=target.base_url, model="tiny")
    r = GenerationSource.objects.create(study=study, name="rewriter", base_url=rewriter.base_url, model="tiny")
    config = prompt_optimisation_configure(
        study=study, target_source_id=t.id, rewriter_source_id=r.id, task="Answer customers' questions.",
        instructions=INSTRUCTIONS, inputs=INPUTS, rewrite_per_round=2, rewrite_rounds=2,
    )  # fmt: skip
    return study, config


def test_a_study_becomes_a_prompt_optimisation_study_and_refuses_what_it_cannot_use(servers, loop_calls) -> None:
    target, _ = servers
    study = StudyFactory()
    source = GenerationSource.objects.create(study=study, name="t", base_url=target.base_url, model="tiny")
    other = GenerationSource.objects.create(study=StudyFactory(), name="t", base_url=target.base_url, model="tiny")

    def refused(**fields) -> dict:
        arguments = {"study": study, "target_source_id": source.id, "task": "T", "instructions": ["a", "b"],
                     "inputs": ["x"], **fields}  # fmt: skip
        with pytest.raises(ValidationError) as caught:
            prompt_optimisation_configure(**arguments)
        return caught.value.message_dict

    assert "task" in refused(task=" ")
    assert "instructions" in refused(instructions=["only one", " only one "])
    assert "inputs" in refused(inputs=[])
    assert "{input}" in refused(template="{instruction} only")["template"][0]
    assert "target" in refused(target_source_id=other.id)
    assert "rewriter" in refused(rewriter_source_id=other.id)
    assert "Line 2" in refused(instructions=["fine", "bad \x00 byte"])["instructions"][0]
    assert "{instruction}" in refused(rewrite_template="Make it better.")["rewrite_template"][0]
    assert "{tone}" in refused(rewrite_template="{instruction} in a {tone} tone")["rewrite_template"][0]
    assert not PromptOptimisation.objects.exists() and not Candidate.objects.exists()

    config = prompt_optimisation_configure(
        study=study, target_source_id=source.id, task="Answer customers' questions.", instructions=INSTRUCTIONS,
        inputs=INPUTS,
    )  # fmt: skip
    study.refresh_from_db()
    assert study.strategy == "apohf" and config.template == "{instruction}\n\n{input}"
    assert sorted(Candidate.objects.filter(study=study, prompt=config.task).values_list("text", flat=True)) == sorted(
        INSTRUCTIONS
    )
    assert TaskInput.objects.filter(study=study).count() == 2
    # Adding more later: only new ones are stored; nothing else is asked again.
    prompt_optimisation_configure(
        study=study, target_source_id=source.id, instructions=[INSTRUCTIONS[0], "A new one. [style 9]"], inputs=["Q3"]
    )
    assert Candidate.objects.filter(study=study).count() == 4 and TaskInput.objects.filter(study=study).count() == 3

    imported = StudyFactory()
    CandidateFactory(prompt=PromptFactory(study=imported))
    elsewhere = GenerationSource.objects.create(study=imported, name="t", base_url=target.base_url, model="tiny")
    with pytest.raises(ValidationError, match="already has candidates"):
        prompt_optimisation_configure(study=imported, target_source_id=elsewhere.id, task="T", instructions=["a", "b"],
                                      inputs=["x"])  # fmt: skip


def test_instructions_are_compared_once_their_responses_exist_and_annotators_see_only_the_responses(
    servers, loop_calls
) -> None:
    target, _ = servers
    study, config = configured(servers)
    assert ready_candidate_ids(study_id=study.id) == set()
    assert queue_refill(study_id=study.id, use_model=False, seed=0) == 0, "nothing to compare before the responses"

    target.fail_next(Fault(status=500))
    outcome = outputs_run(study_id=study.id, generator=client_of(target, max_retries=0), cache=GenerationCache())
    assert (outcome.requested, outcome.stored, outcome.failed) == (6, 5, 1) and "500" in outcome.errors[0]
    assert len(ready_candidate_ids(study_id=study.id)) == 2 and study.id in loop_calls.refill
    again = outputs_run(study_id=study.id, generator=client_of(target), cache=GenerationCache())
    assert (again.requested, again.stored, again.ready) == (1, 1, 3)
    config.refresh_from_db()
    assert config.outputs_failed == 1 and config.tokens == 6 * 28 and config.last_error == ""
    assert InstructionOutput.objects.filter(candidate__study=study).count() == 6
    assert outputs_run(study_id=study.id, generator=client_of(target), cache=GenerationCache()).requested == 0

    assert queue_refill(study_id=study.id, use_model=False, seed=0) == 3, "every pair of the three instructions"
    # As in APOHF, a pair may be asked again on another input: the next refill asks each on the other one.
    assert queue_refill(study_id=study.id, use_model=False, seed=1) == 3
    assert queue_refill(study_id=study.id, use_model=False, seed=2) == 0, "every pair asked on every input"
    inputs = set(TaskInput.objects.filter(study=study).values_list("id", flat=True))
    by_pair: dict[str, set[int]] = {}
    for c in Comparison.objects.filter(study=study):
        by_pair.setdefault(c.item_key.split("@")[0], set()).add(c.task_input_id)
        assert c.item_key.endswith(f"@{c.task_input_id}")
    assert len(by_pair) == 3 and all(used == inputs for used in by_pair.values())
    from annotation.services.answers import in_evaluation_set

    for c in Comparison.objects.filter(study=study):
        twin = (
            Comparison.objects.filter(study=study, item_key__startswith=c.item_key.split("@")[0] + "@")
            .exclude(pk=c.pk)
            .get()
        )
        assert in_evaluation_set(study_id=study.id, item_key=c.item_key, rate=0.5) == in_evaluation_set(
            study_id=study.id, item_key=twin.item_key, rate=0.5
        ), "both inputs of one pair land on the same side of the evaluation split"

    person = UserFactory()
    lease = assignment_lease_next(study=study, annotator=person)
    shown = comparison_for_display(assignment=lease.assignment, blind=True)
    task_input = lease.assignment.comparison.task_input.text
    assert shown.prompt.text == task_input
    for candidate in shown.candidates:
        assert candidate.text.startswith("Reply in style ") and candidate.text.endswith(task_input)
        assert "politely" not in candidate.text, "the instruction itself is never shown"

    # The answer is a judgment between the two instructions; exports say which input it was about.
    judgment_submit(study=study, annotator=person, comparison_id=lease.assignment.comparison_id, choice="a")
    (record,) = jsonl(study, "judgments.jsonl")
    assert record["task_input"] == task_input and record["prompt"] == "Answer customers' questions."
    assert {c["text"] for c in record["candidates"]} <= set(INSTRUCTIONS)


def _ranked(study: Study, config: PromptOptimisation, order: list[int], version: int = 1) -> RewardModelVersion:
    board = [{"candidate": cid, "mean": 1.0 - 0.5 * k, "std": 0.2, "p_best": round(0.7 / (k + 1), 4)}
             for k, cid in enumerate(order)]  # fmt: skip
    return RewardModelVersion.objects.create(
        study=study, version=version, model_type="kernel", embedder_key="t", n_judgments=6, checkpoint_path="/x",
        recommendation={"method": "posterior", "prompts": {
            str(config.task_id): {"best": order[0], "runner_up": None, "leaderboard": board}
        }},
    )  # fmt: skip


def test_the_rewriter_rewrites_the_best_instruction_after_each_model_within_its_rounds(
    servers, loop_calls, django_capture_on_commit_callbacks
) -> None:
    target, rewriter = servers
    study, config = configured(servers)
    assert rewrite_round_run(study_id=study.id, generator=client_of(rewriter), cache=GenerationCache()) == 0, (
        "no model has a best instruction yet"
    )
    by_style = {int(_STYLE.search(c.text).group(1)): c.id for c in Candidate.objects.filter(study=study)}
    _ranked(study, config, [by_style[4], by_style[2], by_style[1]])
    best = best_instructions(study=study)
    assert best["best"]["instruction"] == INSTRUCTIONS[1] and best["best"]["p_best"] == 0.7
    assert [row["candidate"] for row in best["leaderboard"]] == [by_style[4], by_style[2], by_style[1]]

    PromptOptimisation.objects.filter(pk=config.pk).update(
        rewrite_template="For the task {task}, improve: {instruction}"
    )
    assert rewrite_due(study_id=study.id)
    with django_capture_on_commit_callbacks(execute=True):
        added = rewrite_round_run(study_id=study.id, generator=client_of(rewriter), cache=GenerationCache())
    assert added == 2
    rewrites = Candidate.objects.filter(study=study, metadata__origin="rewrite").order_by("id")
    assert [c.text for c in rewrites] == [f"Answer the question politely. [style {4 + 10 * k}]" for k in (1, 2)], (
        "quotes around the reply are dropped"
    )
    assert all(c.source == "rewriter" and c.metadata["parent"] == by_style[4] for c in rewrites)
    asked = rewriter.received[-1]["body"]["messages"][-1]["content"]
    assert asked == f"For the task Answer customers' questions., improve: {INSTRUCTIONS[1]}"
    assert study.id in loop_calls.embed
    # Not compared before their responses exist; then they are.
    assert not ready_candidate_ids(study_id=study.id) & set(rewrites.values_list("id", flat=True))
    outputs_run(study_id=study.id, generator=client_of(target), cache=GenerationCache())
    assert set(rewrites.values_list("id", flat=True)) <= ready_candidate_ids(study_id=study.id)

    # A second round asks new seeds; then the rounds are used up.
    _ranked(study, config, [rewrites[1].id, by_style[4]], version=2)
    assert rewrite_round_run(study_id=study.id, generator=client_of(rewriter), cache=GenerationCache()) == 2
    config.refresh_from_db()
    assert config.rewrite_rounds_used == 2 and not rewrite_due(study_id=study.id)
    assert rewrite_round_run(study_id=study.id, generator=client_of(rewriter), cache=GenerationCache()) == 0


def test_a_published_model_starts_a_rewriting_round_in_the_worker(servers, monkeypatch) -> None:
    from activelearn import services, tasks
    from annotation import tasks as annotation_tasks

    study, config = configured(servers)
    started: list[int] = []
    monkeypatch.setattr(annotation_tasks.prompt_rewrite_run, "delay", lambda study_id: started.append(study_id))

    class Outcome:
        version = RewardModelVersion(version=1)
        again_in = None
        claim = None

    monkeypatch.setattr(services, "reward_model_retrain", lambda **kwargs: Outcome())
    tasks.retrain_study(study.id)
    assert started == [study.id]
    PromptOptimisation.objects.filter(pk=config.pk).update(rewriter=None)
    tasks.retrain_study(study.id)
    assert started == [study.id], "no rewriter: no round"


def test_the_api_configures_a_prompt_optimisation_study_and_reports_its_best_prompt(
    servers, make_member, monkeypatch, django_capture_on_commit_callbacks, client_for
) -> None:
    from django.urls import reverse

    from annotation import tasks
    from annotation.models import Membership
    from tests.annotation.test_api import api_as

    target, _ = servers
    started: list[int] = []
    monkeypatch.setattr(tasks.prompt_outputs_run, "delay", lambda study_id: started.append(study_id))
    study = StudyFactory()
    researcher = make_member(study, role=Membership.Role.RESEARCHER)
    client = api_as(researcher)
    url = f"/api/v1/studies/{study.slug}/prompt-optimisation/"
    source = GenerationSource.objects.create(study=study, name="t", base_url=target.base_url, model="tiny")
    assert client.get(url).status_code == 404

    refused = client.put(url, {"target": source.id, "instructions": ["a", "b"], "inputs": ["x"]}, format="json")
    assert refused.status_code == 400 and "task" in refused.json()["fields"]
    with django_capture_on_commit_callbacks(execute=True):
        done = client.put(url, {"target": source.id, "task": "Answer questions.", "instructions": INSTRUCTIONS,
                                "inputs": INPUTS}, format="json")  # fmt: skip
    assert done.status_code == 200 and started == [study.id]
    body = done.json()
    counts = (body["instructions"], body["inputs"], body["ready"], body["outputs_wanted"], body["best"])
    assert counts == (3, 2, 0, 6, None)
    best_url = reverse("prompt_optimisation_best", args=[study.slug])
    assert client_for(researcher).get(best_url).status_code == 409, "no model has ranked them yet"

    outputs_run(study_id=study.id, generator=client_of(target), cache=GenerationCache())
    config = PromptOptimisation.objects.get(study=study)
    first = Candidate.objects.filter(study=study).order_by("id").first()
    _ranked(study, config, [first.id])
    body = client.get(url).json()
    assert body["ready"] == 3 and body["outputs"] == 6 and body["best"]["best"]["instruction"] == first.text
    download = client_for(researcher).get(best_url)
    assert download.status_code == 200 and "attachment" in download["Content-Disposition"]
    assert download.json()["best"]["candidate"] == first.id
    assert client_for(make_member(study)).get(best_url).status_code == 404, "researchers only"


def test_an_ai_judge_of_a_prompt_optimisation_study_judges_the_responses_not_the_instructions(servers) -> None:
    from annotation.services.judging import ai_judge_create, judges_run

    target, _ = servers
    study, config = configured(servers)
    outputs_run(study_id=study.id, generator=client_of(target), cache=GenerationCache())
    queue_refill(study_id=study.id, use_model=False, seed=0)
    asked: list[str] = []

    class Judge:
        key = "scripted:judge"

        def generate(self, requests):
            asked.extend(r.messages[-1].content for r in requests)
            return [Generation("[[A]]", "stop", 10, 2, self.key) for _ in requests]

    judge = ai_judge_create(study=study, source_id=config.target_id, name="J")
    outcome = judges_run(study_id=study.id, generators={judge.pk: Judge()}, cache=GenerationCache())
    assert outcome.judged == 3 and len(asked) == 6
    for text in asked:
        assert "Reply in style" in text and "politely" not in text
        assert any(question in text for question in INPUTS)
