"""The hh pool: replies in their prompt context, near-duplicates merged into one item,
pairs mapped onto the kept items, and a reward-model utility fitted on those pairs;
all on small files with a small fake encoder, and the reader on the real file when it
is there."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from benchmarks import pools, real_data
from models_runtime import context
from tests.shared_data import REAL_HH


class WordHashEmbedder:
    """Bag of hashed words, unit norm, counting its calls: cheap and deterministic."""

    model_key = "word-hash-64"
    dim = 64

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _hh_file(path: Path, n: int) -> Path:
    """``n`` rows; every third rejected reply repeats the chosen one with one word
    changed (a near-duplicate under the word-hash encoder's cosine)."""
    rows = []
    for i in range(n):
        prompt = f"\n\nHuman: tell me about topic {i}\n\nAssistant: sure\n\nHuman: and what about case {i}?"
        chosen = f"a careful helpful answer about case {i} " + " ".join(f"w{i}x{j}" for j in range(60))
        rejected = chosen + " indeed" if i % 3 == 0 else f"no, go away {i} " + "rude " * (i % 4)
        rows.append({"chosen": f"{prompt}\n\nAssistant: {chosen}", "rejected": f"{prompt}\n\nAssistant: {rejected}"})
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def test_near_duplicates_map_to_the_first_kept_row_and_chains_do_not_drift() -> None:
    """Rows 1 and 3 are within the threshold of row 0; row 4 is close to row 3 but
    not to row 0, so it stays (merging by connected components would drop it)."""

    def unit(angle_degrees: float) -> list[float]:
        a = np.radians(angle_degrees)
        return [np.cos(a), np.sin(a), 0.0]

    features = np.array(
        [unit(0), unit(5), [0.0, 0.0, 1.0], unit(9), unit(18), [0.0, 0.0, 2.0]], dtype=np.float32
    )  # cos(5°) = 0.996, cos(9°) = 0.988, cos(18°) = 0.951, cos(9°) between rows 3 and 4
    np.testing.assert_array_equal(pools.near_duplicate_representatives(features, 0.98), [0, 0, 2, 0, 4, 2])


def test_a_near_duplicate_goes_to_the_most_similar_kept_row() -> None:
    features = np.array([[1.0, 0.0], [0.9, 0.436], [0.96, 0.28]], dtype=np.float32)
    # Row 2 is above the threshold with both kept rows (cos 0.96 and 0.986): the closer wins.
    assert pools.near_duplicate_representatives(features, 0.95).tolist() == [0, 1, 1]


def test_hh_texts_put_each_reply_after_its_last_human_turn_and_drop_repeats() -> None:
    prompt = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: what is 2 + 2?"
    pairs = [
        real_data.Pair(prompt, "4", "5"),
        real_data.Pair(prompt, "4", "22"),  # the same chosen reply to the same prompt
    ]
    texts, rows = pools.hh_texts(pairs, context.WhitespaceTokens(256))
    assert texts == [
        "Human: what is 2 + 2?\n\nAssistant: 4",
        "Human: what is 2 + 2?\n\nAssistant: 5",
        "Human: what is 2 + 2?\n\nAssistant: 22",
    ]
    assert rows.tolist() == [[0, 1], [0, 2]]


def test_the_hh_pool_merges_near_duplicates_and_maps_pairs_onto_kept_items(tmp_path: Path) -> None:
    data = _hh_file(tmp_path / "hh.jsonl.gz", 30)
    embedder = WordHashEmbedder()
    pool = pools.hh_pool(data, tmp_path / "cache", embedder)
    assert pool.facts == {"pairs": 30, "replies": 60, "distinct_texts": 60, "kept_items": 50}
    assert pool.features.shape == (50, 64) and pool.features.dtype == np.float32
    assert len(pool.texts) == 50 and pool.pairs.shape == (30, 2) and len(pool.groups) == 30
    # The ten "chosen + one word" rejections became their chosen reply.
    merged = pool.pairs[:, 0] == pool.pairs[:, 1]
    assert np.flatnonzero(merged).tolist() == list(range(0, 30, 3))
    assert pools.near_duplicate_representatives(pool.features).tolist() == list(range(50))
    # The second call reads the cached embeddings.
    again = pools.hh_pool(data, tmp_path / "cache", embedder)
    assert embedder.calls == 1
    np.testing.assert_array_equal(again.features, pool.features)


def test_the_reward_utility_scores_every_item_and_says_how_well_it_predicts(tmp_path: Path) -> None:
    data = _hh_file(tmp_path / "hh.jsonl.gz", 60)
    embedder = WordHashEmbedder()
    utility, facts = pools.hh_reward_utility(data, tmp_path / "cache", embedder)
    pool = pools.hh_pool(data, tmp_path / "cache", embedder)
    assert utility.shape == (facts["kept_items"],) == (pool.features.shape[0],)
    assert facts["pairs_used"] == 40 and facts["pairs_merged_into_one_item"] == 20
    assert facts["cv_folds"] == 5 and len(facts["cv_accuracy_per_fold"]) == 5
    # "Helpful" and "rude" replies share words across prompts, so the fit generalises.
    assert facts["cv_accuracy_mean"] > 0.8
    used = pool.pairs[pool.pairs[:, 0] != pool.pairs[:, 1]]
    assert np.mean(utility[used[:, 0]] > utility[used[:, 1]]) == facts["train_accuracy"]
    cached, cached_facts = pools.hh_reward_utility(data, tmp_path / "cache", embedder)
    np.testing.assert_array_equal(cached, utility)
    assert cached_facts == facts


def test_an_unknown_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="pool"):
        pools.pool_features("wiki")


@pytest.mark.skipif(not REAL_HH.exists(), reason=f"the public HH-RLHF test split is not at {REAL_HH}")
def test_the_real_file_gives_a_text_per_reply_each_after_a_human_turn() -> None:
    pairs, refused = real_data.load_pairs(REAL_HH)
    texts, rows = pools.hh_texts(pairs, context.WhitespaceTokens(256))
    assert (len(pairs), refused) == (2312, 0)
    assert rows.shape == (2312, 2) and rows.max() == len(texts) - 1
    assert all(t.startswith("Human: ") and "\n\nAssistant: " in t for t in texts)
