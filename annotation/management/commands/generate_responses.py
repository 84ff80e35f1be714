"""``manage.py generate_responses STUDY``: generate candidate responses for a study's prompts.

From an OpenAI-compatible endpoint (``--endpoint URL --model NAME``, the key in
the environment variable ``--api-key-env`` names) or a local Hugging Face model
directory (``--local PATH``), ``--n`` responses per prompt, stored as
candidates whose source is ``--source`` (default: the model's name). Runs in
this process with a progress line; generations are cached, so running it
again after an interruption or a failure pays only for what is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Study
from annotation.services.generation import GenerationOutcome, study_generate
from models_runtime.generation import Generator, Sampling
from models_runtime.generation.local_hf import LocalGenerator, LocalModelConfig
from models_runtime.generation.openai_compat import ChatCompletionsGenerator, EndpointConfig

# Failed rows printed at the end (all are counted).
ERRORS_SHOWN = 10


class Command(BaseCommand):
    help = (
        "Generate N candidate responses per prompt of a study from an OpenAI-compatible chat-completions "
        "endpoint (vLLM, llama.cpp, Ollama, TGI, hosted APIs) or a local Hugging Face model directory. "
        "Responses a prompt already has are skipped; rows that fail are reported and the rest are kept; "
        "generations are cached, so a re-run pays only for what is missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("study", metavar="SLUG", help="The study whose prompts get responses.")
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--endpoint", metavar="URL", help="Base URL of a chat-completions API, up to /v1.")
        where.add_argument("--local", metavar="PATH", type=Path, help="A local Hugging Face causal-LM directory.")
        parser.add_argument("--model", help="The endpoint's model name (required with --endpoint).")
        parser.add_argument(
            "--api-key-env", metavar="VAR", default="", help="Environment variable holding the endpoint's API key."
        )
        parser.add_argument("--n", type=int, default=2, help="Responses per prompt (default 2).")
        parser.add_argument("--source", help="Source name stored on each candidate (default: the model's name).")
        parser.add_argument("--system", default="", help="A system message sent before each prompt.")
        parser.add_argument("--temperature", type=float, default=0.7)
        parser.add_argument("--top-p", type=float, default=1.0)
        parser.add_argument("--max-tokens", type=int, default=512)
        parser.add_argument("--seed", type=int, default=0, help="Seed of the first response; the k-th gets seed + k.")
        parser.add_argument("--concurrency", type=int, default=4, help="Endpoint requests in flight (default 4).")
        parser.add_argument("--timeout", type=float, default=60.0, help="Seconds to wait for one reply (default 60).")
        parser.add_argument(
            "--retries", type=int, default=4, help="Tries again after a 429, a 5xx or a timeout (default 4)."
        )
        parser.add_argument("--device", default="auto", help="For --local: auto, cpu, cuda or cuda:N.")
        parser.add_argument("--batch-size", type=int, default=8, help="For --local: requests per batch (default 8).")

    def handle(self, *args: Any, **options: Any) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study with the slug {options['study']!r}.")
        try:
            generator, name = self._generator(options)
            sampling = Sampling(
                temperature=options["temperature"], top_p=options["top_p"], max_tokens=options["max_tokens"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["n"] < 1:
            raise CommandError("--n must be at least 1.")
        source = options["source"] or name
        self.stderr.write(f"Generating {options['n']} response(s) per prompt of {study.slug} with {generator.key}")
        try:
            outcome = study_generate(
                study=study,
                generator=generator,
                source=source,
                per_prompt=options["n"],
                sampling=sampling,
                system=options["system"],
                seed=options["seed"],
                on_progress=self._progress,
            )
        finally:
            if sys.stderr.isatty():
                self.stderr.write("")
        self._report(outcome, source)
        if outcome.failed and not outcome.candidates_created and not outcome.duplicates_skipped:
            raise CommandError("Nothing was generated; see the errors above.")

    def _generator(self, options: dict[str, Any]) -> tuple[Generator, str]:
        if options["endpoint"]:
            if not options["model"]:
                raise ValueError("--endpoint needs --model (the name the server knows the model by).")
            config = EndpointConfig(
                base_url=options["endpoint"],
                model=options["model"],
                api_key_env=options["api_key_env"],
                timeout_s=options["timeout"],
                max_retries=options["retries"],
                concurrency=options["concurrency"],
            )
            return ChatCompletionsGenerator(config), options["model"]
        path: Path = options["local"]
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} is not a Hugging Face model directory (no config.json).")
        config = LocalModelConfig(str(path), device=options["device"], batch_size=options["batch_size"])
        return LocalGenerator(config), path.resolve().name

    def _progress(self, done: int, total: int) -> None:
        if sys.stderr.isatty():
            self.stderr.write(f"\r  {done}/{total} prompts", ending="")

    def _report(self, outcome: GenerationOutcome, source: str) -> None:
        o = outcome
        self.stdout.write(
            f"{o.prompts} prompts, {o.requested} responses asked: {o.candidates_created} candidates added "
            f"(source {source!r}), {o.duplicates_skipped} already there, {o.from_cache} from the cache, "
            f"{o.failed} failed; tokens: {o.prompt_tokens} prompt + {o.completion_tokens} completion."
        )
        for error in o.errors[:ERRORS_SHOWN]:
            self.stdout.write(f"  prompt {error.prompt_id}, seed {error.seed}: {error.kind}: {error.message}")
        if o.failed > ERRORS_SHOWN:
            self.stdout.write(f"  … and {o.failed - ERRORS_SHOWN} more.")
