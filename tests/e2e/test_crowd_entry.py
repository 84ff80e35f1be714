"""A Prolific participant follows the study link, answers their quota and gets the completion code."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Judgment, Membership
from tests.e2e.helpers import NEW_COMPARISON
from tests.factories import CandidateFactory, PromptFactory, StudyFactory

pytestmark = [pytest.mark.e2e]


def test_prolific_participant_reaches_the_completion_code(live_server, transactional_db, browser, artifacts_dir):
    study = StudyFactory(
        name="Crowd study", annotator_quota=3, completion_code="C1A2B3",
        completion_url="https://app.prolific.com/submissions/complete?cc=C1A2B3",
    )  # fmt: skip
    for k in range(3):
        prompt = PromptFactory(study=study, text=f"Question {k}: which answer is clearer?")
        for text in ("A short, correct answer.", "A long answer that wanders off topic.", "No idea."):
            CandidateFactory(prompt=prompt, text=text)

    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    pid = "5f1e2d3c4b5a69788796a5b4"
    page.goto(
        f"{live_server.url}{reverse('join', args=[study.invite_token])}?PROLIFIC_PID={pid}&STUDY_ID=s&SESSION_ID=x"
    )
    page.wait_for_url(live_server.url + reverse("annotate", args=[study.slug]))
    assert "You: 0 / 3 judgments" in page.inner_text(".progress-text")
    for _ in range(3):
        shown = page.get_attribute("#comparison", "data-comparison-id")
        page.get_by_role("button", name="A is better").click()
        page.wait_for_function(NEW_COMPARISON, arg=shown, timeout=10_000)
    assert page.inner_text(".completion-code") == "C1A2B3"
    assert page.get_by_role("link", name="Finish and return").get_attribute("href").endswith("cc=C1A2B3")
    page.screenshot(path=str(artifacts_dir / "annotate-completion-phone.png"))
    context.close()

    membership = Membership.objects.get(external_id=pid)
    assert Judgment.objects.filter(annotator=membership.user).count() == 3
