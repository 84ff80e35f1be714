"""The local ``.env`` that ``scripts/run`` leaves behind, so that every later
``manage.py`` command, in any shell, runs with the same development settings as
the server it started.

Only a missing file is written (DEBUG on, a freshly generated secret key); an
existing ``.env`` is the user's and stays as it is. The file is git-ignored. It
imports nothing from Django: it runs before the virtualenv has the project's
packages configured.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

__all__ = ["local_env_ensure"]

_TEMPLATE = """\
# Written by scripts/run for local development; not for production (see .env.example).
# Every manage.py command reads it, so they run with the server's settings.
DEBUG=true
SECRET_KEY={key}
"""


def local_env_ensure(*, path: Path) -> bool:
    """Write a development ``.env`` at ``path`` unless a file is already there.

    Returns whether it wrote one. The key is 50 random URL-safe bytes, new for
    each checkout, so sessions and pseudonyms differ between machines even in
    development.
    """
    if path.exists():
        return False
    path.write_text(_TEMPLATE.format(key=secrets.token_urlsafe(50)), encoding="utf-8")
    return True


if __name__ == "__main__":  # python -m webapp.local_env PATH
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / ".env"
    if local_env_ensure(path=target):
        print(f"wrote {target} (DEBUG=true and a generated SECRET_KEY) for local development")
