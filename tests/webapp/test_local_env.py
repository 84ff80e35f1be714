"""The README's manage.py commands work in a second shell after ``scripts/run``:
the run script leaves a development ``.env`` that settings read, while production
still refuses to start without a real secret key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from webapp.local_env import local_env_ensure

ROOT = Path(__file__).resolve().parents[2]


def _manage_check(tmp_path: Path, env_file: Path, **extra: str) -> subprocess.CompletedProcess:
    """``manage.py check`` in a shell that has none of the run script's variables."""
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    env.update(PREFLOOP_ENV_FILE=str(env_file), PREFLOOP_VAR_DIR=str(tmp_path / "var"), **extra)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_run_scripts_env_file_lets_manage_py_run_in_another_shell(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    refused = _manage_check(tmp_path, env_file)
    assert refused.returncode != 0 and "SECRET_KEY is not set" in refused.stderr

    assert local_env_ensure(path=env_file) is True
    written = env_file.read_text()
    assert "DEBUG=true" in written
    key = re.search(r"^SECRET_KEY=(\S+)$", written, re.M)
    assert key and len(key.group(1)) >= 50
    ran = _manage_check(tmp_path, env_file)
    assert ran.returncode == 0, ran.stderr

    # A user's own .env is never replaced.
    env_file.write_text("SECRET_KEY=mine\n")
    assert local_env_ensure(path=env_file) is False
    assert env_file.read_text() == "SECRET_KEY=mine\n"


def test_production_refuses_the_example_placeholder_key(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=false\nSECRET_KEY=change-me-to-a-long-random-string\n")
    refused = _manage_check(tmp_path, env_file)
    assert refused.returncode != 0 and "placeholder" in refused.stderr


def test_scripts_run_writes_the_env_file_before_any_manage_py_command() -> None:
    script = (ROOT / "scripts" / "run").read_text()
    assert "python -m webapp.local_env .env" in script
    assert script.index("webapp.local_env") < script.index("python manage.py")
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_the_readme_says_which_python_runs_manage_py() -> None:
    """A second shell has no virtualenv active: the README's commands name it."""
    for line in (ROOT / "README.md").read_text().splitlines():
        for match in re.finditer(r"(\S*)\s+manage\.py", line):
            if "docker compose" in line:  # inside the container, its own python
                continue
            assert match.group(1).endswith(".venv/bin/python"), line
