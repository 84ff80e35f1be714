"""The study page's downloads in a real browser: DPO pairs offer both forms, the
study's default marked, and a click downloads the form it names."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from annotation.models import Membership
from tests.annotation.exports.chats import hh_study
from tests.e2e.helpers import log_in, member

pytestmark = [pytest.mark.e2e]


def test_a_researcher_downloads_dpo_pairs_in_the_form_they_click(live_server, transactional_db, browser, tmp_path):
    study = hh_study()
    researcher = member(study, "exporter", Membership.Role.RESEARCHER)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    log_in(page, live_server, researcher, reverse("study_detail", args=[study.slug]))
    row = page.locator("#export-links tr", has_text="DPO pairs (JSON lines)")
    assert row.locator(".export-form[data-form='conversational']").inner_text().startswith("Conversational (default)")
    assert "(default)" not in row.locator(".export-form[data-form='text']").inner_text()
    assert "\\n\\nAssistant:" in page.inner_text("#dpo-forms")
    page.locator("#exports").screenshot(path="/tmp/h5-exports.png")

    with page.expect_download() as download:
        row.locator("a[data-export='dpo.jsonl'][data-form='text']").click()
    assert download.value.suggested_filename == f"{study.slug}-dpo-text.jsonl"
    saved = tmp_path / "pairs.jsonl"
    download.value.save_as(saved)
    records = [json.loads(line) for line in saved.read_text().splitlines()]
    assert records and all(r["form"] == "text" and r["prompt"].endswith("\n\nAssistant:") for r in records)
    context.close()
