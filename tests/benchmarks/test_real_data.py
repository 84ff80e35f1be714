"""The real-data benchmark on a tiny slice, with a small fake encoder."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from annotation.models import Study
from benchmarks import real_data
from models_runtime import context

ROW_KEYS = {"heldout_accuracy_mean", "heldout_accuracy_sd", "fit_seconds"}


class WordHashEmbedder:
    """Bag of hashed words, unit norm: cheap, deterministic, and it sees the words."""

    model_key = "word-hash-32"
    dim = 32
    max_length = 64

    def __init__(self) -> None:
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return out


def _hh_file(path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        # A long first turn, so the whole-conversation text has to be cut.
        prompt = f"\n\nHuman: {'story ' * 80}\n\nAssistant: ok\n\nHuman: question {i % (n // 2)}?"
        rows.append(
            {
                "chosen": f"{prompt}\n\nAssistant: a kind helpful answer number {i}",
                "rejected": f"{prompt}\n\nAssistant: a rude harmful and much longer reply {i} " + "blah " * (i % 3),
            }
        )
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    return path


@pytest.mark.django_db
def test_benchmark_writes_its_keys_and_the_default_row_is_the_app_default(tmp_path: Path) -> None:
    data = _hh_file(tmp_path / "hh.jsonl.gz", 60)
    out = tmp_path / "real_data.json"
    embedder = WordHashEmbedder()
    default_model = Study._meta.get_field("model_type").default
    args = ["--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--seeds", "2"]
    args += ["--models", default_model, "--features", context.DEFAULT_FEATURES, "--compare-layers"]

    real_data.main(args, embedder=embedder)

    result = json.loads(out.read_text())
    assert {"default", "rows", "baselines", "machine"} <= result.keys()
    default = result["default"]
    assert default["model"] == Study._meta.get_field("model_type").default
    assert default["features"] == Study._meta.get_field("features").default == context.DEFAULT_FEATURES
    assert default["model_params"] == {}
    assert default.keys() >= ROW_KEYS
    rows = {(row["model"], row["features"]): row for row in result["rows"]}
    assert set(rows) == {(default_model, context.DEFAULT_FEATURES)}
    for row in rows.values():
        assert row.keys() >= ROW_KEYS
        assert 0.0 <= row["heldout_accuracy_mean"] <= 1.0
    same = rows[(default["model"], default["features"])]
    assert {k: same[k] for k in ROW_KEYS} == {k: default[k] for k in ROW_KEYS}
    assert result["baselines"]["constant"]["heldout_accuracy_mean"] == 0.5
    # The rejected replies are the longer ones here, so "shorter wins" is always right.
    assert result["baselines"]["shorter_reply_wins"]["heldout_accuracy_mean"] > 0.5
    assert result["data"]["pairs"] == 60 and result["data"]["prompts"] == 30
    assert len(embedder.texts) == 120


def test_a_whole_conversation_too_long_for_the_encoder_is_cut_and_counted(tmp_path: Path) -> None:
    """The benchmark embeds what the app embeds (``context.embedded_text``): a
    conversation longer than the encoder keeps its last question and the reply."""
    pairs, refused = real_data.load_pairs(_hh_file(tmp_path / "hh.jsonl.gz", 4))
    texts, stats = real_data.feature_texts(pairs, context.CONVERSATION, context.WhitespaceTokens(64))
    assert refused == 0 and stats["texts"] == 8 and stats["truncated"] == 8
    assert stats["context_tokens_dropped"] > 0 and stats["response_tokens_dropped"] == 0
    assert texts[0].startswith("story")
    assert texts[0].endswith("question 0?\n\nAssistant: a kind helpful answer number 0")
    assert all(len(text.split()) <= 64 for text in texts)


def test_prompts_never_straddle_the_split() -> None:
    groups = np.repeat(np.arange(50), 3)
    for seed in range(3):
        test = real_data.split_by_prompt(groups, seed)
        assert test.sum() == 30  # 10 of 50 prompts, 3 pairs each
        for group in range(50):
            assert len(set(test[groups == group])) == 1
