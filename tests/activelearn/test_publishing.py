"""What the loop publishes: never a fit that learnt nothing, never one that saw an
evaluation judgment, at a sensible cadence, with old checkpoints pruned."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from django.urls import reverse

from activelearn import features, refill, services
from annotation.models import Judgment, Membership, RewardModelVersion, Study
from models_runtime import kinds, reward

pytestmark = pytest.mark.django_db


def _judge_and_retrain(judge, study, user, n):
    """Answer ``n`` comparisons with the ``judge`` fixture, running the retrain
    after each as the loop does."""
    for _ in range(n):
        judge(study, user, 1)
        services.reward_model_retrain(study_id=study.id)


def _judge_until_published(judge, study, user, most=6):
    """Answer one comparison at a time, fitting after each, until a fit is
    published; return its version. A warm-started fit on one more judgment may
    rightly not beat its starting point and stay unpublished."""
    for _ in range(most):
        judge(study, user, 1)
        if (version := services.reward_model_fit(study_id=study.id)) is not None:
            return version
    study.refresh_from_db()
    raise AssertionError(f"no fit published in {most} judgments: {study.last_fit_note}")


@pytest.fixture
def frozen_kind():
    """A head whose optimizer cannot move it (lr 1e-12, and a fixed label-flip
    rate, since a learned one takes steps of its own): early stopping keeps epoch
    0, its starting point, whatever the data."""
    mlp = kinds.get("mlp")

    def config(params, device):
        return dataclasses.replace(mlp.config({**params, "label_flip_rate": 0.0}, device), lr=1e-12)

    kind = dataclasses.replace(mlp, name="frozen", label="Head that cannot learn", config=config)
    with kinds.registered(kind):
        yield kind


def test_every_kind_reports_the_epoch_it_kept(make_study, annotators, member, judge):
    study = make_study()
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    judge(study, annotators[0], 8)
    feats = features.study_features(study_id=study.id)
    data = features.study_preferences(study_id=study.id, index=feats.index())
    for kind in kinds.kinds():
        result = kind.fit(feats.features, data, kind.config({}, "cpu"), None)
        assert result.metrics["best_epoch"] >= 0, kind.name
        assert {"start_loss", "best_trained_loss", "monitored_heldout"} <= set(result.metrics), kind.name


def test_a_fit_that_keeps_its_starting_point_is_not_published(
    make_study, annotators, member, frozen_kind, client_for, settings, judge
):
    settings.PREFLOOP_RETRAIN_MIN_NEW, settings.PREFLOOP_RETRAIN_GROWTH = 5, 0.1
    study = make_study(evaluation_rate=0.0)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    judge(study, annotators[0], 3)
    assert services.reward_model_fit(study_id=study.id) is not None  # v1, an MLP that learnt
    Study.objects.filter(id=study.id).update(model_type="frozen")
    judge(study, annotators[0], 2)
    assert services.reward_model_retrain(study_id=study.id).version is None
    assert list(RewardModelVersion.objects.filter(study=study).values_list("version", flat=True)) == [1]
    study.refresh_from_db()
    assert study.last_fit_status == Study.FitStatus.NOT_IMPROVED
    assert "A fit on 5 training judgments did not improve on its starting point" in study.last_fit_note
    assert "its untrained initial weights" in study.last_fit_note  # v1 is another kind: a cold start
    assert "training objective" in study.last_fit_note and "→" in study.last_fit_note
    assert study.last_fit_note.endswith("v1 stays live.")
    # A failed attempt waits for the cadence like a published one: no refit per judgment.
    attempted_at = study.last_fit_at
    judge(study, annotators[0], 1)
    services.reward_model_retrain(study_id=study.id)
    study.refresh_from_db()
    assert study.last_fit_at == attempted_at, "no new attempt before the cadence says so"

    researcher = annotators[2]
    Membership.objects.filter(user=researcher, study=study).update(role=Membership.Role.RESEARCHER)
    html = client_for(researcher).get(reverse("study_detail", args=[study.slug])).content.decode()
    assert "did not improve on its starting point" in html and "v1 stays live" in html


def test_no_fit_ever_sees_an_evaluation_judgment(make_study, annotators, member, monkeypatch, judge):
    study = make_study(evaluation_rate=0.5)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    seen = []
    real = reward.fit_reward_model

    def spy(features_, data, config, **options):
        seen.append(data)
        return real(features_, data, config, **options)

    monkeypatch.setattr(reward, "fit_reward_model", spy)
    for _ in range(3):
        _judge_and_retrain(judge, study, annotators[0], 8)
        refill.queue_refill(study_id=study.id, seed=1)
    evaluation = Judgment.objects.filter(study=study, evaluation=True)
    assert evaluation.exists() and Judgment.objects.filter(study=study, evaluation=False).exists()
    assert not Judgment.objects.filter(study=study, evaluation__isnull=True).exists()
    index = features.study_features(study_id=study.id).index()
    held_pairs = {(index[j.ranking[0]], index[j.ranking[1]]) for j in evaluation}
    assert seen, "no fit ran"
    for data in seen:
        trained = set(zip(data.pair_left.tolist(), data.pair_right.tolist(), strict=True))
        assert not trained & held_pairs
    versions = list(RewardModelVersion.objects.filter(study=study))
    assert all(v.fixed_evaluation and v.n_train + evaluation.count() >= v.n_judgments for v in versions)


def test_judgments_of_one_pair_land_on_the_same_side_once_and_for_all(make_study, annotators, member, judge):
    study = make_study(overlap=3, evaluation_rate=0.5)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    for user in annotators:
        judge(study, user, 12)
    sides: dict[int, set] = {}
    for comparison_id, side in Judgment.objects.filter(study=study).values_list("comparison_id", "evaluation"):
        sides.setdefault(comparison_id, set()).add(side)
    assert all(len(s) == 1 for s in sides.values())
    assert len(sides) >= 12 and {True, False} == set().union(*sides.values())  # fails with odds 2^-11
    before = dict(Judgment.objects.filter(study=study).values_list("id", "evaluation"))
    Study.objects.filter(id=study.id).update(evaluation_rate=0.0)  # a new rate applies to new judgments only
    services.reward_model_fit(study_id=study.id)
    assert dict(Judgment.objects.filter(study=study).values_list("id", "evaluation")) == before


def test_fits_come_at_the_cadence_not_at_every_judgment(make_study, annotators, member, settings, judge):
    settings.PREFLOOP_RETRAIN_MIN_NEW, settings.PREFLOOP_RETRAIN_GROWTH = 5, 0.1
    assert [services.retrain_due_after(n) for n in (3, 20, 50, 51, 100)] == [8, 25, 55, 57, 110]
    study = make_study(evaluation_rate=0.0, queue_target=20)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    _judge_and_retrain(judge, study, annotators[0], 14)
    assert list(
        RewardModelVersion.objects.filter(study=study).order_by("version").values_list("n_train", flat=True)
    ) == [
        3,
        8,
        13,
    ]
    study.refresh_from_db()
    assert study.last_fit_note.startswith("v3 published: fitted on 13 training judgments")
    assert "the next fit comes at 18 training judgments" in study.last_fit_note


def test_old_checkpoints_are_pruned_but_the_live_the_best_and_the_newest_stay(
    make_study, annotators, member, settings, client_for, judge
):
    settings.PREFLOOP_RETRAIN_MIN_NEW, settings.PREFLOOP_CHECKPOINTS_KEEP = 1, 2
    study = make_study(evaluation_rate=0.0, queue_target=20)
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    judge(study, annotators[0], 3)
    services.reward_model_fit(study_id=study.id)
    # v1 is the best by held-out log-loss (set by hand: this study has no evaluation set).
    RewardModelVersion.objects.filter(study=study, version=1).update(heldout_log_loss=0.1)
    for _ in range(4):
        _judge_until_published(judge, study, annotators[0])
    versions = {v.version: v for v in RewardModelVersion.objects.filter(study=study)}
    assert sorted(versions) == [1, 2, 3, 4, 5]
    kept = {n for n, v in versions.items() if v.pruned_at is None}
    assert kept == {1, 4, 5}, "the best (v1), and the two newest, the live one among them"
    for n, v in versions.items():
        assert Path(v.checkpoint_path).is_dir() == (n in kept)
    with pytest.raises(services.CheckpointPruned, match=r"v2's checkpoint was pruned on .* keeps the live version"):
        services.reward_model_load(versions[2])
    # The loop never needs a pruned one: the next fit warm-starts from the live version.
    assert _judge_until_published(judge, study, annotators[0]).version == 6

    researcher = annotators[2]
    Membership.objects.filter(user=researcher, study=study).update(role=Membership.Role.RESEARCHER)
    client = client_for(researcher)
    gone = client.get(reverse("model_checkpoint", args=[study.slug, 2]))
    assert gone.status_code == 404
    assert client.get(reverse("model_checkpoint", args=[study.slug, 6])).status_code == 200


def test_a_model_fitted_on_other_features_is_not_used_and_is_refitted_at_once(
    make_study, annotators, member, monkeypatch, caplog, loop_calls, judge
):
    """After the study's features change (here its ``features`` choice; an
    upgraded encoder or PREFLOOP_EMBEDDER_LAYERS gives the same key change), the
    live version cannot score the new features: the refill uses random pairs
    rather than feed them to it, the finished embedding asks for a refit, and
    the refit comes at once, without waiting for the cadence."""
    from activelearn import embedding, tasks

    study = make_study(model_type="mlp", strategy="uncertainty")
    member(study)
    refill.queue_refill(study_id=study.id, seed=0)
    judge(study, annotators[0], 6)
    v1 = services.reward_model_fit(study_id=study.id)
    assert v1 is not None and not services.live_model_stale(study_id=study.id)

    Study.objects.filter(id=study.id).update(features="last_turn")
    study.refresh_from_db()
    assert services.live_model_stale(study_id=study.id)
    embedding.study_embed(study_id=study.id)
    retrains = loop_calls.retrain
    retrains.clear()
    tasks.embed_study(study.id)
    assert retrains == [study.id], "the finished embedding asks for the stale model's refit"

    caplog.set_level("WARNING", logger="activelearn.refill")
    study.comparisons.filter(assignments__isnull=True).delete()
    created = refill.queue_refill(study_id=study.id, seed=1)
    assert created > 0
    fresh = study.comparisons.filter(assignments__isnull=True)
    assert set(fresh.values_list("strategy", flat=True)) == {"random"}
    assert f"live model v{v1.version} was fitted on features" in caplog.text

    Study.objects.filter(id=study.id).update(retrain_claimed_at=None)
    v2 = services.reward_model_retrain(study_id=study.id).version
    assert v2 is not None and v2.version == v1.version + 1, "refitted with no new judgment"
    assert v2.embedder_key.endswith("+last_turn") and not services.live_model_stale(study_id=study.id)
    tasks.embed_study(study.id)
    assert retrains == [study.id], "nothing to refit once the model matches"
