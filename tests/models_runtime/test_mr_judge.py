"""AI judges (issue 17): verdicts read from what models write, each comparison asked
in both orders, position bias turned into a tie rather than a vote."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from models_runtime.generation import Generation, GenerationFailure, GenerationRequest, Result, Sampling
from models_runtime.generation.judge import JudgeTemplate, PairwiseJudge, parse_verdict
from models_runtime.generation.local_hf import LocalGenerator, LocalModelConfig
from models_runtime.generation.openai_compat import ChatCompletionsGenerator, EndpointConfig
from tests.chat_server import ChatServer, tiny_model_dir


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Both are fine, but A is more concise. [[A]]", "first"),
        ("[[b]]", "second"),
        ("Neither stands out. [[C]]", "tie"),
        ("Final verdict: B", "second"),
        ("**Answer:** A", "first"),
        ("Winner: 2", "second"),
        ("Response A is clearly better: it answers the question.", "first"),
        ("Assistant 2 is better.", "second"),
        ("I prefer Response B.", "second"),
        ("It's a tie.", "tie"),
        ("Both are equally helpful.", "tie"),
        ("Reasoning about both.\nB", "second"),
        ("Response A is better at first sight. Final verdict: [[B]]", "second"),
        ("At first [[A]], but on reflection [[B]]", "second"),
        ("The answer is a good one, though long.", None),
        ("I prefer a shorter reply in general.", None),
        ("", None),
    ],
)
def test_a_verdict_is_read_as_the_judge_wrote_it(reply: str, verdict: str | None) -> None:
    assert parse_verdict(reply) == verdict


class RuleJudge:
    """A Generator whose replies follow a rule on the two responses it is shown."""

    key = "rule"

    def __init__(self, rule: Callable[[str, str], str]) -> None:
        self.rule = rule
        self.asked: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Result]:
        self.asked += requests
        replies: list[Result] = []
        for request in requests:
            text = request.messages[-1].content
            first = text.split("[Response A]\n")[1].split("\n\n[Response B]")[0]
            second = text.split("[Response B]\n")[1].split("\n\n")[0]
            reply = self.rule(first, second)
            replies.append(
                GenerationFailure("http", "HTTP 503") if reply == "fail" else Generation(reply, "stop", 10, 3, "rule")
            )
        return replies


def test_a_judge_that_sees_the_responses_is_consistent_in_both_orders() -> None:
    longer = RuleJudge(lambda first, second: "[[A]]" if len(first) > len(second) else "[[B]]")
    judge = PairwiseJudge(longer)
    short, long_ = "Yes.", "Yes: mix flour, water, salt and yeast, then knead."
    verdicts = judge.judge([("How?", short, long_), ("How?", long_, short)])
    assert [(v.choice, v.consistent) for v in verdicts] == [("b", True), ("a", True)]
    assert verdicts[0].orders == ("b", "b") and verdicts[0].tokens == 26
    # Asked twice per comparison, the responses swapped, with the system message first.
    assert len(longer.asked) == 4
    assert [r.messages[0].role for r in longer.asked] == ["system"] * 4
    assert "[Response A]\nYes.\n" in longer.asked[0].messages[1].content
    assert "[Response A]\nYes: mix" in longer.asked[1].messages[1].content
    assert all(r.sampling.temperature == 0.0 for r in longer.asked), "greedy: the same comparison, the same verdict"


def test_position_bias_is_a_tie_and_a_missing_answer_is_no_vote() -> None:
    always_first = PairwiseJudge(RuleJudge(lambda first, second: "[[A]]"))
    (biased,) = always_first.judge([("Q", "one", "two")])
    assert (biased.choice, biased.consistent, biased.orders) == ("tie", False, ("a", "b"))
    assert "position" in biased.reason

    half = PairwiseJudge(RuleJudge(lambda first, second: "[[A]]" if first == "one" else "I cannot say."))
    (one_order,) = half.judge([("Q", "one", "two")])
    assert (one_order.choice, one_order.consistent) == ("a", False)

    mute = PairwiseJudge(RuleJudge(lambda first, second: "Interesting question."))
    (none,) = mute.judge([("Q", "one", "two")])
    assert none.choice is None and "neither" in none.reason

    down = PairwiseJudge(RuleJudge(lambda first, second: "fail"))
    (failed,) = down.judge([("Q", "one", "two")])
    assert failed.choice is None and "503" in failed.reason


def test_a_template_must_show_the_prompt_and_both_responses() -> None:
    with pytest.raises(ValueError, match="second"):
        JudgeTemplate(pairwise="{prompt} {first}")


def test_a_judge_asks_through_a_real_endpoint(tmp_path: Path) -> None:
    """The tiny random model writes no verdict: the plumbing is what is checked."""
    local = LocalGenerator(LocalModelConfig(str(tiny_model_dir(tmp_path)), device="cpu"))
    with ChatServer(generator=local) as server:
        client = ChatCompletionsGenerator(EndpointConfig(base_url=server.base_url, model="tiny"))
        # Short enough for the tiny model's 256 positions.
        short = JudgeTemplate(system="Judge.", pairwise="{prompt}\nA: {first}\nB: {second}\nBetter:")
        judge = PairwiseJudge(client, template=short, sampling=Sampling(temperature=0.0, max_tokens=8))
        (verdict,) = judge.judge([("How do I bake bread?", "Mix flour and water.", "Buy it.")])
    assert len(server.received) == 2
    bodies = [r["body"] for r in server.received]
    assert {b["messages"][0]["role"] for b in bodies} == {"system"}
    assert {b["temperature"] for b in bodies} == {0.0}
    assert "could not answer" not in verdict.reason
    assert all(verdict.replies) and verdict.tokens > 0, "each order's reply is kept, with its tokens"
    shown_first = sorted(b["messages"][1]["content"].split("\nA: ")[1].split("\n")[0] for b in bodies)
    assert shown_first == ["Buy it.", "Mix flour and water."], "each response shown first once"


@pytest.mark.parametrize(
    ("reply", "k", "places"),
    [
        ("Response 2 is best. [[2 > 1 > 3]]", 3, [[1], [0], [2]]),
        ("[[3 = 1 > 2]]", 3, [[2, 0], [1]]),
        ("[[1, 3, 2]]", 3, [[0], [2], [1]]),
        ("First draft [[1 > 2 > 3]], final: [[3 > 2 > 1]]", 3, [[2], [1], [0]]),
        ("Thinking...\n2 > 3 > 1", 3, [[1], [2], [0]]),
        ("[[2 > 1]]", 3, None),  # not every response
        ("[[1 > 1 > 2]]", 3, None),  # one twice
        ("[[4 > 1 > 2]]", 3, None),  # no response 4
        ("They are all good.", 3, None),
    ],
)
def test_a_ranking_is_read_as_the_judge_wrote_it(reply: str, k: int, places: list | None) -> None:
    from models_runtime.generation.judge import parse_ranking

    assert parse_ranking(reply, k) == places


def test_a_list_is_ranked_in_both_orders_and_position_bias_becomes_a_shared_place() -> None:
    from models_runtime.generation.judge import ListwiseJudge

    class Lister:
        key = "lister"

        def __init__(self, rule: Callable[[list[str]], str]) -> None:
            self.rule, self.asked = rule, []

        def generate(self, requests: Sequence[GenerationRequest]) -> list[Result]:
            self.asked += requests
            out: list[Result] = []
            for r in requests:
                shown = [line for line in r.messages[-1].content.split("\n") if line.startswith("len:")]
                reply = self.rule(shown)
                failure = GenerationFailure("http", "HTTP 503")
                out.append(failure if reply == "fail" else Generation(reply, "stop", 9, 1, "lister"))
            return out

    items = ["len:" + "x" * n for n in (3, 9, 5)]

    def longest_first(shown: list[str]) -> str:
        return "[[" + " > ".join(str(i + 1) for i in sorted(range(len(shown)), key=lambda i: -len(shown[i]))) + "]]"

    by_length = Lister(longest_first)
    (verdict,) = ListwiseJudge(by_length).judge([("Which?", items)])
    assert verdict.places == [[1], [2], [0]] and verdict.consistent and verdict.tokens == 20
    assert [line for line in by_length.asked[1].messages[-1].content.split("\n") if line.startswith("len:")] == items[
        ::-1
    ]
    # Always "the first shown is best, then in order": the two orders cancel into one shared place.
    (biased,) = ListwiseJudge(Lister(lambda shown: "[[1 > 2 > 3]]")).judge([("Which?", items)])
    assert biased.places == [[0, 1, 2]] and not biased.consistent
    replies = iter(["[[2 > 3 > 1]]", "no idea"])
    (half,) = ListwiseJudge(Lister(lambda shown: next(replies))).judge([("Which?", items)])
    assert half.places == [[1], [2], [0]] and not half.consistent and "only one order" in half.reason
    (failed,) = ListwiseJudge(Lister(lambda shown: "fail")).judge([("Which?", items)])
    assert failed.places is None and "503" in failed.reason
    with pytest.raises(ValueError, match="responses"):
        ListwiseJudge(by_length, template="{prompt} only")
