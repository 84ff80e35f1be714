"""models_runtime must stay framework-free and cheap to import."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import models_runtime

PACKAGE_DIR = Path(models_runtime.__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def test_no_django_imports_in_source() -> None:
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert files
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if name == "django" or name.startswith("django."):
                    offenders.append(f"{path.name}:{node.lineno} imports {name}")
    assert not offenders, offenders


def test_import_is_light() -> None:
    code = (
        "import sys\n"
        "import models_runtime, models_runtime.reward, models_runtime.embedding\n"
        "import models_runtime.device, models_runtime.hashing, models_runtime.metrics\n"
        "import models_runtime.training, models_runtime.ensemble, models_runtime.kinds\n"
        "import models_runtime.generation.openai_compat, models_runtime.generation.local_hf\n"
        "heavy = [m for m in ('django', 'torch', 'transformers', 'safetensors')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"heavy modules imported eagerly: {proc.stdout}"
