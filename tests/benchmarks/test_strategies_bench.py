"""The strategy benchmark runs end to end on a tiny problem and writes its report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import strategies as bench


@pytest.fixture
def tiny_pool(monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    # Random unit vectors stand in for the MiniLM pool so the test needs no encoder.
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((120, 24)).astype(np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    monkeypatch.setattr(bench, "load_pool", lambda cfg: pool)
    return pool


def test_one_seed_loop_writes_json_and_markdown(tiny_pool: np.ndarray, tmp_path) -> None:
    """One seed, N = 40, 12 judgments, random + least_compared + apohf: every run ends
    at T with a regret in [0, (u* − min u)/(u* − mean u)], and the JSON has the
    summary, per-setting blocks and the documented keys."""
    results = bench.main(
        [
            "--quick",
            "--seeds", "1",
            "--n-items", "40",
            "--steps", "12",
            "--eval-every", "3",
            "--settings", "mlp_s3_eps0.1",
            "--strategies", "random,least_compared,apohf",
            "--workers", "1",
            "--no-plots",
            "--output-dir", str(tmp_path),
        ]
    )  # fmt: skip

    written = json.loads((tmp_path / "strategies_quick.json").read_text())
    assert written["summary"].keys() == {"random", "least_compared", "apohf"}
    assert list(written["settings"]) == ["mlp_s3_eps0.1"]
    for block in [*written["summary"].values(), *written["settings"]["mlp_s3_eps0.1"].values()]:
        assert {"median_regret_at_T", "ratio_to_random", "ratio_ci90", "select_seconds_p50"} <= block.keys()
        assert len(block["ratio_ci90"]) == 2
    assert written["summary"]["random"]["ratio_to_random"] in (1.0, None)
    assert written["config"]["n_items"] == 40 and written["config"]["steps"] == 12
    assert "scale" in written

    runs = [json.loads(line) for line in (tmp_path / "strategies_quick_runs.jsonl").read_text().splitlines()]
    assert len(runs) == 3
    assert results["summary"].keys() == written["summary"].keys()
    for run in runs:
        assert run["t"][0] == 5 and run["t"][-1] == 12
        assert all(0.0 <= r < 10.0 and math.isfinite(r) for r in run["regret"])
        assert all(-1.0 <= t <= 1.0 for t in run["tau"])
    assert "| apohf |" in (tmp_path / "strategies_quick.md").read_text()


def test_runs_are_deterministic_per_seed(tiny_pool: np.ndarray) -> None:
    """The same seed gives the same curve; the start pairs and the hidden utility are
    shared by all strategies of a seed (the pairing behind the ratios)."""
    import dataclasses

    cfg = dataclasses.replace(bench.QUICK, n_items=30, steps=9, eval_every=2)
    setting = bench.Setting("linear", 10.0, 0.0)
    first = bench.run_one(setting, "least_compared", 1, cfg, tiny_pool)
    again = bench.run_one(setting, "least_compared", 1, cfg, tiny_pool)
    assert first["regret"] == again["regret"] and first["tau"] == again["tau"]
    assert bench.start_pairs(30, 5, 1, setting) == bench.start_pairs(30, 5, 1, setting)
    _, u1 = bench.make_problem(tiny_pool, setting, 1, cfg)
    _, u2 = bench.make_problem(tiny_pool, bench.Setting("linear", 3.0, 0.1), 1, cfg)
    np.testing.assert_array_equal(u1, u2)
