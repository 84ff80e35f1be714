"""Learned vs fixed label-flip rate on real preferences (HH-RLHF harmless-base test).

Run from the repository root (about ten CPU minutes; the embeddings come from the
hh pool's cache under ``benchmarks/results/cache``, so nothing is embedded twice):

    python -m benchmarks.flip_rate            # prints the figures, writes nothing

For each seed the prompts are split 80/20 as in ``benchmarks.real_data``; the default
single head (``mlp``) and the default ensemble are fitted on the training pairs with
ε learned (the app's default) and with ε fixed at 0, and scored on the test pairs:
accuracy (the chosen reply wins) and log-loss of the probability the fit's likelihood
gives, learned ε included (``models_runtime.evaluation.score_heldout``). A real study
never knows ε, so learning it must not cost accuracy or log-loss where the data say
little about it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import pools, real_data
from models_runtime import kinds
from models_runtime.evaluation import score_heldout
from models_runtime.preferences import PreferenceData

SETTINGS = {"learned": {}, "fixed 0": {"label_flip_rate": 0.0}}


def _train_data(pairs: np.ndarray, rng: np.random.Generator) -> PreferenceData:
    """The (chosen, rejected) rows of ``pairs`` shown in a random order, with the
    outcome to match."""
    swap = rng.random(len(pairs)) < 0.5
    left = np.where(swap, pairs[:, 1], pairs[:, 0])
    right = np.where(swap, pairs[:, 0], pairs[:, 1])
    return PreferenceData.from_pairs(left, right, np.where(swap, 0.0, 1.0).astype(np.float32))


def measure(model: str, params: dict[str, Any], features: np.ndarray, pairs: np.ndarray, groups: np.ndarray, seed: int):
    """Test accuracy, test log-loss, the learned ε (members' mean) and fit seconds of
    one fit."""
    test = real_data.split_by_prompt(groups, seed)
    kind = kinds.get(model)
    config = kind.config({**params, "seed": seed}, "cpu")
    data = _train_data(pairs[~test], np.random.default_rng(1000 + seed))
    started = time.perf_counter()
    result = kind.fit(features, data, config, None)
    seconds = time.perf_counter() - started
    outputs = kind.outputs(result.model, features, "member_scores", lambda: data)
    held = pairs[test]
    score = score_heldout(
        outputs.get("member_scores", outputs["scores"]),
        PreferenceData.from_pairs(held[:, 0], held[:, 1]),
        np.arange(len(held)),
        likelihood=config.likelihood,
        flip_rate=result.model.flip_rate,
        tie_rate=data.tie_rate(),
    )
    return score.accuracy, score.log_loss, float(np.mean(result.model.flip_rate)), seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=["mlp", "ensemble"])
    args = parser.parse_args(argv)
    pool = pools.hh_pool()
    # A pair whose two replies merged into one item says nothing.
    keep = pool.pairs[:, 0] != pool.pairs[:, 1]
    pairs, groups = pool.pairs[keep], pool.groups[keep]
    print(f"{len(pairs)} pairs over {len(pool.features)} items, {len(np.unique(groups))} prompts")
    for model in args.models:
        for name, params in SETTINGS.items():
            rows = np.array([measure(model, params, pool.features, pairs, groups, s) for s in range(args.seeds)])
            acc, ll, eps, sec = rows.T
            print(
                f"{model:9s} ε {name:8s} accuracy {acc.mean():.4f} ± {acc.std(ddof=1):.4f}  "
                f"log-loss {ll.mean():.4f} ± {ll.std(ddof=1):.4f}  ε {np.round(eps, 3).tolist()}  "
                f"per seed acc {np.round(acc, 4).tolist()} ll {np.round(ll, 4).tolist()}  {sec.mean():.1f} s/fit",
                flush=True,
            )


if __name__ == "__main__":
    main()
