"""A client for servers that speak OpenAI's chat-completions protocol.

vLLM, llama.cpp's server, Ollama, TGI and the hosted APIs all answer
``POST {base_url}/chat/completions``; this client sends one request per
:class:`~models_runtime.generation.GenerationRequest` (``n`` = 1, the seed passed
on) with at most ``concurrency`` in flight, and reads the reply's first choice
and its ``usage``.

What goes wrong is retried only where trying again can help: HTTP 429 and 5xx,
a timeout, a refused or dropped connection, each after a backoff that doubles
from ``backoff_s`` up to ``max_backoff_s`` (a server's ``Retry-After`` is
honoured within that cap), at most ``max_retries`` times. Any other HTTP error
(a bad key, an unknown model) and a reply that is not a chat completion fail
the row at once, with the server's own message. The API key is read from the
environment variable the configuration names, when a request is sent: never
stored, logged or put in the cache key.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from models_runtime.generation import Generation, GenerationFailure, GenerationRequest, Result

__all__ = ["ChatCompletionsGenerator", "EndpointConfig"]

RETRIED_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_EXCERPT = 300  # characters of a server's error body kept in a failure's message


@dataclass(frozen=True)
class EndpointConfig:
    """One chat-completions endpoint: ``base_url`` up to the version (``…/v1``)."""

    base_url: str
    model: str
    api_key_env: str = ""  # the environment variable holding the key; "" sends none
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    concurrency: int = 4

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, not {self.base_url!r}")
        if not self.model:
            raise ValueError("an endpoint needs a model name")
        if self.timeout_s <= 0 or self.concurrency < 1 or self.max_retries < 0 or self.backoff_s < 0:
            raise ValueError("timeout_s and concurrency must be positive, max_retries and backoff_s not negative")


class _Retryable(Exception):
    def __init__(self, failure: GenerationFailure, retry_after: float | None = None) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.retry_after = retry_after


class ChatCompletionsGenerator:
    """Generates through a chat-completions endpoint (see the module docstring).
    ``sleep`` is the wait between attempts (a test passes one that records)."""

    def __init__(
        self,
        config: EndpointConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._url = config.base_url.rstrip("/") + "/chat/completions"

    @property
    def key(self) -> str:
        return f"chat-completions:{self.config.base_url.rstrip('/')}#{self.config.model}"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Result]:
        if not requests:
            return []
        workers = min(self.config.concurrency, len(requests))
        if workers == 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="generate") as pool:
            return list(pool.map(self._one, requests))

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON sent for ``request``."""
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "n": 1,
        }
        if s.stop:
            body["stop"] = list(s.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    def _one(self, request: GenerationRequest) -> Result:
        payload = json.dumps(self.body(request)).encode("utf-8")
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._send(payload)
            except _Retryable as exc:
                failure = exc.failure
                if attempts > self.config.max_retries:
                    return GenerationFailure(failure.kind, failure.message, failure.status, attempts)
                self._sleep(self._backoff(attempts, exc.retry_after))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cap = self.config.max_backoff_s
        if retry_after is not None:
            return min(max(retry_after, 0.0), cap)
        base = min(self.config.backoff_s * 2 ** (attempt - 1), cap)
        with self._rng_lock:
            return base * (0.5 + 0.5 * self._rng.random())  # jitter: retries from many threads spread out

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env, "")
            if key:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def _send(self, payload: bytes) -> Result:
        http = urllib.request.Request(self._url, data=payload, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(http, timeout=self.config.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            failure = GenerationFailure("http", f"HTTP {exc.code} from {self._url}: {detail}", exc.code)
            if exc.code in RETRIED_STATUSES or exc.code >= 500:
                raise _Retryable(failure, _retry_after(exc.headers.get("Retry-After"))) from exc
            return failure
        except TimeoutError as exc:
            raise _Retryable(
                GenerationFailure("timeout", f"no reply from {self._url} within {self.config.timeout_s:g} s")
            ) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                failure = GenerationFailure("timeout", f"no reply from {self._url} within {self.config.timeout_s:g} s")
            else:
                failure = GenerationFailure("connection", f"could not reach {self._url}: {exc.reason}")
            raise _Retryable(failure) from exc
        except (ConnectionError, OSError) as exc:
            raise _Retryable(GenerationFailure("connection", f"connection to {self._url} failed: {exc}")) from exc
        return self._parse(raw)

    def _parse(self, raw: bytes) -> Result:
        def malformed(why: str) -> GenerationFailure:
            excerpt = raw[:_EXCERPT].decode("utf-8", "replace")
            return GenerationFailure(
                "malformed", f"the reply from {self._url} is not a chat completion ({why}): {excerpt}"
            )

        try:
            reply = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return malformed("not JSON")
        if not isinstance(reply, dict):
            return malformed("not a JSON object")
        choices = reply.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return malformed("no choices")
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            return malformed("the first choice has no message text")
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        return Generation(
            text=content,
            finish_reason=str(choices[0].get("finish_reason") or "unknown"),
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            source=self.key,
        )


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by these servers)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The server's error message (OpenAI's ``{"error": {"message": …}}`` or the body's start)."""
    try:
        body = exc.read()
    except OSError:
        return exc.reason or "no body"
    try:
        error = json.loads(body).get("error")
        text = error.get("message") if isinstance(error, dict) else error
        if isinstance(text, str) and text:
            return text[:_EXCERPT]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        pass
    return body[:_EXCERPT].decode("utf-8", "replace") or str(exc.reason)
