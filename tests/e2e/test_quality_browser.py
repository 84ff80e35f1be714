"""Gold and attention checks in the browser: served among ordinary comparisons,
answered blind like any other, and a careless annotator flagged on the study page."""

from __future__ import annotations

import io
import json

import pytest
from django.urls import reverse

from activelearn import embedding
from activelearn import services as loop_services
from annotation import services
from annotation.imports.writer import study_import_jsonl
from annotation.models import Comparison, Judgment, Membership
from tests.e2e.helpers import NEW_COMPARISON, log_in, member, wait_for
from tests.factories import StudyFactory

pytestmark = [pytest.mark.e2e]


def test_careless_annotator_is_flagged_to_the_researcher(
    live_server, transactional_db, browser, artifacts_dir, monkeypatch
):
    # No evaluation set: which gold pairs it would take depends on the study id (a hash), and with
    # two of three held out the fit would have too few judgments to train on.
    study = StudyFactory(name="Quality study", gold_rate=0.5, evaluation_rate=0.0)
    lines = [{"prompt": f"Which is the capital of France? ({k})", "candidates": ["Paris.", "Berlin."],
              "gold": {"better": 0, "worse": 1}} for k in range(3)]  # fmt: skip
    lines += [
        {"prompt": f"Ordinary prompt {k}", "candidates": [f"One {k}", f"Two {k}", f"Three {k}"]} for k in range(4)
    ]
    study_import_jsonl(study=study, fileobj=io.BytesIO("\n".join(json.dumps(x) for x in lines).encode()))
    monkeypatch.setattr(services.leasing.random, "random", lambda: 0.0)  # gold first, while there is any
    annotator = member(study, "careless")
    researcher = member(study, "watcher", Membership.Role.RESEARCHER)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, live_server, annotator, reverse("annotate", args=[study.slug]))
    for _ in range(3):
        # Always pick the response that says Berlin, wherever it is shown.
        shown = page.get_attribute("#comparison", "data-comparison-id")
        berlin = page.locator(".candidate", has_text="Berlin.").get_attribute("data-card")
        page.keyboard.press("1" if berlin == "A" else "2")
        page.wait_for_function(NEW_COMPARISON, arg=shown, timeout=10_000)
    # Gold is served once to each annotator. (Its responses are ordinary
    # candidates too, so the strategy may still pair them: check the row.)
    current = page.get_attribute("#comparison", "data-comparison-id")
    assert not Comparison.objects.get(id=int(current)).is_gold, "gold is served once to each annotator"
    wait_for(page, lambda: Judgment.objects.filter(annotator=annotator).count() == 3, "the three answers")
    context.close()
    assert Judgment.objects.filter(annotator=annotator, comparison__is_gold=True).count() == 3

    # A careful annotator answers the same gold items right; the fit learns how
    # far each can be trusted and weighs their judgments by it.
    careful = member(study, "careful")
    for _ in range(3):
        lease = services.assignment_lease_next(study=study, annotator=careful)
        better = lease.assignment.comparison.gold_answer["better"]
        choice = "a" if lease.assignment.display_order[0] == better else "b"
        services.judgment_submit(
            study=study, annotator=careful, comparison_id=lease.assignment.comparison_id, choice=choice
        )
    embedding.study_embed(study_id=study.id)
    version = loop_services.reward_model_fit(study_id=study.id)
    assert version is not None
    weights = {int(uid): row["weight"] for uid, row in version.metrics["reliability"]["annotators"].items()}
    assert weights[careful.id] == 1.0 and weights[annotator.id] < 0.5

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, live_server, researcher, reverse("study_detail", args=[study.slug]))
    table = page.locator("#annotator-quality")
    assert "1 flagged for review" in table.inner_text()
    flagged = table.locator("tr.is-flagged")
    assert "gold accuracy 0/3 is under 70%" in flagged.inner_text()
    # The reliability column: accuracy, its interval, and the weight.
    assert flagged.locator('[data-stat="reliability"]').inner_text().endswith(f"· {weights[annotator.id]:.2f}")
    assert table.locator("tr", has_text="careful").locator('[data-stat="reliability"]').inner_text().endswith("· 1.00")
    page.screenshot(path=str(artifacts_dir / "study-quality.png"), full_page=True)
    context.close()
