"""Generating with a local Hugging Face causal language model.

The model directory is read with ``local_files_only``: nothing downloads, and a
directory that is not a causal LM fails every row with a message naming it.
Requests are grouped by sampling parameters and seed and generated in batches
of ``batch_size`` (left-padded), on the first CUDA device when there is one.

The prompt is the tokenizer's chat template applied to the messages when the
model has one; otherwise the turns are written as ``role: text`` lines and the
model continues after ``assistant:``.

Seeds: a batch is generated after ``torch.manual_seed(seed)``, and every
request in it shares that seed, so the same requests in the same batch give
the same text again; a request's text can differ when it is batched with
others (sampling draws for the whole batch at once). The cache
(:class:`~models_runtime.generation.CachedGenerator`) is what makes a re-run
return exactly what was generated before.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models_runtime.device import pick_device
from models_runtime.generation import Generation, GenerationFailure, GenerationRequest, Result, Sampling

__all__ = ["LocalGenerator", "LocalModelConfig"]

DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class LocalModelConfig:
    """A local model directory and how to run it. ``dtype`` "auto" keeps the
    checkpoint's own type on CUDA and uses float32 on the CPU."""

    model_path: str
    device: str = "auto"
    batch_size: int = 8
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")


class LocalGenerator:
    """Generates with a local causal LM (see the module docstring). The model
    loads on first use and is kept; one batch runs at a time per instance."""

    def __init__(self, config: LocalModelConfig) -> None:
        self.config = config
        self._path = Path(config.model_path).expanduser()
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: Any = None
        self._key: str | None = None

    @property
    def key(self) -> str:
        """The directory's name and a hash of its ``config.json`` and ``generation_config.json``."""
        if self._key is None:
            digest = hashlib.sha256()
            for name in ("config.json", "generation_config.json"):
                try:
                    digest.update((self._path / name).read_bytes())
                except OSError:
                    digest.update(b"-")
            self._key = f"local:{self._path.resolve().name}-{digest.hexdigest()[:12]}"
        return self._key

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Result]:
        results: list[Result | None] = [None] * len(requests)
        try:
            self._load()
        except Exception as exc:
            failure = GenerationFailure("model", f"could not load a causal language model from {self._path}: {exc}")
            return [failure] * len(requests)
        groups: dict[tuple[Sampling, int | None], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((request.sampling, request.seed), []).append(i)
        size = self.config.batch_size
        for (sampling, seed), members in groups.items():
            for start in range(0, len(members), size):
                chunk = members[start : start + size]
                for i, result in zip(chunk, self._batch([requests[i] for i in chunk], sampling, seed), strict=True):
                    results[i] = result
        return [r for r in results if r is not None]

    def _load(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            if not (self._path / "config.json").is_file():
                raise FileNotFoundError(f"{self._path} has no config.json (is it a Hugging Face model directory?)")
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            device = pick_device(self.config.device)
            tokenizer = AutoTokenizer.from_pretrained(str(self._path), local_files_only=True)
            tokenizer.padding_side = "left"  # generation continues from the right edge of every row
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            if self.config.dtype != "auto":
                dtype = getattr(torch, self.config.dtype)
            else:
                dtype = "auto" if device.type == "cuda" else torch.float32
            model = AutoModelForCausalLM.from_pretrained(str(self._path), local_files_only=True, dtype=dtype)
            model.eval()
            model.to(device)
            self._tokenizer, self._device = tokenizer, device
            self._model = model  # published last: a non-None model means fully loaded

    def prompt_text(self, request: GenerationRequest) -> str:
        """The text the model continues for ``request``."""
        tokenizer = self._tokenizer
        turns = [{"role": m.role, "content": m.content} for m in request.messages]
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"

    def _batch(self, requests: list[GenerationRequest], sampling: Sampling, seed: int | None) -> list[Result]:
        try:
            return self._run(requests, sampling, seed)
        except Exception as exc:
            if len(requests) > 1:
                return [r for request in requests for r in self._batch([request], sampling, seed)]
            return [GenerationFailure("model", f"generation failed: {type(exc).__name__}: {exc}")]

    def _run(self, requests: list[GenerationRequest], sampling: Sampling, seed: int | None) -> list[Result]:
        import torch

        tokenizer, model = self._tokenizer, self._model
        texts = [self.prompt_text(r) for r in requests]
        # The chat template writes the special tokens itself.
        special = not getattr(tokenizer, "chat_template", None)
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=special)
        encoded = {k: v.to(self._device) for k, v in encoded.items()}
        width = encoded["input_ids"].shape[1]
        # A model reads at most its positions: the reply is cut short there (finish "length"), as
        # servers cap max_tokens to the context left, rather than failing inside generate.
        positions = _positions(model.config)
        if positions is not None and width >= positions:
            message = f"the prompt takes {width} tokens and the model reads at most {positions}"
            return [GenerationFailure("model", message) for _ in requests]
        room = sampling.max_tokens if positions is None else min(sampling.max_tokens, positions - width)
        options: dict[str, Any] = {
            "max_new_tokens": room,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        if sampling.temperature > 0:
            options.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            options.update(do_sample=False, temperature=None, top_p=None)
        if sampling.stop:
            options["stopping_criteria"] = [_stop_criterion(tokenizer, width=width, stops=sampling.stop)]
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            output = model.generate(**encoded, **options)
        prompt_tokens = encoded["attention_mask"].sum(dim=1).tolist()
        results: list[Result] = []
        for row, used in zip(output[:, width:].tolist(), prompt_tokens, strict=True):
            results.append(self._decoded(row, int(used), sampling, room))
        return results

    def _decoded(self, tokens: list[int], prompt_tokens: int, sampling: Sampling, room: int) -> Generation:
        tokenizer = self._tokenizer
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        saw_eos = False
        kept: list[int] = []
        for token in tokens:
            if token == eos:
                saw_eos = True
                break
            kept.append(token)
        while kept and pad is not None and pad != eos and kept[-1] == pad:
            kept.pop()
        text = tokenizer.decode(kept, skip_special_tokens=True)
        ended = saw_eos
        for stop in sampling.stop:
            at = text.find(stop)
            if at != -1:
                text, ended = text[:at], True
        finish = "stop" if ended else ("length" if len(kept) >= room else "stop")
        return Generation(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(kept) + int(saw_eos),
            source=self.key,
        )


def _positions(config: Any) -> int | None:
    """The most tokens the model reads (prompt and reply), when its config says."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _stop_criterion(tokenizer: Any, *, width: int, stops: tuple[str, ...]) -> Any:
    """Stops a row once its generated text (not the prompt: transformers' own
    ``stop_strings`` also match across the prompt's end) holds a stop string."""
    import torch
    from transformers import StoppingCriteria

    class StopStrings(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            rows = input_ids[:, width:].tolist()
            done = [any(stop in tokenizer.decode(row, skip_special_tokens=True) for stop in stops) for row in rows]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StopStrings()
