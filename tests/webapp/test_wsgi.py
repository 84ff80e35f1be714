"""The WSGI entry point tunes how often a web process's threads hand the GIL over."""

from __future__ import annotations

import sys

import pytest

from webapp import wsgi


@pytest.mark.parametrize(("interval_ms", "expected"), [(1.0, [0.001]), (2.5, [0.0025]), (0.0, [])])
def test_the_switch_interval_follows_the_setting(settings, monkeypatch, interval_ms, expected) -> None:
    calls: list[float] = []
    monkeypatch.setattr(sys, "setswitchinterval", calls.append)
    settings.PREFLOOP_WEB_SWITCH_INTERVAL_MS = interval_ms
    wsgi.tune_thread_switching()
    assert calls == expected
