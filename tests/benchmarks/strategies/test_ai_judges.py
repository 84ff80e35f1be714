"""The AI-judge benchmark (benchmarks.ai_judges): judges that cannot be trusted change
nothing, routing saves human judgments only when judges settle comparisons, and the
summary's ratio is read off the curves as documented."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks import ai_judges
from benchmarks.strategies.protocol import QUICK, Pool, Setting

CFG = dataclasses.replace(QUICK, n_items=30, steps=25, eval_every=5)
SETTING = Setting("composed", "linear", 10.0, 0.0)


def test_distrusted_judges_change_nothing_and_good_ones_are_weighted(tiny_pool: np.ndarray) -> None:
    """Three adversarial judges end at weight 0, and the run is then the human-only
    run exactly (their rows are invisible to the model). With the mixed panel, the
    person still answers T comparisons and the adversary is weighted 0."""
    human = ai_judges.run_one("human_only", SETTING, 0, CFG, Pool(tiny_pool))
    adversarial = ai_judges.run_one("all_adversarial", SETTING, 0, CFG, Pool(tiny_pool))
    assert adversarial["regret"] == human["regret"] and adversarial["h"] == human["h"]
    assert all(j["weight"] == 0.0 for j in adversarial["judges"].values())
    assert adversarial["settled_by_judges"] == 0
    mixed = ai_judges.run_one("judges", SETTING, 0, CFG, Pool(tiny_pool))
    assert mixed["h"][-1] == CFG.steps and mixed["comparisons"][-1] >= CFG.steps
    assert mixed["comparisons"][-1] == CFG.steps + mixed["settled_by_judges"]
    assert mixed["judges"]["adversarial"]["weight"] == 0.0
    assert mixed["judges"]["adversarial"]["accuracy"] < 0.5 < mixed["judges"]["judge_75"]["accuracy"]


def _run(arm: str, seed: int, regret: list[float]) -> dict:
    h = [5, 10, 15, 20, 25]
    return {
        "arm": arm, "setting": SETTING.key, "seed": seed, "h": h, "regret": regret, "comparisons": h,
        "settled_by_judges": 0,
        "judges": {name: {"true_agreement": acc, "accuracy": acc, "low": acc - 0.05, "high": acc + 0.05,
                          "weight": 0.0, "anchored": 10} for name, acc in ai_judges.PANELS[arm]},
    }  # fmt: skip


def test_the_ratio_is_where_the_judges_curve_reaches_the_human_only_regret_at_t() -> None:
    """Human-only ends at 0.2 (mean over two problems); with judges the mean curve is
    0.5, 0.3, 0.1, …: it crosses 0.2 halfway between 10 and 15 human judgments,
    12.5 of T = 25, a ratio of 0.5."""
    runs = []
    for seed in (0, 1):
        runs.append(_run("human_only", seed, [0.9, 0.6, 0.4, 0.3, 0.2]))
        runs.append(_run("judges", seed, [0.5, 0.3, 0.1, 0.1, 0.1]))
        runs.append(_run("all_adversarial", seed, [0.9, 0.6, 0.4, 0.3, 0.2 + 0.1 * seed]))
    summary = ai_judges.summarise(runs, CFG)
    assert summary["problems"] == 2
    assert summary["human_judgments_ratio"] == pytest.approx(0.5)
    assert summary["all_adversarial_regret_ratio"] == pytest.approx(0.25 / 0.2)
    assert summary["all_adversarial_minus_human_only"]["losses"] == 1
    assert summary["targets"]["human_judgments_ratio_at_most_0.5"] is True
    assert summary["targets"]["all_adversarial_no_worse"] is False
    # A curve that never gets there is reported past T (1.5 T), not at T.
    never = [r if r["arm"] != "judges" else _run("judges", r["seed"], [0.9] * 5) for r in runs]
    assert ai_judges.summarise(never, CFG)["human_judgments_ratio"] == pytest.approx(1.5)
