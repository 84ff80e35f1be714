"""How the runs serve the app: as docker/compose.yaml does on PostgreSQL, as
scripts/run does on SQLite, read from those files so the benchmark follows them.

- gunicorn's options are the web service's (``--bind`` replaced by the run's
  own port on 127.0.0.1), for both databases: scripts/run's ``runserver`` is a
  development server, not something to load;
- the main Celery worker's ``--concurrency`` is the worker service's
  (scripts/run starts the same command);
- on PostgreSQL, the web and worker services' environment is passed on, less
  what names the deployment itself (hosts, database, broker, storage, keys,
  device); the cache is Redis as there (the benchmark's own Redis database).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
FALLBACK_GUNICORN = ["--workers", "3", "--threads", "4", "--timeout", "60"]
FALLBACK_CONCURRENCY = 2
# What names the deployment rather than how it serves: the stack sets its own.
NOT_PASSED_ON = re.compile(
    r"^(SECRET_KEY|DEBUG|ALLOWED_HOSTS|SECURE_HSTS_SECONDS|PREFLOOP_TRUSTED_PROXIES|DATABASE_URL|CELERY_BROKER_URL"
    r"|CACHE_URL|PREFLOOP_STORAGE|PREFLOOP_CHECKPOINT_STORAGE|PREFLOOP_S3_.*|AWS_.*|MEDIA_ROOT|STATIC_ROOT"
    r"|PREFLOOP_VAR_DIR|PREFLOOP_DEVICE|PREFLOOP_EMBEDDER_PATH|PREFLOOP_HTTPS|PREFLOOP_SITE)$"
)


def _services() -> dict[str, Any]:
    try:
        import yaml  # noqa: PLC0415

        return yaml.safe_load(COMPOSE.read_text()).get("services", {})
    except Exception as exc:
        print(f"annotate_load: could not read {COMPOSE} ({exc}); using the defaults", file=sys.stderr)
        return {}


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def gunicorn_options() -> list[str]:
    """The web service's gunicorn options, less ``--bind``; ``PREFLOOP_BENCH_GUNICORN``
    (e.g. ``"--workers 4 --threads 2"``) replaces them, to compare serving models."""
    override = os.environ.get("PREFLOOP_BENCH_GUNICORN", "").strip()
    if override:
        return shlex.split(override)
    found = re.search(r"gunicorn\s+webapp\.wsgi(?::application)?\s+([^\"\n]*)", _command(_services().get("web", {})))
    if not found:
        print("annotate_load: no gunicorn command in docker/compose.yaml's web service; using 3 × 4", file=sys.stderr)
        return list(FALLBACK_GUNICORN)
    words = shlex.split(found.group(1))
    options: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("-b", "--bind"):
            skip = True
        elif not word.startswith("--bind="):
            options.append(word)
    return options


def worker_concurrency() -> int:
    found = re.search(r"--concurrency[ =](\d+)", _command(_services().get("worker", {})))
    return int(found.group(1)) if found else FALLBACK_CONCURRENCY


def service_env(name: str) -> dict[str, str]:
    """A compose service's environment as the benchmark passes it on (see the module docstring)."""
    raw = _services().get(name, {}).get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw if "=" in item)
    env = {}
    for key, value in raw.items():
        if NOT_PASSED_ON.match(key) or value is None:
            continue
        value = str(value)
        default = re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-(.*)\}", value)
        if default:
            value = default.group(1)
        elif "${" in value:
            continue  # a value the operator must give: none for a benchmark
        env[key] = value
    return env
