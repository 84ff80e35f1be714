"""The data browser in a browser (issue 18): a researcher searches as they type
(htmx swaps the results, the address follows), filters to disagreements, opens
a prompt, and excludes a selection's judgments with a reason. Screenshots of
the browser and of a prompt's page are left for people to look at."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Comparison, Judgment, Membership
from annotation.services.review import reviews_sweep
from tests.annotation.test_review import _answer
from tests.e2e.helpers import log_in, member, study_with_prompts, wait_for

pytestmark = [pytest.mark.e2e]

PROMPTS = {
    "How do I boil an egg so the yolk stays soft?": ["Six minutes in boiling water, then cold water.", "Boil it."],
    "What is the capital of Australia?": ["Canberra.", "Sydney."],
    "Suggest a name for a grey cat.": ["Smokey", "Cat"],
}


def test_a_researcher_searches_filters_opens_and_excludes(live_server, transactional_db, browser, artifacts_dir):
    from activelearn.refill import queue_refill

    study = study_with_prompts(PROMPTS, name="Browsing", evaluation_rate=0.0)
    queue_refill(study_id=study.id, use_model=False, seed=0)
    lead = member(study, "lead", role=Membership.Role.RESEARCHER)
    ann, bob = member(study, "ann"), member(study, "bob")
    for comparison in Comparison.objects.filter(study=study):
        _answer(study, ann, comparison, "a")
        _answer(study, bob, comparison, "a" if "capital" not in comparison.prompt.text else "b")
    reviews_sweep()  # the disagreement flags

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, live_server, lead, reverse("study_detail", args=[study.slug]))
    page.locator("#data-link").click()
    page.wait_for_load_state("load")
    assert "3 prompts" in page.locator("#browse-count").inner_text()
    page.evaluate("window.__samePage = true")
    page.get_by_label("Search prompts and responses").fill("Canberra")
    page.wait_for_function("() => document.getElementById('browse-count').textContent.includes('1 prompt match')")
    assert page.evaluate("window.__samePage") is True, "the results should be swapped in, not the page reloaded"
    assert "q=Canberra" in page.url
    page.get_by_label("Search prompts and responses").fill("")
    page.get_by_label("Agreement").select_option("disagree")
    page.wait_for_function("() => document.getElementById('browse-count').textContent.includes('1 prompt match')")
    row = page.locator("#browse-table tbody tr").first
    assert "capital of Australia" in row.inner_text() and row.locator("td").nth(4).inner_text() == "1"
    page.get_by_label("Agreement").select_option("")
    page.wait_for_function("() => document.getElementById('browse-count').textContent.includes('3 prompts')")
    page.screenshot(path=str(artifacts_dir / "data-browser.png"), full_page=True)

    page.get_by_role("link", name="What is the capital of Australia?").click()
    page.wait_for_load_state("load")
    assert page.locator("#prompt-comparisons tbody tr").count() == 1
    assert "people disagree" in page.locator("#prompt-comparisons").inner_text()
    page.screenshot(path=str(artifacts_dir / "data-prompt.png"), full_page=True)
    page.get_by_role("link", name="Back to the data").click()
    page.wait_for_load_state("load")

    page.get_by_label("Select prompt", exact=False).first.check()
    page.get_by_label("Reason (kept in each judgment's history; needed to exclude)").fill("first prompt reworded")
    page.get_by_role("button", name="Exclude their judgments from training").click()
    page.wait_for_load_state("load")
    assert "Excluded 2 judgments on 1 prompt(s)" in page.locator(".messages").inner_text()
    wait_for(page, lambda: Judgment.objects.filter(review_state="excluded").count() == 2, "the exclusion")
    page.context.close()
