"""A researcher adds a webhook on the study page (issue 18), sends it a test ping
that a real HTTP receiver on 127.0.0.1 gets, signed, and sees the delivery on the
card. A screenshot is left for people to look at."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Membership, Webhook
from tests.annotation.test_webhooks import Receiver, verified
from tests.e2e.helpers import log_in, member
from tests.factories import study_with_queue

pytestmark = [pytest.mark.e2e]


def test_a_researcher_adds_a_webhook_and_pings_it(live_server, transactional_db, browser, monkeypatch, artifacts_dir):
    from webapp.celery import app as celery_app

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)  # the delivery, in the server's thread
    study = study_with_queue(n_prompts=2, n_candidates=3, name="Hooked")
    researcher = member(study, "lead", role=Membership.Role.RESEARCHER)
    with Receiver() as receiver:
        page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        log_in(page, live_server, researcher, reverse("study_detail", args=[study.slug]))
        card = page.locator("#webhooks")
        card.get_by_text("Add a webhook").click()
        card.get_by_label("Send to (URL)").fill(receiver.url)
        card.get_by_label("Judgments received (in batches)").check()
        card.get_by_role("button", name="Add webhook").click()
        page.wait_for_load_state("load")
        assert "Webhook added" in page.locator(".messages .alert").first.inner_text()
        hook = Webhook.objects.get(study=study)
        assert sorted(hook.events) == ["judgments.received", "model.published", "study.closed"]
        page.locator("#webhooks").get_by_role("button", name="Send a test ping").click()
        page.wait_for_load_state("load")
        assert verified(hook.secret, receiver.received[0])["event"] == "ping"
        row = page.locator("#webhook-deliveries tbody tr").first
        assert "ping" in row.inner_text() and "Delivered" in row.inner_text() and "HTTP 200" in row.inner_text()
        page.locator("#webhooks").scroll_into_view_if_needed()
        page.locator("#webhooks").screenshot(path=str(artifacts_dir / "webhooks.png"))
        page.context.close()
