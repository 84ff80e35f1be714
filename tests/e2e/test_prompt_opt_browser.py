"""A prompt-optimisation study end to end in the browser (issue 17, APOHF's
setting): a researcher makes a study a prompt-optimisation one on its page (a
target and a rewriter, real chat-completions servers on 127.0.0.1 answering
with scripted models), the worker generates every instruction's responses, an
annotator compares responses (never seeing the instructions), a model ranks the
instructions, the rewriter proposes rewrites of the best one, and the page shows
the best instruction with its P(best) and downloads it. A screenshot is left for
people to look at."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.urls import reverse

from activelearn import embedding
from activelearn import services as loop_services
from annotation import tasks
from annotation.models import Candidate, GenerationSource, Judgment, Membership
from tests.annotation.test_prompt_opt import Rewriter, Target
from tests.chat_server import ChatServer
from tests.e2e.helpers import NEW_COMPARISON, log_in, member, wait_for
from tests.factories import StudyFactory

pytestmark = [pytest.mark.e2e]

STYLE = re.compile(r"style (\d+)")


def test_a_prompt_optimisation_study_from_setup_to_its_best_prompt(
    live_server, transactional_db, browser, monkeypatch, tmp_path: Path, settings, artifacts_dir
):
    from webapp.celery import app as celery_app

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)  # the generate worker, in the server's thread
    settings.PREFLOOP_VAR_DIR = tmp_path
    study = StudyFactory(name="Support prompts", overlap=1, evaluation_rate=0.0)
    researcher = member(study, "lead", role=Membership.Role.RESEARCHER)
    annotator = member(study, "rater")
    with ChatServer(generator=Target()) as target, ChatServer(generator=Rewriter()) as rewriter:
        GenerationSource.objects.create(study=study, name="support-llm", base_url=target.base_url, model="tiny")
        GenerationSource.objects.create(study=study, name="rewriter-llm", base_url=rewriter.base_url, model="tiny")
        page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        log_in(page, live_server, researcher, reverse("study_detail", args=[study.slug]))
        card = page.locator("#prompt-optimisation")
        card.get_by_text("Make this a prompt-optimisation study").click()
        card.get_by_label("Task", exact=True).fill("Answer customers' questions about returns.")
        card.get_by_label("Instructions to add").fill(
            "Answer the question politely. [style 1]\nAnswer the question politely. [style 4]\n"
            "Answer the question politely. [style 2]"
        )
        card.get_by_label("Task inputs to add").fill("How do I return a parcel?\nCan I get a refund after 30 days?")
        card.get_by_label("Responses from").select_option(label="support-llm")
        card.get_by_label("Rewrites from").select_option(label="rewriter-llm")
        card.get_by_role("button", name="Start prompt optimisation").click()
        page.wait_for_load_state("load")
        assert "Prompt optimisation saved" in page.locator(".messages .alert").first.inner_text()
        status = page.locator("#po-status").inner_text()
        assert "3 of 3 instructions ready to compare" in status and "6 of 6 responses from support-llm" in status
        assert len(target.received) == 6

        # The annotator compares responses and always prefers the higher style.
        rater = page.context.browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        log_in(rater, live_server, annotator, reverse("annotate", args=[study.slug]))
        rater.screenshot(path=str(artifacts_dir / "prompt-optimisation-annotate.png"), full_page=True)
        for _ in range(3):
            shown = rater.get_attribute("#comparison", "data-comparison-id")
            texts = [rater.locator(f'.candidate[data-card="{c}"]').inner_text() for c in "AB"]
            assert all("Reply in style" in t and "politely" not in t for t in texts), texts
            styles = [int(STYLE.search(t).group(1)) for t in texts]
            rater.keyboard.press("1" if styles[0] > styles[1] else "2")
            rater.wait_for_function(NEW_COMPARISON, arg=shown, timeout=10_000)
        wait_for(rater, lambda: Judgment.objects.filter(annotator=annotator).count() == 3, "the three answers")
        rater.context.close()

        # The loop's fit ranks the instructions; the rewriter rewrites the best.
        embedding.study_embed(study_id=study.id)
        assert loop_services.reward_model_fit(study_id=study.id) is not None
        tasks.prompt_rewrite_run(study.id)
        assert Candidate.objects.filter(study=study, source="rewriter-llm").count() == 3

        page.reload()
        best = page.locator("#best-prompt")
        assert "Answer the question politely. [style 4]" in best.locator("blockquote").inner_text()
        assert "P(best)" in best.inner_text()
        assert "5 of 6 instructions ready" not in page.locator("#po-status").inner_text()
        assert "6 of 6 instructions ready to compare" in page.locator("#po-status").inner_text()
        assert "1 of 5 rounds used" in page.locator("#po-status").inner_text()
        with page.expect_download() as download:
            best.get_by_role("link", name="Download the best prompt (JSON)").click()
        saved = json.loads(Path(download.value.path()).read_text())
        assert saved["best"]["instruction"] == "Answer the question politely. [style 4]"
        assert 0 < saved["best"]["p_best"] <= 1 and saved["study"] == study.slug
        page.locator("#prompt-optimisation").scroll_into_view_if_needed()
        page.locator("#prompt-optimisation").screenshot(path=str(artifacts_dir / "prompt-optimisation.png"))
        page.context.close()
