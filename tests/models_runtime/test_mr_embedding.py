"""Tests for models_runtime.embedding and models_runtime.hashing (no Django)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from models_runtime.embedding import (
    CachedEmbedder,
    DirectoryEmbeddingCache,
    EmbedderConfig,
    EmbedderError,
    MemoryEmbeddingCache,
    TransformerEmbedder,
    default_model_path,
    pooled_layers,
)
from models_runtime.hashing import text_hash


@pytest.fixture(scope="module")
def minilm() -> TransformerEmbedder:
    emb = TransformerEmbedder(EmbedderConfig(device="cpu", batch_size=4))
    emb.embed(["warm up"])  # load once for the whole module
    return emb


def test_minilm_shape_and_norm(minilm: TransformerEmbedder) -> None:
    vecs = minilm.embed(["The cat sat on the mat.", "Stock markets fell sharply today."])
    assert minilm.dim == 6 * 384  # all six layers pooled by default
    assert vecs.shape == (2, 6 * 384)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_minilm_semantic_similarity(minilm: TransformerEmbedder) -> None:
    a, b, c = minilm.embed(
        [
            "A man is playing a guitar on stage.",
            "Someone performs music with a guitar.",
            "The quarterly tax report is due on Friday.",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.2


def test_minilm_empty_input(minilm: TransformerEmbedder) -> None:
    out = minilm.embed([])
    assert out.shape == (0, 6 * 384)
    assert out.dtype == np.float32


def test_minilm_batch_equals_single(minilm: TransformerEmbedder) -> None:
    texts = [
        "short",
        "a somewhat longer sentence about preference annotation",
        "",
        "ünïcödé text with accents",
        "a b c d e f g h i j k l m n o p",
        "another one",
    ]
    batched = minilm.embed(texts)
    single = np.vstack([minilm.embed([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_model_key_is_stable(minilm: TransformerEmbedder) -> None:
    other = TransformerEmbedder(EmbedderConfig(model_path=default_model_path(), device="cpu"))
    assert other.model_key == minilm.model_key
    assert minilm.model_key.endswith("-max256-L1.2.3.4.5.6")
    shorter = TransformerEmbedder(EmbedderConfig(max_length=128, device="cpu"))
    assert shorter.model_key != minilm.model_key


def test_bad_model_path_raises(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(EmbedderError, match="no-such-model"):
        TransformerEmbedder(EmbedderConfig(model_path=str(missing))).embed(["x"])
    not_a_model = tmp_path / "empty-dir"
    not_a_model.mkdir()
    emb = TransformerEmbedder(EmbedderConfig(model_path=str(not_a_model)))
    with pytest.raises(EmbedderError, match="empty-dir"):
        emb.embed(["x"])
    with pytest.raises(EmbedderError):
        _ = emb.model_key
    assert issubclass(EmbedderError, ValueError)


def test_embed_rejects_bare_string(minilm: TransformerEmbedder) -> None:
    with pytest.raises(TypeError):
        minilm.embed("not a list")


class CountingEmbedder:
    """Deterministic fake embedder that records every text it is asked to embed."""

    def __init__(self, dim: int = 8) -> None:
        self._dim = dim
        self.calls: list[list[str]] = []

    @property
    def model_key(self) -> str:
        return "fake-model"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int(text_hash(t)[:8], 16)
            v = np.random.default_rng(seed).standard_normal(self._dim)
            out[i] = v / np.linalg.norm(v)
        return out

    @property
    def embedded_count(self) -> int:
        return sum(len(c) for c in self.calls)


def test_cached_embedder_second_call_embeds_nothing() -> None:
    fake = CountingEmbedder()
    cached = CachedEmbedder(fake, MemoryEmbeddingCache())
    texts = ["alpha", "beta", "alpha", "gamma"]
    first = cached.embed(texts)
    assert fake.calls == [["alpha", "beta", "gamma"]]  # deduplicated, one batch
    second = cached.embed(list(reversed(texts)))
    assert fake.embedded_count == 3
    np.testing.assert_array_equal(second, first[::-1])
    np.testing.assert_array_equal(first, fake.embed(texts))
    assert cached.model_key == "fake-model" and cached.dim == 8
    assert cached.embed([]).shape == (0, 8)


def test_cached_embedder_only_embeds_misses() -> None:
    fake = CountingEmbedder()
    cached = CachedEmbedder(fake, MemoryEmbeddingCache())
    cached.embed(["a", "b"])
    cached.embed(["b", "c", "a", "d"])
    assert fake.calls == [["a", "b"], ["c", "d"]]


def test_cache_keys_depend_on_model_key() -> None:
    class OtherModel(CountingEmbedder):
        @property
        def model_key(self) -> str:
            return "other-model"

    cache = MemoryEmbeddingCache()
    CachedEmbedder(CountingEmbedder(), cache).embed(["same text"])
    other = OtherModel()
    CachedEmbedder(other, cache).embed(["same text"])
    assert other.embedded_count == 1
    assert len(cache) == 2


def test_directory_cache_round_trip(tmp_path: Path) -> None:
    vecs = {text_hash(f"k{i}"): np.full(4, i, dtype=np.float32) for i in range(50)}
    vecs["not a hex key/../x"] = np.arange(4, dtype=np.float32)
    DirectoryEmbeddingCache(tmp_path / "cache").set_many(vecs)
    reader = DirectoryEmbeddingCache(tmp_path / "cache")
    got = reader.get_many([*vecs, "absent"])
    assert set(got) == set(vecs)
    for key, vec in vecs.items():
        np.testing.assert_array_equal(got[key], vec)
        assert got[key].dtype == np.float32
    assert not list((tmp_path / "cache").rglob(".tmp-*"))
    # everything stays inside the root, sharded by key prefix
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == len(vecs)
    assert all(f.parent.parent == tmp_path / "cache" for f in files)


def test_directory_cache_shared_between_cached_embedders(tmp_path: Path) -> None:
    first_fake, second_fake = CountingEmbedder(), CountingEmbedder()
    texts = ["one", "two", "three"]
    a = CachedEmbedder(first_fake, DirectoryEmbeddingCache(tmp_path)).embed(texts)
    b = CachedEmbedder(second_fake, DirectoryEmbeddingCache(tmp_path)).embed(texts)
    assert first_fake.embedded_count == 3
    assert second_fake.embedded_count == 0
    np.testing.assert_array_equal(a, b)


def test_directory_cache_corrupt_entry_is_a_miss(tmp_path: Path) -> None:
    cache = DirectoryEmbeddingCache(tmp_path)
    key = text_hash("x")
    cache.set_many({key: np.ones(3, dtype=np.float32)})
    path = next(tmp_path.rglob("*.npy"))
    path.write_bytes(b"garbage")
    assert cache.get_many([key]) == {}


def test_text_hash_normalises() -> None:
    assert text_hash("  caf\u00e9\n") == text_hash("cafe\u0301")
    assert text_hash("a") != text_hash("b")
    assert len(text_hash("")) == 64


def _tiny_encoder(path: Path, *, pooling: str, positions: int = 40, hidden: int = 48, layers: int = 1) -> Path:
    """A randomly initialised BERT saved as a local Hugging Face directory, with a
    sentence-transformers pooling config: another encoder than MiniLM, in seconds."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", ".", "ran"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(str(path))
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=positions,
    )
    BertModel(config).save_pretrained(str(path))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": pooling == "cls", "pooling_mode_mean_tokens": pooling == "mean"})
    )
    return path


def test_another_local_encoder_works_with_its_own_pooling_length_and_dimension(tmp_path: Path) -> None:
    """Any local Hugging Face encoder directory (PREFLOOP_EMBEDDER_PATH): its dimension
    from its config, its length capped by its position embeddings (a longer input is
    cut, not a crash), and the pooling its sentence-transformers config names."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = _tiny_encoder(tmp_path / "tiny-cls", pooling="cls")
    emb = TransformerEmbedder(EmbedderConfig(model_path=str(path), device="cpu"))
    assert emb.dim == 48
    assert emb.max_length == 40
    assert emb.pooling == "cls" and emb.model_key.endswith("-max40-cls")
    long_text = " ".join(["the cat sat on a mat ."] * 30)  # ~210 tokens
    vecs = emb.embed(["the cat sat", long_text])
    assert vecs.shape == (2, 48)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert emb.tokens().budget == 38  # [CLS] and [SEP] take two of the 40

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()
    with torch.inference_mode():
        first = model(**tokenizer(["the cat sat"], return_tensors="pt")).last_hidden_state[:, 0]
    expected = torch.nn.functional.normalize(first, dim=1).numpy()
    np.testing.assert_allclose(vecs[:1], expected, atol=1e-5)


def test_an_encoder_without_a_pooling_config_is_mean_pooled(tmp_path: Path) -> None:
    path = _tiny_encoder(tmp_path / "tiny-mean", pooling="mean")
    (path / "1_Pooling" / "config.json").unlink()
    emb = TransformerEmbedder(EmbedderConfig(model_path=str(path), device="cpu", max_length=16))
    assert emb.pooling == "mean" and emb.max_length == 16
    assert emb.embed(["the dog ran"]).shape == (1, 48)


def test_pooled_layers_are_evenly_spaced_and_end_at_the_last() -> None:
    assert pooled_layers(6, 6) == [1, 2, 3, 4, 5, 6]
    assert pooled_layers(12, 6) == [2, 4, 6, 8, 10, 12]
    assert pooled_layers(12, 4) == [3, 6, 9, 12]
    assert pooled_layers(3, 6) == [1, 2, 3]  # never more than the encoder has
    assert pooled_layers(6, 1) == [6]
    with pytest.raises(ValueError, match="layers"):
        EmbedderConfig(layers=0)


def test_last_layer_alone_is_the_plain_sentence_embedding(minilm: TransformerEmbedder) -> None:
    """``layers=1`` is MiniLM's usual 384-d embedding (and keeps the key embeddings
    cached before layers were pooled had); the default's last block is that vector,
    scaled so the whole is unit-norm."""
    last = TransformerEmbedder(EmbedderConfig(device="cpu", layers=1))
    texts = ["I can't help with that.", "Sure, here is how you pick a lock."]
    plain, pooled = last.embed(texts), minilm.embed(texts)
    assert last.dim == 384 and plain.shape == (2, 384)
    assert last.model_key == minilm.model_key.removesuffix("-L1.2.3.4.5.6")
    np.testing.assert_allclose(pooled[:, -384:] * np.sqrt(6), plain, atol=1e-5)
    # The other blocks are other layers, not copies of the last.
    assert float(pooled[0, :384] @ pooled[0, -384:]) < 0.99 / 6


def test_layers_of_another_encoder_are_pooled_each_and_concatenated(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = _tiny_encoder(tmp_path / "tiny-4", pooling="mean", layers=4)
    emb = TransformerEmbedder(EmbedderConfig(model_path=str(path), device="cpu", layers=2))
    assert emb.layers == [2, 4] and emb.dim == 2 * 48 and emb.model_key.endswith("-max40-L2.4")
    vec = emb.embed(["the cat sat"])
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()
    with torch.inference_mode():
        states = model(**tokenizer(["the cat sat"], return_tensors="pt"), output_hidden_states=True).hidden_states
    parts = [torch.nn.functional.normalize(states[i].mean(dim=1), dim=1) for i in (2, 4)]
    expected = (torch.cat(parts, dim=1) / np.sqrt(2)).numpy()
    np.testing.assert_allclose(vec, expected, atol=1e-5)
    # One layer of a one-layer encoder, or layers=1 anywhere, is the last hidden state.
    assert TransformerEmbedder(EmbedderConfig(model_path=str(path), layers=1)).layers == [-1]


def test_an_encoder_whose_config_hides_its_depth_is_refused_clearly(tmp_path: Path) -> None:
    path = _tiny_encoder(tmp_path / "tiny-nodepth", pooling="mean", layers=2)
    config = json.loads((path / "config.json").read_text())
    del config["num_hidden_layers"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(EmbedderError, match="PREFLOOP_EMBEDDER_LAYERS=1"):
        _ = TransformerEmbedder(EmbedderConfig(model_path=str(path))).dim
