"""Generating responses from language models: one interface, two back ends, a cache.

A :class:`Generator` turns chat requests (a message list, sampling parameters, a
seed) into one result each: a :class:`Generation` (text, finish reason, tokens
used) or a :class:`GenerationFailure` naming what went wrong. A batch never fails
as a whole: a row that could not be generated says why and the others stand,
so a study importing 500 generated responses loses none of the 499 that worked.

Back ends:

- :class:`~models_runtime.generation.openai_compat.ChatCompletionsGenerator`:
  any server that speaks the OpenAI chat-completions protocol (vLLM,
  llama.cpp's server, Ollama, TGI, hosted APIs), with timeouts, retries with
  backoff on 429 and 5xx, a concurrency limit and token usage recorded;
- :class:`~models_runtime.generation.local_hf.LocalGenerator`: a local Hugging
  Face causal-LM directory through transformers' ``generate`` (batched, CUDA
  when present), loaded with ``local_files_only``: nothing downloads.

:class:`CachedGenerator` wraps either: a request whose key (the source, the
model, the sampling parameters, the messages, the seed) was generated before is
answered from the cache (:class:`GenerationCache`, SQLite on disk), so a retry
or a re-run never pays twice; failures are not cached.

Nothing here imports Django or reads settings: configuration comes in as
dataclasses, and torch and transformers load only when a local model is used.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "CachedGenerator",
    "Generation",
    "GenerationCache",
    "GenerationFailure",
    "GenerationRequest",
    "Generator",
    "Message",
    "Result",
    "Sampling",
]

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown chat role {self.role!r} (known: {', '.join(ROLES)})")
        if not isinstance(self.content, str):
            raise TypeError(f"a message's content must be text, not {type(self.content).__name__}")


@dataclass(frozen=True)
class Sampling:
    """How to sample. ``temperature`` 0 is greedy decoding (the seed then does not matter)."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 5.0:
            raise ValueError(f"temperature must be in [0, 5], not {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if not 1 <= self.max_tokens <= 1_000_000:
            raise ValueError(f"max_tokens must be a positive count, not {self.max_tokens}")


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: the conversation so far, and how to sample its next turn."""

    messages: tuple[Message, ...]
    sampling: Sampling = field(default_factory=Sampling)
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("a generation request needs at least one message")

    @classmethod
    def from_prompt(cls, prompt: str, *, system: str = "", **kwargs: object) -> GenerationRequest:
        """A single-turn request: ``prompt`` as the user's message, after ``system`` when given."""
        turns = ([Message("system", system)] if system else []) + [Message("user", prompt)]
        return cls(messages=tuple(turns), **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Generation:
    """A generated turn, with what it cost."""

    text: str
    finish_reason: str  # "stop", "length", … as the back end reports it
    prompt_tokens: int
    completion_tokens: int
    source: str  # the generator's key: which back end and model
    cached: bool = False


@dataclass(frozen=True)
class GenerationFailure:
    """A request that produced nothing: ``kind`` is one of ``http`` (the server said
    no, ``status`` set), ``timeout``, ``connection``, ``malformed`` (a reply that is
    not a chat completion) or ``model`` (a local model failed)."""

    kind: str
    message: str
    status: int | None = None
    attempts: int = 1


Result = Generation | GenerationFailure


@runtime_checkable
class Generator(Protocol):
    """Anything that answers chat requests, one result per request, in order."""

    @property
    def key(self) -> str:
        """Identifies the back end and model (never a secret): part of the cache key."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Result]: ...


def request_key(source: str, request: GenerationRequest) -> str:
    """The cache key of ``request`` sent to ``source``: a SHA-256 of both, canonical JSON."""
    payload = {"source": source, **asdict(request)}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class GenerationCache:
    """Generations by :func:`request_key`, in a SQLite file (``":memory:"`` for one
    process). Safe to share between threads; several processes may share the file
    (SQLite serialises the writes)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS generation (key TEXT PRIMARY KEY, source TEXT NOT NULL, "
                "text TEXT NOT NULL, finish_reason TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, "
                "completion_tokens INTEGER NOT NULL)"
            )

    def get(self, key: str) -> Generation | None:
        with self._lock:
            row = self._db.execute(
                "SELECT source, text, finish_reason, prompt_tokens, completion_tokens FROM generation WHERE key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        source, text, finish_reason, prompt_tokens, completion_tokens = row
        return Generation(text, finish_reason, prompt_tokens, completion_tokens, source, cached=True)

    def put(self, key: str, generation: Generation) -> None:
        g = generation
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO generation VALUES (?, ?, ?, ?, ?, ?)",
                (key, g.source, g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM generation").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedGenerator:
    """``generator`` behind ``cache``: hits come back marked ``cached`` (and cost
    nothing), misses go to the generator in one batch, and what it generates is
    kept. Failures are not kept, so a later run tries them again."""

    def __init__(self, generator: Generator, cache: GenerationCache) -> None:
        self.generator = generator
        self.cache = cache

    @property
    def key(self) -> str:
        return self.generator.key

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Result]:
        source = self.generator.key
        keys = [request_key(source, r) for r in requests]
        results: list[Result | None] = [self.cache.get(k) for k in keys]
        missing = [i for i, found in enumerate(results) if found is None]
        # The same request twice in one batch is generated once.
        first: dict[str, int] = {}
        for i in missing:
            first.setdefault(keys[i], i)
        asked = list(first.values())
        fresh = self.generator.generate([requests[i] for i in asked]) if asked else []
        by_key: dict[str, Result] = {}
        for i, result in zip(asked, fresh, strict=True):
            by_key[keys[i]] = result
            if isinstance(result, Generation):
                self.cache.put(keys[i], result)
        sent = set(asked)
        for i in missing:
            result = by_key[keys[i]]
            # A repeat of a request in this batch cost nothing: it reads as cached.
            if i not in sent and isinstance(result, Generation):
                result = replace(result, cached=True)
            results[i] = result
        return [r for r in results if r is not None]
