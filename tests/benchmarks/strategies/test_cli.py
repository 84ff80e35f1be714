"""The strategy benchmark runs end to end on a tiny problem and writes its report."""

from __future__ import annotations

import json
import math

import numpy as np

from benchmarks.strategies.cli import main


def test_one_seed_loop_writes_json_and_markdown(tiny_pool: np.ndarray, tmp_path) -> None:
    """One seed, N = 40, 12 judgments, random + least_compared + apohf: every run ends
    at T with a regret in [0, (u* − min u)/(u* − mean u)], and the JSON has the
    summary, per-setting blocks and the documented keys."""
    results = main(
        [
            "--quick",
            "--seeds", "1",
            "--n-items", "40",
            "--steps", "12",
            "--eval-every", "3",
            "--settings", "composed.mlp_s3_eps0.1",
            "--strategies", "random,least_compared,apohf",
            "--workers", "1",
            "--no-plots",
            "--output-dir", str(tmp_path),
        ]
    )  # fmt: skip

    written = json.loads((tmp_path / "strategies_quick.json").read_text())
    assert written["summary"].keys() == {"random", "least_compared", "apohf"}
    assert list(written["settings"]) == ["composed.mlp_s3_eps0.1"]
    for block in [*written["summary"].values(), *written["settings"]["composed.mlp_s3_eps0.1"].values()]:
        assert {"median_regret_at_T", "ratio_to_random", "ratio_ci90", "select_seconds_p50"} <= block.keys()
        assert len(block["ratio_ci90"]) == 2
    assert written["summary"]["random"]["ratio_to_random"] in (1.0, None)
    assert written["config"]["n_items"] == 40 and written["config"]["steps"] == 12
    assert "scale" in written and written["named_best"] == "eubo"
    assert written["protocol"]["true_flip_rate_given"] is False and written["protocol"]["held_out_seeds"]
    assert "mean_regret_at_T" in written["summary"]["apohf"] and "least_compared" in written["wins"]["apohf"]

    runs = [json.loads(line) for line in (tmp_path / "strategies_quick_runs.jsonl").read_text().splitlines()]
    assert len(runs) == 3
    assert results["summary"].keys() == written["summary"].keys()
    for run in runs:
        assert run["t"][0] == 5 and run["t"][-1] == 12
        assert all(0.0 <= r < 10.0 and math.isfinite(r) for r in run["regret"])
        assert all(-1.0 <= t <= 1.0 for t in run["tau"])
    assert "| apohf |" in (tmp_path / "strategies_quick.md").read_text()


def test_a_rerun_reuses_the_saved_runs(tiny_pool: np.ndarray, tmp_path, capsys) -> None:
    """Runs are saved as they finish; a second call with the same config runs nothing
    and reports from the saved file."""
    argv = [
        "--quick", "--seeds", "1", "--n-items", "30", "--steps", "7", "--settings", "composed.linear_s10_eps0",
        "--strategies", "random", "--workers", "1", "--no-plots", "--output-dir", str(tmp_path),
    ]  # fmt: skip
    first = main(argv)
    assert "1 runs to do (0 saved)" in capsys.readouterr().out
    again = main(argv)
    assert "runs to do" not in capsys.readouterr().out
    assert again["summary"] == first["summary"]
    assert len((tmp_path / "strategies_quick_runs.jsonl").read_text().splitlines()) == 1
