"""Dashboard analytics: stored rankings become labels and a source leaderboard,
the judgment-fingerprint cache (with a fake clock), and the selectors on real rows
(the statistics themselves are tested in tests/models_runtime/stats/)."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from activelearn.management.commands.simulate_annotators import Command as SimulateCommand
from annotation import services
from annotation.dashboard import analytics
from annotation.models import (
    Candidate,
    Comparison,
    GenerationSource,
    Judgment,
    Membership,
    RewardModelVersion,
    SimulationRun,
)
from annotation.services.judging import ai_judge_create
from tests.factories import study_with_queue


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


# --- labels and the leaderboard ----------------------------------------------------------------------


def test_rankings_become_labels_in_candidate_order_not_screen_order():
    assert analytics.ranking_pairs([9, 4]) == [(4, 9, "second")]
    assert analytics.ranking_pairs([4, 9]) == [(4, 9, "first")]
    assert analytics.ranking_pairs([[9, 4]]) == [(4, 9, "tie")]
    assert analytics.ranking_pairs([7, [3, 5]]) == [(3, 5, "tie"), (3, 7, "second"), (5, 7, "second")]
    with pytest.raises(ValueError, match="entry 1 holds 'x'"):
        analytics.ranking_pairs([1, "x"])
    with pytest.raises(ValueError, match="candidate 1 twice"):
        analytics.ranking_pairs([1, [1, 2]])


def _simulated_rankings(strength: dict[str, float], n: int, seed: int) -> tuple[list, dict[int, str]]:
    """Pairs between random sources answered by Bradley–Terry with the given
    strengths, with 10 % ties; candidate ids are fresh per judgment."""
    rng = np.random.default_rng(seed)
    names = list(strength)
    rankings, source_of = [], {}
    for k in range(n):
        a, b = rng.choice(len(names), 2, replace=False)
        ca, cb = 2 * k, 2 * k + 1
        source_of[ca], source_of[cb] = names[a], names[b]
        if rng.random() < 0.1:
            rankings.append([[ca, cb]])
            continue
        p = 1 / (1 + math.exp(-(strength[names[a]] - strength[names[b]])))
        rankings.append([ca, cb] if rng.random() < p else [cb, ca])
    return rankings, source_of


def test_leaderboard_recovers_known_strengths_with_covering_intervals_and_p_best_summing_to_one():
    strength = {"gpt-big": 1.2, "mid-7b": 0.4, "small-1b": -0.3, "tiny": -1.3}
    rankings, source_of = _simulated_rankings(strength, n=1500, seed=11)
    board = analytics.leaderboard_from_judgments(rankings, source_of, n_samples=2000, seed=0)
    assert [r.source for r in board.rows] == list(strength)
    centred = {s: v - np.mean(list(strength.values())) for s, v in strength.items()}
    for row in board.rows:
        assert row.low <= centred[row.source] <= row.high, row
        assert row.low < row.score < row.high
    assert sum(r.p_best for r in board.rows) == pytest.approx(1.0)
    assert board.rows[0].p_best > 0.95
    assert board.judgments == 1500 and board.samples == 2000
    assert sum(r.comparisons for r in board.rows) == 2 * 1500


def test_leaderboard_skips_same_source_and_unnamed_pairs_and_is_reproducible():
    rankings = [[1, 2], [3, 4], [1, 3], [[2, 4]]]
    source_of = {1: "a", 2: "a", 3: "b"}  # 4 has no source
    board = analytics.leaderboard_from_judgments(rankings, source_of, n_samples=500, seed=5)
    assert board.judgments == 1 and board.skipped_pairs == 3
    assert [r.source for r in board.rows] == ["a", "b"] and board.rows[0].wins == 1.0
    again = analytics.leaderboard_from_judgments(rankings, source_of, n_samples=500, seed=5)
    assert again == board
    assert analytics.leaderboard_from_judgments([[1, 2]], source_of).rows == ()


class FakeClock:
    """Wall-clock seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_slow_results_are_reused_for_a_while_after_judgments_change_and_cheap_ones_never(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(analytics, "clock", clock)
    study = SimpleNamespace(id=10**9, created_at=None)
    calls: list[float] = []

    def computing_for(seconds: float):
        def compute() -> int:
            calls.append(seconds)
            clock.now += seconds
            return len(calls)

        return compute

    slow = computing_for(2 * analytics.SLOW_SECONDS)  # 0.5 s: reusable for 20 × 0.5 = 10 s
    assert analytics._cached(study, "x", (1, 1), slow) == 1
    assert analytics._cached(study, "x", (1, 1), slow) == 1  # same judgments: cached
    clock.now += 9.9
    assert analytics._cached(study, "x", (2, 2), slow) == 1  # new judgments, but still within 10 s
    clock.now += 0.2
    assert analytics._cached(study, "x", (3, 3), slow) == 2  # 10.1 s old: recomputed
    assert analytics._cached(study, "x", (4, 4), slow) == 2  # the new result is the one reused

    cheap = computing_for(analytics.SLOW_SECONDS / 2)
    assert analytics._cached(study, "y", (1, 1), cheap) == 3
    assert analytics._cached(study, "y", (2, 2), cheap) == 4  # cheap: always fresh
    assert len(calls) == 4


# --- selectors on real rows -----------------------------------------------------------------------


def _answer_everything(study, annotator, prefer, *, order: str = "") -> int:
    """Lease and answer until nothing is left, choosing by ``prefer(candidate ids
    as shown) → "a" | "b" | "tie"``, through the same services the pages use.
    ``order`` ("ascending" or "descending" by id) fixes what the annotator is
    shown instead of the study's own shuffle."""
    from annotation.models import Assignment

    n = 0
    while (lease := services.assignment_lease_next(study=study, annotator=annotator)) is not None:
        shown = lease.assignment.display_order
        if order:
            shown = sorted(shown, reverse=order == "descending")
            Assignment.objects.filter(id=lease.assignment.id).update(display_order=shown)
        services.judgment_submit(
            study=study,
            annotator=annotator,
            comparison_id=lease.assignment.comparison_id,
            choice=prefer(shown),
            time_on_task_ms=4000 + 1000 * n,
        )
        n += 1
    return n


def _prefer_by_id(shown: list[int]) -> str:
    """A fixed taste that does not depend on which side a response is shown on:
    within a prompt (candidates by id), the second best, then the first, then
    the rest by id. So some pairs are won by the lower id and some by the
    higher, whatever ids the database hands out (a taste on ``id % 3`` made
    every winner the higher id for one offset of the id sequence, which left
    the agreement statistics undefined when other tests had run first)."""
    prompt_id = Candidate.objects.values_list("prompt_id", flat=True).get(id=shown[0])
    ids = list(Candidate.objects.filter(prompt_id=prompt_id).order_by("id").values_list("id", flat=True))
    taste = [ids[1], ids[0], *ids[2:]] if len(ids) > 1 else ids
    best = min(shown, key=taste.index)
    return "a" if shown[0] == best else "b"


@pytest.mark.django_db
def test_agreement_counts_responses_not_screen_sides(make_member):
    study = study_with_queue(n_prompts=3, n_candidates=3, overlap=2, blind=True)
    ann1, ann2 = make_member(study), make_member(study)
    assert _answer_everything(study, ann1, _prefer_by_id, order="ascending") == 9
    assert _answer_everything(study, ann2, _prefer_by_id, order="descending") == 9
    # Every comparison was shown the other way round to the second annotator,
    # so their screen answers (a/b) all differ while their preferences agree.
    choices = {
        annotator: dict(Judgment.objects.filter(annotator=annotator).values_list("comparison_id", "choice"))
        for annotator in (ann1, ann2)
    }
    assert all(choices[ann1][c] != choices[ann2][c] for c in choices[ann1])
    stats = analytics.study_agreement(study=study)
    assert stats.units == 9 and stats.annotators == 2 and stats.ratings == 18
    assert stats.percent_agreement == 1.0
    assert stats.krippendorff_alpha == pytest.approx(1.0)
    assert stats.fleiss_kappa == pytest.approx(1.0) and stats.cohen_kappa_mean == pytest.approx(1.0)


@pytest.mark.django_db
def test_agreement_is_among_people_an_ai_judge_is_left_out(make_member):
    """A judge that contradicts both people on every comparison would drag their
    agreement down; it is measured by its reliability instead."""
    study = study_with_queue(n_prompts=3, n_candidates=3, overlap=2, blind=True)
    ann1, ann2 = make_member(study), make_member(study)
    _answer_everything(study, ann1, _prefer_by_id, order="ascending")
    _answer_everything(study, ann2, _prefer_by_id, order="descending")
    source = GenerationSource.objects.create(study=study, name="s", base_url="http://127.0.0.1:9/v1", model="m")
    judge = ai_judge_create(study=study, source_id=source.id, name="contrarian")
    for comparison_id, ranking in Judgment.objects.filter(annotator=ann1).values_list("comparison_id", "ranking"):
        Judgment.objects.create(
            study=study,
            comparison_id=comparison_id,
            annotator=judge.user,
            choice="a",
            ranking=ranking[::-1],
            by_model=True,
        )
    stats = analytics.study_agreement(study=study)
    assert stats.annotators == 2 and stats.ratings == 18
    assert stats.percent_agreement == 1.0


@pytest.mark.django_db
def test_agreement_of_one_annotator_who_answers_by_side_is_chance_level(make_member):
    study = study_with_queue(n_prompts=4, n_candidates=3, overlap=2, blind=True)
    ann1, ann2 = make_member(study), make_member(study)
    _answer_everything(study, ann1, _prefer_by_id, order="ascending")
    _answer_everything(study, ann2, lambda shown: "a", order="descending")  # always the left one
    labels = {
        annotator: [
            analytics.ranking_pairs(r)[0][2]
            for r in Judgment.objects.filter(annotator=annotator)
            .order_by("comparison_id")
            .values_list("ranking", flat=True)
        ]
        for annotator in (ann1, ann2)
    }
    # "Left" under a descending order is always the higher id: "second".
    assert set(labels[ann2]) == {"second"}
    stats = analytics.study_agreement(study=study)
    agree = np.mean([a == b for a, b in zip(labels[ann1], labels[ann2], strict=True)])
    assert stats.percent_agreement == pytest.approx(agree)
    assert 0 < agree < 1
    assert stats.krippendorff_alpha < 0.9


@pytest.mark.django_db
def test_study_leaderboard_reads_sources_is_cached_and_refreshes_on_a_new_judgment(make_member, monkeypatch):
    # A clock that stands still: on a busy machine the first leaderboard took
    # longer than SLOW_SECONDS, and was then (rightly) served stale below.
    monkeypatch.setattr(analytics, "clock", lambda: 1_000.0)
    study = study_with_queue(n_prompts=3, n_candidates=3, overlap=1)
    for prompt_id in set(Candidate.objects.filter(study=study).values_list("prompt_id", flat=True)):
        ids = Candidate.objects.filter(prompt_id=prompt_id).order_by("id").values_list("id", flat=True)
        for cid, source in zip(ids, ["strong", "middle", "weak"], strict=True):
            Candidate.objects.filter(id=cid).update(source=source)
    rank = {"strong": 0, "middle": 1, "weak": 2}
    source_of = dict(Candidate.objects.filter(study=study).values_list("id", "source"))
    annotator = make_member(study)

    def by_source(shown):
        return "a" if rank[source_of[shown[0]]] < rank[source_of[shown[1]]] else "b"

    lease = services.assignment_lease_next(study=study, annotator=annotator)
    services.judgment_submit(
        study=study, annotator=annotator, comparison_id=lease.assignment.comparison_id, choice=by_source(
            lease.assignment.display_order)
    )  # fmt: skip
    first = analytics.study_leaderboard(study=study, n_samples=500)
    assert first.judgments == 1
    with CaptureQueriesContext(connection) as cached:
        assert analytics.study_leaderboard(study=study, n_samples=500) == first
    assert len(cached) == 1  # the fingerprint only

    _answer_everything(study, annotator, by_source)
    board = analytics.study_leaderboard(study=study, n_samples=500)
    assert board.judgments == 9
    assert [r.source for r in board.rows] == ["strong", "middle", "weak"]
    assert sum(r.p_best for r in board.rows) == pytest.approx(1.0)
    assert board.rows[0].comparisons == 6 and board.rows[0].wins == 6


@pytest.mark.django_db
def test_the_api_serves_the_dashboards_leaderboard(client_for, make_member):
    study = study_with_queue(n_prompts=3, n_candidates=3, overlap=2)
    _populate(study, annotators=2, versions=1, runs=0, make_member=make_member)
    researcher = make_member(study, Membership.Role.RESEARCHER)
    body = client_for(researcher).get(reverse("api_leaderboard", args=[study.slug])).json()
    board = analytics.study_leaderboard(study=study)
    assert len(board.rows) == 3
    assert body["models"] == [dataclasses.asdict(row) for row in board.rows]


@pytest.mark.django_db
def test_judgments_in_the_last_60_minutes_is_a_rolling_window_on_the_clock(study, annotator, monkeypatch):
    """At 12:10 the clock hour has one judgment (12:05); the last 60 minutes have
    two (11:20 and 12:05); the one at 11:00 is older."""
    now = datetime(2026, 3, 1, 12, 10, tzinfo=UTC)
    monkeypatch.setattr(analytics, "clock", lambda: now.timestamp())
    comparisons = list(Comparison.objects.filter(study=study).order_by("id"))
    for comparison, minutes in zip(comparisons, (70, 50, 5), strict=False):
        items = list(comparison.items.values_list("candidate_id", flat=True))
        judgment = Judgment.objects.create(study=study, comparison=comparison, annotator=annotator, choice="a",
                                           ranking=items)  # fmt: skip
        Judgment.objects.filter(id=judgment.id).update(created_at=now - timedelta(minutes=minutes))
    figures = analytics.study_analytics(study=study)
    assert figures.per_hour[-1].judgments == 1
    assert figures.judgments_last_hour == 2
    monkeypatch.setattr(analytics, "clock", lambda: (now + timedelta(minutes=50)).timestamp())
    assert analytics.study_analytics(study=study).judgments_last_hour == 1


@pytest.mark.django_db
def test_judgments_per_hour_buckets_the_last_hours_in_utc(study, annotator):
    now = datetime(2026, 3, 1, 12, 40, tzinfo=UTC)
    comparisons = list(Comparison.objects.filter(study=study).order_by("id"))
    stamps = [now - timedelta(minutes=m) for m in (5, 30, 50, 65, 200, 60 * 30)]
    for comparison, stamp in zip(comparisons, stamps, strict=False):
        items = list(comparison.items.values_list("candidate_id", flat=True))
        judgment = Judgment.objects.create(study=study, comparison=comparison, annotator=annotator, choice="a",
                                           ranking=items)  # fmt: skip
        Judgment.objects.filter(id=judgment.id).update(created_at=stamp)
    hours = analytics.judgments_per_hour(study=study, hours=4, now=now)
    assert [h.start.hour for h in hours] == [9, 10, 11, 12]
    # 12:35 and 12:10 this hour; 11:50 and 11:35 the hour before; 09:20; the one 30 h ago is out.
    assert [h.judgments for h in hours] == [1, 0, 2, 2]
    with pytest.raises(ValueError, match="at least 1"):
        analytics.judgments_per_hour(study=study, hours=0)


@pytest.mark.django_db
def test_simulation_runs_are_recorded_and_their_regret_read_back(study):
    assert analytics.simulation_regret(study=study) is None
    report = {
        "started_at": "2026-03-01T12:00:00+00:00",
        "wall_seconds": 12.5,
        "config": {"annotators": 3, "seed": 1},
        "utility": {"kind": "hash"},
        "totals": {"judgments_submitted": 30},
        "checkpoints": [
            {"judgments": 0, "regret": 1.0, "model_version": None},
            {"judgments": 10, "regret": 0.6, "model_version": 1},
            {"judgments": 20, "regret": None, "model_version": 2, "regret_of": "checkpoint unreadable"},
            {"judgments": 30, "regret": float("nan"), "model_version": 3},
        ],
    }
    SimulateCommand._record(study, {**report, "checkpoints": report["checkpoints"][:2]})
    run = SimulateCommand._record(study, report)
    assert run.checkpoints[3]["regret"] is None  # NaN is stored as unscored
    curve = analytics.simulation_regret(study=study)
    assert curve.run_id == run.id and curve.runs == 2 and curve.annotators == 3
    assert [(p.judgments, p.regret) for p in curve.points] == [(0, 1.0), (10, 0.6)]
    assert curve.unscored == 2 and curve.utility_kind == "hash"


# --- a populated study (also used by the dashboard's page and browser tests) ---------------------------


def _populate(study, *, annotators: int, versions: int, runs: int, make_member) -> None:
    sources = ["alpha", "beta", "gamma"]
    for k, cid in enumerate(Candidate.objects.filter(study=study).order_by("id").values_list("id", flat=True)):
        Candidate.objects.filter(id=cid).update(source=sources[k % 3])
    for _ in range(annotators):
        _answer_everything(study, make_member(study), _prefer_by_id)
    for v in range(1, versions + 1):
        RewardModelVersion.objects.create(
            study=study, version=v, model_type="mlp", embedder_key="test", n_judgments=12 * v, n_train=10 * v,
            n_heldout=30, heldout_accuracy=0.5 + 0.04 * v, heldout_accuracy_low=0.45, heldout_accuracy_high=0.77,
            fixed_evaluation=True, checkpoint_path=f"/nowhere/v{v}",
        )  # fmt: skip
    for _ in range(runs):
        SimulationRun.objects.create(
            study=study, started_at=datetime(2026, 3, 1, tzinfo=UTC), annotators=2, judgments=40,
            utility_kind="hash", checkpoints=[{"judgments": j, "regret": 1.0 - j / 50} for j in (0, 20, 40)],
        )  # fmt: skip
