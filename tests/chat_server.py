"""A tiny causal language model built on the spot, and a real OpenAI-compatible
chat-completions server on 127.0.0.1 that answers with it, for the generation
tests (issue 17: no mocks of the protocol, no downloads).

``tiny_model_dir(path)`` writes a randomly initialised GPT-2 of two small layers
and a byte-level BPE tokenizer trained on a few sentences: a real Hugging Face
directory that transformers loads with ``local_files_only``. ``ChatServer``
serves ``POST /v1/chat/completions`` through
:class:`models_runtime.generation.local_hf.LocalGenerator`, records every request
it receives, and can be told to misbehave for the next requests: an HTTP status
(with ``Retry-After``), a reply that is not a chat completion, or a stall longer
than the client's timeout.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A helpful assistant answers the question clearly and politely.",
    "user: how do I bake bread? assistant: mix flour, water, salt and yeast.",
    "Preferences between two responses teach a reward model what people like.",
] * 4


def tiny_model_dir(path: Path, *, chat_template: str | None = None, seed: int = 0) -> Path:
    """Write a random two-layer GPT-2 and its tokenizer to ``path``; return it."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


@dataclass
class Fault:
    """What the server does instead of answering: ``status`` (with ``retry_after``),
    ``malformed`` (200 with a body that is not a chat completion), or ``stall_s``."""

    status: int | None = None
    retry_after: float | None = None
    malformed: bool = False
    stall_s: float = 0.0


@dataclass
class ChatServer:
    """A chat-completions server on 127.0.0.1 (start with ``with``)."""

    generator: Any  # a models_runtime Generator
    model: str = "tiny"
    api_key: str | None = None  # when set, requests must carry it as a bearer token
    received: list[dict] = field(default_factory=list)
    faults: deque = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet test output
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.received.append({"body": body, "authorization": self.headers.get("Authorization")})
                    fault = server.faults.popleft() if server.faults else None
                if self.path != "/v1/chat/completions":
                    self._reply(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode())
                    return
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._reply(401, json.dumps({"error": {"message": "Incorrect API key provided"}}).encode())
                    return
                if fault is not None:
                    if fault.stall_s and server._stop.wait(fault.stall_s):
                        return  # shut down while stalling: the client gave up long ago
                    if fault.status is not None:
                        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                        message = json.dumps({"error": {"message": f"injected {fault.status}"}}).encode()
                        self._reply(fault.status, message, headers)
                        return
                    if fault.malformed:
                        self._reply(200, b'{"object": "chat.completion", "choices": []}')
                        return
                if body.get("model") != server.model:
                    self._reply(
                        404, json.dumps({"error": {"message": f"model {body.get('model')!r} not found"}}).encode()
                    )
                    return
                reply = server.complete(body)
                if reply is None:
                    self._reply(500, json.dumps({"error": {"message": "the model failed"}}).encode())
                    return
                self._reply(200, json.dumps(reply).encode())

        return Handler

    def complete(self, body: dict) -> dict | None:
        from models_runtime.generation import GenerationRequest, Message, Sampling

        request = GenerationRequest(
            messages=tuple(Message(m["role"], m["content"]) for m in body["messages"]),
            sampling=Sampling(
                temperature=float(body.get("temperature", 1.0)),
                top_p=float(body.get("top_p", 1.0)),
                max_tokens=int(body.get("max_tokens", 16)),
                stop=tuple(body.get("stop") or ()),
            ),
            seed=body.get("seed"),
        )
        (result,) = self.generator.generate([request])
        if not hasattr(result, "text"):
            return None  # the model failed: a 500, as a real server answers
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            },
        }
