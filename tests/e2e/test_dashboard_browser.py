"""The researcher dashboard in a real browser: its SVG charts render with sizes
and colours from the theme, in light and dark mode, and survive an htmx refresh."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Membership
from tests.annotation.dashboard.test_analytics import _populate
from tests.e2e.helpers import log_in, member
from tests.factories import study_with_queue

pytestmark = [pytest.mark.e2e]

CHARTS = ("chart-per-hour", "chart-learning-curve", "chart-leaderboard", "chart-regret")


def test_dashboard_charts_render_in_light_and_dark_mode(live_server, transactional_db, browser, artifacts_dir):
    study = study_with_queue(n_prompts=4, n_candidates=3, overlap=2, name="Dashboard study")
    names = iter(["ann1", "ann2", "ann3"])
    _populate(study, annotators=3, versions=6, runs=1, make_member=lambda s: member(s, next(names)))
    researcher = member(study, "watcher", Membership.Role.RESEARCHER)
    url = reverse("study_detail", args=[study.slug])
    fills = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
        page = context.new_page()
        log_in(page, live_server, researcher, url)
        for chart in CHARTS:
            box = page.locator(f"#{chart}").bounding_box()
            assert box is not None and box["width"] > 250 and box["height"] > 100, (chart, box)
        fills[scheme] = page.eval_on_selector("#chart-per-hour .chart-bar", "el => getComputedStyle(el).fill")
        text = page.eval_on_selector("#chart-leaderboard .chart-label", "el => getComputedStyle(el).fill")
        background = page.eval_on_selector("body", "el => getComputedStyle(el).backgroundColor")
        assert text != background
        # The htmx poll swaps the section; the charts come back with it.
        page.wait_for_function("() => document.querySelector('#dashboard p.muted.small')?.textContent", timeout=5000)
        before = page.inner_text("#dashboard .section-head p")
        page.wait_for_function(
            "before => document.querySelector('#dashboard .section-head p').innerText !== before",
            arg=before,
            timeout=8000,
        )
        assert page.locator("#chart-leaderboard").count() == 1
        name = "study-dashboard.png" if scheme == "light" else "study-dashboard-dark.png"
        page.locator("#dashboard").screenshot(path=str(artifacts_dir / name))
        context.close()
    assert fills["light"] != fills["dark"]  # the accent follows the colour scheme
