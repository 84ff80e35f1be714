"""A researcher generates responses from the study page (issue 17): adds an
endpoint source (a real chat-completions server on 127.0.0.1 answering with a
tiny random GPT-2 built here), starts a run, and sees it finish with its
counts; a source the page refuses says which field is wrong. Screenshots are
left for people to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from annotation.models import Candidate, GenerationJob, Membership
from models_runtime.generation.local_hf import LocalGenerator, LocalModelConfig
from tests.chat_server import ChatServer, tiny_model_dir
from tests.e2e.helpers import log_in, member, study_with_prompts

pytestmark = [pytest.mark.e2e]


def test_a_researcher_generates_responses_from_the_study_page(
    live_server, transactional_db, browser, monkeypatch, tmp_path: Path, settings, artifacts_dir
):
    from webapp.celery import app as celery_app

    # The worker's part runs in the server's own thread, once the start is committed.
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    settings.PREFLOOP_VAR_DIR = tmp_path
    study = study_with_prompts({f"How do I fix problem {k}?": [f"Try {k}."] for k in range(4)}, name="Generated")
    researcher = member(study, "lead", role=Membership.Role.RESEARCHER)
    local = LocalGenerator(LocalModelConfig(str(tiny_model_dir(tmp_path / "tiny")), device="cpu"))
    with ChatServer(generator=local) as server:
        page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        log_in(page, live_server, researcher, reverse("study_detail", args=[study.slug]))

        card = page.locator("#generate")
        card.get_by_label("Name", exact=True).fill("tiny-api")
        card.get_by_label("Model name").fill("tiny")
        card.get_by_role("button", name="Add source").click()
        page.wait_for_load_state("load")
        assert "Endpoint URL" in page.locator(".messages .alert").first.inner_text(), "the missing URL is named"

        card.get_by_label("Name", exact=True).fill("tiny-api")
        card.get_by_label("Endpoint URL").fill(server.base_url)
        card.get_by_label("Model name").fill("tiny")
        card.get_by_label("Max tokens").fill("8")
        card.get_by_role("button", name="Add source").click()
        page.wait_for_load_state("load")
        assert "Source 'tiny-api' added" in page.content()

        card.get_by_label("Responses per prompt").fill("3")
        card.get_by_role("button", name="Generate").click()
        page.wait_for_load_state("load")
        job = GenerationJob.objects.get(study=study)
        assert job.status == "done", job.error
        row = page.locator(f"#generation-job-{job.pk}")
        assert f"{job.result['candidates_created']} added" in row.inner_text()
        assert Candidate.objects.filter(study=study, source="tiny-api").count() == job.result["candidates_created"]
        assert len(server.received) == 12
        card.scroll_into_view_if_needed()
        card.screenshot(path=str(artifacts_dir / "generate-responses.png"))
        page.context.close()
