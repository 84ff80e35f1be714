"""A Prolific participant follows the study link, answers their quota and gets the completion code."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Judgment, Membership
from tests.e2e.helpers import NEW_COMPARISON, Visitor, log_in, member, study_with_prompts
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


def test_a_signed_in_researcher_is_asked_before_a_participant_link_signs_them_out(
    live_server, transactional_db, browser, artifacts_dir
):
    study = study_with_prompts({"Which reply is kinder?": ["Thanks!", "Whatever.", "Sure."]}, name="Crowd study")
    researcher = member(study, "res", Membership.Role.RESEARCHER)
    visitor = Visitor(browser, viewport={"width": 1280, "height": 900})
    log_in(visitor.page, live_server, researcher, reverse("study_detail", args=[study.slug]))
    link = f"{live_server.url}{reverse('join', args=[study.invite_token])}?PROLIFIC_PID=abc123&STUDY_ID=s&SESSION_ID=x"
    visitor.visit(link)
    assert "You are signed in as res" in visitor.page.inner_text("main")
    visitor.page.screenshot(path=str(artifacts_dir / "join-signed-in.png"))
    visitor.page.get_by_role("button", name="Sign out and continue as a participant").click()
    visitor.page.wait_for_url(live_server.url + reverse("annotate", args=[study.slug]))
    visitor.assert_clean("after signing out to continue")
    assert visitor.page.inner_text(".user-nav .muted") == f"p{study.id}-abc123"
    visitor.close()

    # Someone else with the participant's id but another session gets a refusal.
    intruder = Visitor(browser, viewport={"width": 390, "height": 844})
    intruder.visit(link.replace("SESSION_ID=x", "SESSION_ID=y"), status=403)
    assert "already in use in another session" in intruder.page.inner_text("main")
    intruder.close()
