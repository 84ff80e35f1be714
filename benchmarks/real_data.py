"""Real-data benchmark: held-out accuracy of every reward-model kind × feature choice on HH-RLHF.

Run from the repository root:

    python -m benchmarks.real_data             # writes benchmarks/results/real_data.json

On Anthropic's HH-RLHF harmless-base test file (2,312 multi-turn chosen/rejected
pairs, ``--data``), each seed splits the *prompts* 80/20 (every pair of a prompt
on one side), fits a reward model on the training pairs (the fit holds out its
own validation share for early stopping, as in the app; nothing is tuned on the
test prompts) and scores the test pairs: accuracy is the share whose chosen reply
gets the higher utility. Five seeds give mean ± sd. Beside the models: a constant
50% and "the shorter reply wins".

The configuration called ``default`` is read from the app: ``Study``'s field
defaults (model type, model options, features) and the configured embedder
(``activelearn.features.embedder_config``). Conversations are parsed by the HH
importer's own function and the texts embedded by the app's own
``models_runtime.context.embedded_text`` and embedder, so the figures are the
app's. Embeddings are cached on disk (``--cache-dir``, keyed by model and text),
so a rerun embeds nothing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from annotation.imports.hh_rlhf import hh_rlhf_record
from annotation.imports.records import ImportFileError
from models_runtime import context, kinds
from models_runtime.embedding import CachedEmbedder, DirectoryEmbeddingCache, EmbedderConfig, TransformerEmbedder
from models_runtime.preferences import PreferenceData

RESULTS = Path(__file__).resolve().parent / "results" / "real_data.json"
# The shared data lies beside the checkout (``../shared``) unless PREFLOOP_SHARED_DIR says where.
SHARED = Path(os.environ.get("PREFLOOP_SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared")
DATA = SHARED / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
CACHE = Path(__file__).resolve().parents[1] / "var" / "benchmark-embeddings"
SEEDS = 5
TEST_SHARE = 0.2
# Texts per embedding call: the cache is written after each, so an interrupted run
# keeps what it embedded.
_EMBED_CHUNK = 256


def app_defaults() -> dict[str, Any]:
    """The app's default study configuration, read from the app itself: the
    ``Study`` fields' defaults and the configured embedder."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
    import django  # noqa: PLC0415 - a benchmark that only needs Django for the defaults

    django.setup()
    from activelearn.features import embedder_config  # noqa: PLC0415
    from annotation.models import Study  # noqa: PLC0415

    def default(name: str) -> Any:
        field = Study._meta.get_field(name)
        return field.default() if callable(field.default) else field.default

    return {
        "model": default("model_type"),
        "model_params": default("model_params"),
        "features": default("features"),
        "embedder": embedder_config(),
    }


@dataclass(frozen=True)
class Pair:
    """One HH row: the shared conversation and the two final replies."""

    prompt: str
    chosen: str
    rejected: str


def load_pairs(path: Path, limit: int | None = None) -> tuple[list[Pair], int]:
    """The file's pairs as the HH importer reads them, and how many rows it refused."""
    pairs: list[Pair] = []
    refused = 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                record = hh_rlhf_record(row["chosen"], row["rejected"], line=number, record_preference=False)
            except ImportFileError:
                refused += 1
                continue
            pairs.append(Pair(record.text, record.candidates[0].text, record.candidates[1].text))
            if limit is not None and len(pairs) >= limit:
                break
    return pairs, refused


def prompt_groups(pairs: Sequence[Pair]) -> np.ndarray:
    """A group id per pair: pairs with the same conversation share one."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(p.prompt.strip(), len(ids)) for p in pairs], dtype=np.int64)


def split_by_prompt(groups: np.ndarray, seed: int) -> np.ndarray:
    """A boolean test mask over pairs: ``TEST_SHARE`` of the prompts, drawn by ``seed``."""
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    test_groups = rng.choice(unique, size=max(1, round(len(unique) * TEST_SHARE)), replace=False)
    return np.isin(groups, test_groups)


def feature_texts(pairs: Sequence[Pair], features: str, tokens: context.Tokens) -> tuple[list[str], dict[str, Any]]:
    """Texts to embed (chosen, rejected per pair) and how much truncation dropped."""
    texts: list[str] = []
    truncated = context_dropped = response_dropped = 0
    for pair in pairs:
        for response in (pair.chosen, pair.rejected):
            item = context.embedded_text(
                prompt_text=pair.prompt, prompt_format="text", response=response, features=features, tokens=tokens
            )
            texts.append(item.text)
            truncated += item.truncated
            context_dropped += item.context_tokens_dropped
            response_dropped += item.response_tokens_dropped
    stats = {
        "texts": len(texts),
        "truncated": truncated,
        "context_tokens_dropped": context_dropped,
        "response_tokens_dropped": response_dropped,
    }
    return texts, stats


def embed(embedder: Any, texts: Sequence[str], log: Callable[[str], None]) -> np.ndarray:
    """Embeddings of ``texts`` in chunks, so the on-disk cache keeps partial progress."""
    out = []
    started = time.perf_counter()
    for start in range(0, len(texts), _EMBED_CHUNK):
        out.append(embedder.embed(list(texts[start : start + _EMBED_CHUNK])))
        done = min(start + _EMBED_CHUNK, len(texts))
        log(f"  embedded {done}/{len(texts)} ({time.perf_counter() - started:.0f} s)")
    return np.concatenate(out) if out else np.zeros((0, embedder.dim), dtype=np.float32)


def pair_accuracy(scores: np.ndarray, n_pairs: int, mask: np.ndarray) -> float:
    """Share of masked pairs whose chosen reply (row 2i) outscores the rejected (2i+1); a tie counts half."""
    chosen, rejected = scores[0::2][:n_pairs][mask], scores[1::2][:n_pairs][mask]
    return float(np.mean((chosen > rejected) + 0.5 * (chosen == rejected)))


def training_data(train_idx: np.ndarray, rng: np.random.Generator) -> PreferenceData:
    """Training pairs over feature rows (2i chosen, 2i+1 rejected), shown in a random
    order with the outcome to match, as annotators' answers would be."""
    flip = rng.random(len(train_idx)) < 0.5
    chosen, rejected = 2 * train_idx, 2 * train_idx + 1
    left = np.where(flip, rejected, chosen)
    right = np.where(flip, chosen, rejected)
    return PreferenceData.from_pairs(left, right, np.where(flip, 0.0, 1.0).astype(np.float32))


def evaluate_kind(
    features: np.ndarray, groups: np.ndarray, *, model: str, params: dict[str, Any], seeds: int
) -> dict[str, Any]:
    """Held-out accuracy (mean, sd over seeds) and mean fit seconds of one kind."""
    kind = kinds.get(model)
    accuracies, seconds, epochs = [], [], []
    n_pairs = len(groups)
    for seed in range(seeds):
        test = split_by_prompt(groups, seed)
        train_idx = np.flatnonzero(~test)
        data = training_data(train_idx, np.random.default_rng(1000 + seed))
        config = kind.config({**params, "seed": seed}, "cpu")
        started = time.perf_counter()
        result = kind.fit(features, data, config, None)
        seconds.append(time.perf_counter() - started)
        accuracies.append(pair_accuracy(result.model.scores(features), n_pairs, test))
        epochs.append(float(result.metrics.get("epochs", float("nan"))))
    return summary(accuracies, seconds) | {"epochs_mean": float(np.mean(epochs))}


def summary(accuracies: Sequence[float], seconds: Sequence[float]) -> dict[str, Any]:
    """The figures every row reports."""
    return {
        "heldout_accuracy_mean": round(float(np.mean(accuracies)), 4),
        "heldout_accuracy_sd": round(float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0, 4),
        "fit_seconds": round(float(np.mean(seconds)), 3),
        "per_seed": [round(a, 4) for a in accuracies],
    }


def baselines(pairs: Sequence[Pair], groups: np.ndarray, seeds: int) -> dict[str, Any]:
    """Constant 50%, and "the shorter reply wins" (characters; equal length counts half),
    on the same test splits."""
    lengths = np.array([[len(p.chosen), len(p.rejected)] for p in pairs], dtype=np.float64)
    scores = (-lengths).reshape(-1)  # shorter → higher utility, rows 2i / 2i+1
    shorter = [pair_accuracy(scores, len(pairs), split_by_prompt(groups, s)) for s in range(seeds)]
    return {
        "constant": summary([0.5] * seeds, [0.0] * seeds),
        "shorter_reply_wins": summary(shorter, [0.0] * seeds),
    }


def finetune_row(
    pairs: Sequence[Pair],
    *,
    features: str,
    tokens: context.Tokens,
    train_pairs: int,
    test_pairs: int,
    epochs: int,
    seed: int = 0,
) -> dict[str, Any]:
    """The optional fine-tuning path (``models_runtime.finetune``) on CPU, on a subset:
    ``train_pairs`` pairs from seed ``seed``'s training prompts, scored on
    ``test_pairs`` pairs of its test prompts (both drawn at random). Its own validation
    share stops it early, as in every fit."""
    from models_runtime.finetune import FinetuneConfig, fit_finetuned  # noqa: PLC0415 - torch

    groups = prompt_groups(pairs)
    test = split_by_prompt(groups, seed)
    rng = np.random.default_rng(seed)
    train_idx = np.sort(rng.permutation(np.flatnonzero(~test))[:train_pairs])
    test_idx = np.sort(rng.permutation(np.flatnonzero(test))[:test_pairs])
    chosen = list(train_idx) + list(test_idx)
    texts, _ = feature_texts([pairs[i] for i in chosen], features, tokens)
    data = training_data(np.arange(len(train_idx)), np.random.default_rng(1000 + seed))
    config = FinetuneConfig(epochs=epochs, seed=seed, device="cpu", patience=epochs)
    started = time.perf_counter()
    result = fit_finetuned(texts, data, config)
    seconds = time.perf_counter() - started
    n_test = len(test_idx)
    scores = result.model.scores(texts[2 * len(train_idx) :])
    accuracy = pair_accuracy(scores, n_test, np.ones(n_test, dtype=bool))
    return {
        "model": "finetune",
        "features": features,
        "train_pairs": len(train_idx),
        "test_pairs": n_test,
        "epochs": float(result.metrics.get("epochs", epochs)),
        "best_epoch": float(result.metrics.get("best_epoch", float("nan"))),
        "heldout_accuracy": round(accuracy, 4),
        "fit_seconds": round(seconds, 1),
        "seconds_per_epoch": round(result.metrics["train_seconds"] / max(1.0, result.metrics.get("epochs", 1.0)), 1),
    }


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
    }


def run(
    *,
    pairs: Sequence[Pair],
    embedder: Any,
    defaults: dict[str, Any],
    model_names: Sequence[str],
    feature_choices: Sequence[str],
    seeds: int,
    log: Callable[[str], None] = print,
    extra_embedders: Sequence[tuple[str, Any]] = (),
) -> dict[str, Any]:
    """The benchmark on ``pairs`` with ``embedder`` (anything with ``embed``, ``dim``,
    ``model_key`` and optionally ``tokens``) and each of ``extra_embedders``: a row
    per encoder × model × features, the default configuration's figures, the
    baselines."""
    groups = prompt_groups(pairs)
    rows: list[dict[str, Any]] = []
    truncation: dict[str, Any] = {}
    encoders = [("default", embedder), *extra_embedders]
    for encoder_name, encoder in encoders:
        tokens = (
            encoder.tokens()
            if hasattr(encoder, "tokens")
            else context.WhitespaceTokens(int(getattr(encoder, "max_length", 256)))
        )
        for features in feature_choices:
            texts, stats = feature_texts(pairs, features, tokens)
            truncation[f"{encoder_name}/{features}"] = stats
            log(f"{encoder_name} / {features}: {len(texts)} texts, {stats['truncated']} truncated")
            matrix = embed(encoder, texts, log)
            for model in model_names:
                row = evaluate_kind(matrix, groups, model=model, params=defaults["model_params"], seeds=seeds)
                row = {"model": model, "features": features, "encoder": encoder.model_key, **row}
                rows.append(row)
                log(
                    f"  {model:9s} {features:13s} {row['heldout_accuracy_mean']:.3f} ± "
                    f"{row['heldout_accuracy_sd']:.3f}  ({row['fit_seconds']:.1f} s/fit)"
                )
    default_row = next(
        r
        for r in rows
        if (r["model"], r["features"], r["encoder"]) == (defaults["model"], defaults["features"], embedder.model_key)
    )
    return {
        "default": {
            "model": defaults["model"],
            "model_params": defaults["model_params"],
            "features": defaults["features"],
            "encoder": embedder.model_key,
            **{k: default_row[k] for k in ("heldout_accuracy_mean", "heldout_accuracy_sd", "fit_seconds")},
        },
        "rows": rows,
        "baselines": baselines(pairs, groups, seeds),
        "data": {"pairs": len(pairs), "prompts": len(np.unique(groups)), "test_share": TEST_SHARE, "seeds": seeds},
        "truncation": truncation,
    }


def main(argv: Sequence[str] | None = None, *, embedder: Any = None) -> dict[str, Any]:
    """Run the benchmark from the command line; ``embedder`` replaces the configured
    encoder (tests pass a small fake one)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="HH-RLHF JSONL(.gz) file (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache-dir", type=Path, default=CACHE, help="embedding cache (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N pairs (a smoke run)")
    parser.add_argument("--models", nargs="*", default=None, help="reward-model kinds (default: all registered)")
    parser.add_argument("--features", nargs="*", default=list(context.FEATURES), choices=context.FEATURES)
    parser.add_argument(
        "--finetune",
        type=int,
        nargs=3,
        default=None,
        metavar=("TRAIN_PAIRS", "TEST_PAIRS", "EPOCHS"),
        help="also fine-tune the encoder on CPU on a subset (slow: minutes per hundred pairs)",
    )
    parser.add_argument(
        "--extra-encoder",
        action="append",
        default=[],
        metavar="DIR",
        help="another local Hugging Face encoder directory, measured like the default one",
    )
    parser.add_argument(
        "--compare-layers",
        type=int,
        nargs="*",
        default=[1],
        metavar="K",
        help="also measure the configured encoder pooling K layers (default: 1, the last layer alone, "
        "what the app embedded before it pooled several)",
    )
    parser.add_argument(
        "--finetune-only",
        action="store_true",
        help="run only the --finetune measurement and write it to real_data_finetune.json beside --out",
    )
    args = parser.parse_args(argv)

    defaults = app_defaults()
    pairs, refused = load_pairs(args.data, args.limit)
    print(f"{len(pairs)} pairs from {args.data} ({refused} rows the importer refused)")
    cache = DirectoryEmbeddingCache(args.cache_dir)
    if embedder is None:
        embedder = CachedEmbedder(TransformerEmbedder(defaults["embedder"]), cache)

    def finetune(train_pairs: int, test_pairs: int, epochs: int) -> dict:
        return finetune_row(
            pairs,
            features=defaults["features"],
            tokens=embedder.tokens(),
            train_pairs=train_pairs,
            test_pairs=test_pairs,
            epochs=epochs,
        )

    if args.finetune_only:
        train_pairs, test_pairs, epochs = args.finetune or (200, 200, 1)
        row = finetune(train_pairs, test_pairs, epochs)
        row["machine"] = machine()
        row["command"] = (
            f"python -m benchmarks.real_data --finetune-only --finetune {train_pairs} {test_pairs} {epochs}"
        )
        out = args.out.with_name("real_data_finetune.json")
        out.write_text(json.dumps(row, indent=2) + "\n")
        print(f"wrote {out}: {row}")
        return row
    extra = [
        (Path(d).name, CachedEmbedder(TransformerEmbedder(EmbedderConfig(model_path=d, device="cpu")), cache))
        for d in args.extra_encoder
    ]
    configured = defaults["embedder"]
    extra += [
        (f"{k}-layer", CachedEmbedder(TransformerEmbedder(replace(configured, layers=k, device="cpu")), cache))
        for k in args.compare_layers
        if k != configured.layers
    ]
    result = run(
        pairs=pairs,
        embedder=embedder,
        defaults=defaults,
        model_names=args.models or kinds.names(),
        feature_choices=args.features,
        seeds=args.seeds,
        extra_embedders=extra,
    )
    result["data"] |= {"file": args.data.name, "rows_refused_by_importer": refused}
    if args.finetune:
        result["finetune"] = finetune(*args.finetune)
        print(f"finetune: {result['finetune']}")
    result["machine"] = machine()
    result["command"] = "python -m benchmarks.real_data"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
