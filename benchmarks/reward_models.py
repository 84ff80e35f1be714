"""Reward-model benchmark: fit times, embedding throughput, correctness figures.

Run from the repository root (CPU figures always; GPU figures too when CUDA is
present):

    python -m benchmarks.reward_models            # writes benchmarks/results/reward_models.json
    python -m benchmarks.reward_models --quick    # smaller sizes, for a smoke run
    python -m benchmarks.reward_models --gpu-from gpu_run.json   # keep a GPU host's figures too

Every figure comes from this run: synthetic preference data with known
utilities (so recovery can be scored), real all-MiniLM-L6-v2 embeddings for the
throughput figure, and choix's ILSR as the independent reference MLE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import choix
import numpy as np

from models_runtime.embedding import EmbedderConfig, TransformerEmbedder
from models_runtime.ensemble import EnsembleConfig, fit_ensemble
from models_runtime.finetune import FinetuneConfig, fit_finetuned
from models_runtime.gradients import gradient_features
from models_runtime.metrics import kendall_tau, spearman_rho
from models_runtime.preferences import LikelihoodConfig, PreferenceData
from models_runtime.reward import RewardModelConfig, fit_reward_model
from models_runtime.simulate import linear_utilities, simulate_pairs, simulate_rankings

RESULTS = Path(__file__).resolve().parent / "results" / "reward_models.json"
DIM = 384

SENTENCE_PARTS = (
    ["Sure,", "Honestly,", "In short,", "Well,", "To be precise,", "Briefly,"],
    ["the answer", "a good option", "the safest choice", "this approach", "the main reason", "the best fix"],
    ["is to reverse the list", "depends on the season", "is boiling for seven minutes", "uses a hash map",
     "is a matter of taste", "comes from the axial tilt", "keeps the code readable", "avoids a race condition"],
    ["because it is simple.", "in most cases.", "for beginners.", "when speed matters.", "and it is well tested.",
     "unless memory is tight."],
)  # fmt: skip


def short_texts(n: int, rng: np.random.Generator) -> list[str]:
    """Short, varied, realistic-looking sentences (10-20 tokens)."""
    return [" ".join(str(rng.choice(part)) for part in SENTENCE_PARTS) for _ in range(n)]


def synthetic_problem(
    n_items: int, n_judgments: int, rng: np.random.Generator, dim: int = DIM
) -> tuple[np.ndarray, np.ndarray, PreferenceData]:
    """Unit-norm item features, a hidden linear utility and Bradley–Terry answers."""
    features, utility = linear_utilities(n_items, dim, rng, scale=3.0)
    return features, utility, simulate_pairs(utility, n_judgments, rng)


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def fit_seconds(device: str, quick: bool) -> dict[str, float]:
    rng = np.random.default_rng(0)
    sizes = {"bt_mlp_1k": (500, 1_000), "bt_mlp_100k": (20_000, 10_000 if quick else 100_000)}
    out: dict[str, float] = {}
    for key, (n_items, n_judgments) in sizes.items():
        features, _, data = synthetic_problem(n_items, n_judgments, rng)
        _, seconds = timed(fit_reward_model, features, data, RewardModelConfig(head="mlp", device=device))
        out[key] = round(seconds, 3)
    features, _, data = synthetic_problem(2_000, 2_000 if quick else 10_000, rng)
    _, seconds = timed(fit_ensemble, features, data, EnsembleConfig(n_members=10, head="mlp", device=device))
    out["ensemble10_mlp_10k"] = round(seconds, 3)
    return out


def embed_texts_per_second(device: str, n: int, model_path: str | None = None) -> float:
    embedder = TransformerEmbedder(EmbedderConfig(model_path=model_path, device=device))
    texts = short_texts(n, np.random.default_rng(1))
    embedder.embed(texts[:16])  # load the model and warm up before timing
    _, seconds = timed(embedder.embed, texts)
    return round(n / seconds, 1)


def bt_vs_choix_max_abs_diff() -> float:
    """Our BT MLE (one-hot features, linear head, no penalty, L-BFGS) against choix's ILSR."""
    rng = np.random.default_rng(2)
    n_items = 30
    data = simulate_pairs(rng.normal(size=n_items), 3_000, rng)
    winners = np.where(data.pair_outcome > 0.5, data.pair_left, data.pair_right)
    losers = np.where(data.pair_outcome > 0.5, data.pair_right, data.pair_left)
    reference = choix.ilsr_pairwise(n_items, list(zip(winners.tolist(), losers.tolist(), strict=True)), alpha=0)
    onehot = np.eye(n_items, dtype=np.float32)
    config = RewardModelConfig(head="linear", l2=0.0, optimizer="lbfgs", holdout_fraction=0.0, device="cpu")
    ours = fit_reward_model(onehot, data, config).model.scores(onehot)
    return float(np.max(np.abs((ours - ours.mean()) - (reference - reference.mean()))))


def utility_recovery() -> dict[str, float]:
    """Spearman ρ and Kendall τ between fitted and true utilities: 300 items with
    32-d features, 6,000 Bradley–Terry judgments, MLP head."""
    rng = np.random.default_rng(3)
    features, utility = linear_utilities(300, 32, rng)
    data = simulate_pairs(utility, 6_000, rng)
    scores = fit_reward_model(features, data, RewardModelConfig(head="mlp", device="cpu")).model.scores(features)
    return {"spearman": round(spearman_rho(scores, utility), 4), "kendall": round(kendall_tau(scores, utility), 4)}


def plackett_luce_vs_pairwise_split(seeds: int) -> dict[str, float]:
    """Mean squared utility error (20 items, 60 rankings of K=4 per run) of the full
    Plackett–Luce fit and of the same rankings split into pairs, averaged over runs:
    equal annotator effort, two estimators."""
    errors: dict[str, list[float]] = {"plackett_luce": [], "pairwise_split": []}
    onehot = np.eye(20, dtype=np.float32)
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        utility = rng.normal(size=20)
        utility -= utility.mean()
        data = simulate_rankings(utility, 60, 4, rng)
        for listwise, errs in errors.items():
            config = RewardModelConfig(
                head="linear",
                l2=1e-3,
                optimizer="lbfgs",
                holdout_fraction=0.0,
                device="cpu",
                likelihood=LikelihoodConfig(listwise=listwise),
            )
            scores = fit_reward_model(onehot, data, config).model.scores(onehot)
            errs.append(float(np.mean((scores - scores.mean() - utility) ** 2)))
    return {f"{k}_mse": round(float(np.mean(v)), 4) for k, v in errors.items()} | {"runs": seeds}


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} cores, torch {torch.__version__}"


def gradient_features_per_second(device: str, n: int) -> float:
    """Per-candidate gradient features (APOHF) of a 384-d MLP head, candidates/s."""
    rng = np.random.default_rng(4)
    features, _, data = synthetic_problem(n, 2_000, rng)
    model = fit_reward_model(features, data, RewardModelConfig(head="mlp", device=device, max_epochs=5)).model
    gradient_features(model, features[:64])  # warm up
    _, seconds = timed(gradient_features, model, features)
    return round(n / seconds, 1)


def finetune_seconds(device: str, model_path: str | None) -> dict[str, float]:
    """One epoch of full fine-tuning (encoder + reward head) on 2,000 pairwise
    judgments over 1,000 short texts, batches of 32 judgments: meant for GPU."""
    rng = np.random.default_rng(5)
    texts = short_texts(1_000, rng)
    utility = np.array([len(t) for t in texts], dtype=np.float64) / 10.0
    data = simulate_pairs(utility - utility.mean(), 2_000, rng)
    config = FinetuneConfig(model_path=model_path, epochs=1, batch_judgments=32, max_length=64, device=device)
    result, seconds = timed(fit_finetuned, texts, data, config)
    return {
        "finetune_1epoch_2k_seconds": round(seconds, 2),
        "finetune_heldout_accuracy": result.metrics["heldout_accuracy"],
    }


def figures_for(device: str, quick: bool, model_path: str | None) -> dict[str, Any]:
    """Timing figures on one device."""
    n_texts = 300 if quick else (2_000 if device == "cpu" else 20_000)
    return {
        "fit_seconds": fit_seconds(device, quick),
        f"embed_texts_per_second_{device}": embed_texts_per_second(device, n_texts, model_path),
        f"gradient_features_per_second_{device}": gradient_features_per_second(device, 2_000 if quick else 10_000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes for a smoke run (figures not comparable)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--gpu-from",
        type=Path,
        help="copy the 'gpu' section of another results file (e.g. a run on a GPU host) into this one",
    )
    parser.add_argument(
        "--embedder-path", help="local Hugging Face model directory (default: the packaged all-MiniLM-L6-v2)"
    )
    args = parser.parse_args()

    import torch

    recovery = utility_recovery()
    results: dict[str, Any] = {
        **figures_for("cpu", args.quick, args.embedder_path),
        "bt_vs_choix_max_abs_diff": bt_vs_choix_max_abs_diff(),
        "spearman_recovery": recovery["spearman"],
        "kendall_recovery": recovery["kendall"],
        "plackett_luce_vs_pairwise_split": plackett_luce_vs_pairwise_split(5 if args.quick else 30),
        "machine": machine(),
        "quick": args.quick,
        "targets": {"ensemble10_mlp_10k_seconds": 10.0, "embed_texts_per_second_cpu": 100.0},
    }
    if torch.cuda.is_available():
        results["gpu"] = {
            "device": torch.cuda.get_device_name(0),
            "machine": machine(),
            **figures_for("cuda", args.quick, args.embedder_path),
            **finetune_seconds("cuda", args.embedder_path),
        }
    elif args.gpu_from is not None:
        gpu = json.loads(args.gpu_from.read_text()).get("gpu")
        if gpu is None:
            parser.error(f"{args.gpu_from} has no 'gpu' section")
        results["gpu"] = gpu
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
