"""Annotator reliability in the loop: a fit weighs every judgment by its annotator's
measured reliability, an AI judge is measured against people, and the held-out
figures are people's answers only."""

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from activelearn import features, refill, reliability, services
from annotation.dashboard.selectors import study_dashboard
from annotation.models import Candidate, GenerationSource, Judgment
from annotation.services import assignment_lease_next, judgment_submit
from annotation.services.judging import ai_judge_create
from models_runtime import kinds


def _better_first(comparison_id: int) -> tuple[int, int]:
    """(better, worse) candidate ids of a pair: the response of the lower model
    number is the better one (the study's truth in these tests)."""
    items = list(
        Candidate.objects.filter(comparisons__id=comparison_id).order_by("source", "id").values_list("id", flat=True)
    )
    return items[0], items[1]


def _answer_truthfully(study, user, n: int) -> list[int]:
    answered = []
    for _ in range(n):
        lease = assignment_lease_next(study=study, annotator=user)
        assert lease is not None, "the queue ran dry"
        shown = lease.assignment.display_order
        better, _ = _better_first(lease.assignment.comparison_id)
        judgment_submit(
            study=study,
            annotator=user,
            comparison_id=lease.assignment.comparison_id,
            choice="a" if shown[0] == better else "b",
        )
        answered.append(lease.assignment.comparison_id)
    return answered


@pytest.fixture
def judge_of(db):
    def make(study, name="contrarian"):
        source = GenerationSource.objects.create(
            study=study, name=f"src-{name}", base_url="http://127.0.0.1:9/v1", model="m"
        )
        return ai_judge_create(study=study, source_id=source.id, name=name)

    return make


@pytest.mark.django_db
def test_an_adversarial_judge_gets_no_weight_and_stays_out_of_the_held_out_figures(
    make_study, annotators, member, judge_of
):
    study = make_study(model_type="kernel", strategy="double_ts", evaluation_rate=0.3, queue_target=40)
    member(study)
    judge = judge_of(study)
    assert not judge.user.is_active and not judge.user.has_usable_password()
    refill.queue_refill(study_id=study.id, seed=0)
    answered = _answer_truthfully(study, annotators[0], 18) + _answer_truthfully(study, annotators[1], 12)
    # The judge answers every one of them, always for the worse response.
    for comparison_id in answered:
        better, worse = _better_first(comparison_id)
        Judgment.objects.create(
            study=study, comparison_id=comparison_id, annotator=judge.user, choice="a",
            ranking=[worse, better], shown_order=[worse, better],
        )  # fmt: skip

    version = services.reward_model_fit(study_id=study.id)
    assert version is not None
    rel = version.metrics["reliability"]["annotators"]
    judged = rel[str(judge.user_id)]
    assert judged["kind"] == "model" and judged["accuracy"] < 0.3 and judged["weight"] == 0.0
    assert judged["anchored"] == Judgment.objects.filter(annotator=judge.user, evaluation=False).count()
    for person in annotators[:2]:
        assert rel[str(person.id)]["kind"] == "person" and rel[str(person.id)]["weight"] == 1.0
    # Held out: people's evaluation answers, never the judge's.
    people_held_out = Judgment.objects.filter(study=study, evaluation=True).exclude(annotator=judge.user).count()
    assert people_held_out > 0
    evaluation = version.metrics["evaluation"]
    assert evaluation["n"] + evaluation["n_unscored"] == people_held_out
    # What the fit trained on: the judge's rows weigh 0, the people's 1, so the
    # model is the one the people's answers alone give. Counted equally, the
    # judge's answers would cancel them (every pair answered once each way).
    feats = features.study_features(study_id=study.id)
    judged, _ = reliability.training_preferences(study_id=study.id, index=feats.index())
    by_judge = judged.annotator_ids == judge.user_id
    assert by_judge.any() and (judged.data.weight[by_judge] == 0).all() and (judged.data.weight[~by_judge] == 1).all()
    config = services.reward_model_config(study=study)
    kind = kinds.get(study.model_type)
    together = kind.fit(feats.features, judged.data, config, None).model
    alone = kind.fit(feats.features, judged.data.select(np.flatnonzero(~by_judge)), config, None).model
    assert np.allclose(together.scores(feats.features), alone.scores(feats.features))

    # The study page's annotator table shows each annotator's reliability and weight.
    rows = {row.quality.user_id: row for row in study_dashboard(study=study).annotator_rows}
    assert rows[judge.user_id].quality.name == "contrarian (AI judge)"
    assert rows[judge.user_id].reliability["weight"] == 0.0
    assert rows[annotators[0].id].reliability["weight"] == 1.0


@pytest.mark.django_db
def test_a_judge_needs_a_source_of_its_study_a_free_name_and_a_usable_template(make_study, judge_of):
    study = make_study()
    other = make_study(slug="other")
    foreign = GenerationSource.objects.create(study=other, name="x", base_url="http://127.0.0.1:9/v1", model="m")
    first = judge_of(study, "first")
    with pytest.raises(ValidationError, match="another study"):
        ai_judge_create(study=study, source_id=foreign.id, name="j")
    with pytest.raises(ValidationError, match="already has a judge"):
        ai_judge_create(study=study, source_id=first.source_id, name="first")
    with pytest.raises(ValidationError, match="must contain"):
        ai_judge_create(study=study, source_id=first.source_id, name="j", template="Which is better? {prompt}")
    with pytest.raises(ValidationError, match="name"):
        ai_judge_create(study=study, source_id=first.source_id, name="  ")
