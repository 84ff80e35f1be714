"""Every ``settings.NAME`` the apps read is defined by webapp/settings.py.

Tests override settings freely (``settings.PREFLOOP_VAR_DIR = tmp_path``), which
hides a name the settings module never defines: such code works under test and
fails in every real process (it did: the checkpoint cache of an object-store
deployment read a setting that did not exist).
"""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
APPS = ("annotation", "activelearn", "models_runtime", "webapp")
READ = re.compile(r"\bsettings\.([A-Z][A-Z0-9_]+)\b")
# Read with getattr(settings, NAME, default) elsewhere, or defined by Django itself.
DJANGO_DEFAULTS = {"DEBUG", "SECRET_KEY"}


def test_every_setting_the_apps_read_is_defined():
    read: dict[str, str] = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for name in READ.findall(path.read_text()):
                read.setdefault(name, str(path.relative_to(ROOT)))
    assert read, "the pattern finds nothing: the test would pass whatever the code says"
    unknown = {name: where for name, where in read.items() if name not in DJANGO_DEFAULTS}
    missing = {name: where for name, where in unknown.items() if not hasattr(settings, name)}
    assert not missing, f"read but never defined (first reader shown): {missing}"
