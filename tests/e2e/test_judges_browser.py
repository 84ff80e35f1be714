"""A researcher adds an AI judge from the study page (issue 17): the judge asks a
real chat-completions server on 127.0.0.1 (a scripted judge model) about the
queue in the worker's stead, its answers and agreement with people show in the
judges card, and once a fit trusts it, asking it again settles comparisons
without a person, which the card reports as what routing saved. A screenshot is
left for people to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from annotation.models import AIJudge, Comparison, GenerationSource, Judgment, Membership
from tests.annotation.test_judging import ScriptedJudge, trust
from tests.chat_server import ChatServer
from tests.e2e.helpers import log_in, member
from tests.factories import study_with_queue

pytestmark = [pytest.mark.e2e]


def test_a_researcher_adds_a_judge_that_takes_part_of_the_load(
    live_server, transactional_db, browser, monkeypatch, tmp_path: Path, settings, artifacts_dir
):
    from webapp.celery import app as celery_app

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)  # the judges' run, in the server's thread
    settings.PREFLOOP_VAR_DIR = tmp_path
    study = study_with_queue(n_prompts=4, n_candidates=4, overlap=1, evaluation_rate=0.0, name="Judged")
    for k, candidate in enumerate(study.candidates.order_by("id")):
        candidate.text = f"A response of quality {(k * 7) % 16}."
        candidate.save(update_fields=["text"])
    researcher = member(study, "lead", role=Membership.Role.RESEARCHER)
    with ChatServer(generator=ScriptedJudge("right")) as server:
        GenerationSource.objects.create(study=study, name="judge-llm", base_url=server.base_url, model="tiny")
        page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        log_in(page, live_server, researcher, reverse("study_detail", args=[study.slug]))

        card = page.locator("#judges")
        card.get_by_text("Add a judge").click()
        card.get_by_label("Name", exact=True).fill("Careful judge")
        card.get_by_role("button", name="Add judge").click()
        page.wait_for_load_state("load")
        assert "Judge 'Careful judge' added" in page.locator(".messages .alert").first.inner_text()
        judge = AIJudge.objects.get(study=study)
        answered = Judgment.objects.filter(annotator=judge.user).count()
        assert answered == Comparison.objects.filter(study=study).count() > 0
        row = page.locator("#judge-table tbody tr").first
        assert "Careful judge" in row.inner_text() and str(answered) in row.inner_text()
        assert "not measured yet" in row.inner_text()

        # A fit measured the judge against people and trusts it: asked again, it settles part of the queue.
        trust(study, {judge: (0.92, 1.0)})
        Judgment.objects.filter(annotator=judge.user).delete()
        card.get_by_label("Of those, still sent to people (%)").fill("0")
        card.get_by_role("button", name="Save").click()
        page.wait_for_load_state("load")
        page.locator("#judges").get_by_role("button", name="Ask the judges now").click()
        page.wait_for_load_state("load")
        settled = Comparison.objects.filter(study=study, settled_by_judges=True).count()
        assert settled > 0
        saved = page.locator("#routing-saved").inner_text()
        assert f"Routing saved {settled} person judgment" in saved and "at most 50%" in saved
        assert "92% · 1.00" in page.locator("#judge-table").inner_text()
        page.locator("#judges").scroll_into_view_if_needed()
        page.locator("#judges").screenshot(path=str(artifacts_dir / "ai-judges.png"))
        page.context.close()
