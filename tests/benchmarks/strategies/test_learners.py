"""The benchmark's models are the app's defaults, validated the way the app validates."""

from __future__ import annotations

import numpy as np

from annotation.models import Study
from benchmarks.strategies.learners import KindLearner, _holdout
from benchmarks.strategies.protocol import PREFLOOP, BenchConfig, model_kind
from models_runtime import kinds
from models_runtime.kernel_bt import KernelBTConfig
from models_runtime.reward import RewardModelConfig


def test_models_are_the_apps_defaults_and_no_model_is_told_the_flip_rate() -> None:
    """Every strategy runs with the kind a default study gives it: the study's
    default kind, which serves every strategy (APOHF reads its feature map)."""
    assert Study._meta.get_field("model_type").default == kinds.DEFAULT_KIND == "kernel"
    assert {s: model_kind(s) for s in PREFLOOP} == {
        "random": "kernel",
        "least_compared": "kernel",
        "uncertainty": "kernel",
        "apohf": "kernel",
        "double_ts": "kernel",
        "infomax": "kernel",
        "eubo": "kernel",
    }
    features = np.zeros((4, 3), dtype=np.float32)
    head = KindLearner("mlp", features, 7, BenchConfig()).config
    kernel = KindLearner("kernel", features, 7, BenchConfig()).config
    assert head == RewardModelConfig(seed=7, device="cpu")
    assert head.likelihood.label_flip_rate is None
    assert kernel == KernelBTConfig(seed=7)


def test_the_validation_split_stays_put_as_judgments_arrive() -> None:
    """A pair held out at 40 judgments is still held out at 150, whatever order it was
    shown in, so a warm start is never validated on what it trained on."""
    rng = np.random.default_rng(0)
    left = rng.integers(0, 500, 150).tolist()
    right = ((np.array(left) + 1 + rng.integers(0, 498, 150)) % 500).tolist()
    early = _holdout(left[:40], right[:40], 3, 0.2)
    late = _holdout(left, right, 3, 0.2)
    np.testing.assert_array_equal(late[late < 40], early)
    assert 0.1 < late.size / 150 < 0.3
    np.testing.assert_array_equal(_holdout(right, left, 3, 0.2), late)


def test_a_scale_row_is_the_median_of_its_runs_with_the_slowest_beside_it() -> None:
    from benchmarks.strategies.scale import _median_row

    runs = [
        {"strategy": "apohf", "prepare_seconds": p, "select_seconds": s, "total_seconds": p + s, "peak_rss_mb": m}
        for p, s, m in [(0.9, 0.2, 700.0), (1.5, 0.4, 720.0), (1.0, 0.1, 710.0)]
    ]
    row = _median_row(runs)
    assert (row["prepare_seconds"], row["select_seconds"], row["total_seconds"]) == (1.0, 0.2, 1.1)
    assert row["total_seconds_max"] == 1.9 and row["peak_rss_mb"] == 720.0 and row["repeats"] == 3
