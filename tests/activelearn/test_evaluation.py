"""Held-out figures a researcher can trust, measured through the real loop.

Judgments are answered with ``judgment_submit`` and everything after it is the
loop itself: the on-commit hook asks for a retrain, the retrain task fits and
publishes (or declines to), the refill task queues the new model's picks. Celery
runs the tasks in-process (eager), so each answer's follow-ups finish before the
next answer.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from activelearn import embedding, refill
from annotation.models import Candidate, Membership, Prompt, RewardModelVersion, Study
from annotation.services import assignment_lease_next, judgment_submit
from models_runtime.simulate import PreferenceOracle
from webapp.celery import app as celery_app

pytestmark = [pytest.mark.django_db, pytest.mark.loop]

TOPICS = [
    "reversing a list in Python", "the seasons on Earth", "naming a bakery", "recursion", "boiling an egg",
    "tides", "compound interest", "photosynthesis", "the French revolution", "black holes", "sourdough",
    "password managers", "running shoes", "the water cycle", "learning a language", "composting",
    "the stock market", "volcanoes", "jet lag", "git rebase", "vaccines", "chess openings",
    "bicycle repair", "coffee brewing", "the moon landing", "houseplants", "budgeting", "sleep",
    "rainbows", "earthquakes",
]  # fmt: skip
# Four responses per topic, best first: a clear quality ladder the embeddings can see.
LADDER = [
    "Here is a clear, accurate and friendly explanation of {t}, with one worked example.",
    "A short but correct note on {t}.",
    "Something about {t}, I think, not sure.",
    "I refuse to talk about {t}. Go away.",
]


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@pytest.fixture
def eager_tasks(settings):
    """Run the loop's Celery tasks in-process when they are enqueued, at the
    default retrain cadence."""
    settings.PREFLOOP_RETRAIN_MIN_NEW, settings.PREFLOOP_RETRAIN_GROWTH = 5, 0.1
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def _ladder_study(slug: str, **fields) -> tuple[Study, dict[int, float]]:
    """A pairwise study of 30 topics × 4 responses (180 possible pairs), and each
    candidate's hidden utility (3 for the best rung of the ladder … 0 for the worst)."""
    study = Study.objects.create(
        name=slug, slug=slug, budget=10_000, queue_target=10, queue_low_water=4, strategy="uncertainty", **fields
    )
    utility: dict[int, float] = {}
    for topic in TOPICS:
        prompt = Prompt.objects.create(study=study, text=f"Tell me about {topic}.", content_hash=_sha(topic))
        for rung, template in enumerate(LADDER):
            text = template.format(t=topic)
            candidate = Candidate.objects.create(
                study=study, prompt=prompt, text=text, source=f"model-{rung}", content_hash=_sha(topic, text)
            )
            utility[candidate.id] = float(len(LADDER) - 1 - rung)
    embedding.study_embed(study_id=study.id)  # as the embed queue leaves an import
    refill.queue_refill(study_id=study.id, seed=0)
    return study, utility


def _answer(study, user, n, choose, django_capture_on_commit_callbacks) -> None:
    """Lease and answer ``n`` comparisons; each answer's loop work runs on commit."""
    for _ in range(n):
        with django_capture_on_commit_callbacks(execute=True):
            lease = assignment_lease_next(study=study, annotator=user)
            assert lease is not None, "the queue ran dry"
            comparison = lease.assignment.comparison
            shown = list(lease.assignment.display_order) or list(
                comparison.items.order_by("position").values_list("candidate_id", flat=True)
            )
        with django_capture_on_commit_callbacks(execute=True):
            judgment_submit(study=study, annotator=user, comparison_id=comparison.id, choice=choose(shown))


def _wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


SEEDS = (0, 1, 2, 3)
RANDOM_JUDGMENTS = 60
CLEAR_JUDGMENTS = 90


def test_random_answers_show_chance_accuracy(eager_tasks, django_capture_on_commit_callbacks):
    """Answers that carry no information cannot be predicted. Pooled over four
    seeds, the live models' accuracy on the evaluation judgments stays within
    chance's 95% interval, and the versions that show a figure show no inflated one.
    (Before the fixed evaluation set, versions showed 0.8–1.0: the held-out part
    was drawn anew at each fit, from judgments the warm-started model had already
    trained on.) Fits on noise mostly do not beat their starting point, so few
    versions are published, and a figure is shown only from 20 evaluation
    judgments; the pooled check reads each live version's evaluation record,
    which keeps the count and accuracy even below that."""
    user = get_user_model().objects.create_user("random-answerer")
    correct, scored, shown = 0.0, 0, []
    for seed in SEEDS:
        study, _ = _ladder_study(f"random-{seed}", evaluation_rate=0.5)
        Membership.objects.create(user=user, study=study, role=Membership.Role.ANNOTATOR)
        coin = np.random.default_rng(seed)
        _answer(
            study,
            user,
            RANDOM_JUDGMENTS,
            lambda _, c=coin: str(c.choice(["a", "b"])),
            django_capture_on_commit_callbacks,
        )
        versions = list(RewardModelVersion.objects.filter(study=study).order_by("version"))
        assert versions, f"seed {seed}: no version at all"
        shown += [(v.heldout_accuracy, v.n_heldout) for v in versions if v.heldout_accuracy is not None]
        record = versions[-1].metrics["evaluation"]
        if record["n"]:
            correct += record["accuracy"] * record["n"]
            scored += int(record["n"])
    assert scored >= 40, scored
    # Not inflated: inside chance's 99.9% interval from above (the leak this guards
    # against showed 0.8-1.0; a 95% bound fails one honest model in twenty, as the
    # kernel model's 0.596 on 109 coin flips did: no answer it saw can predict a
    # fresh coin); far below chance would be a scoring bug.
    accuracy, half = correct / scored, 0.5 / math.sqrt(scored)
    assert accuracy <= 0.5 + 3.29 * half, f"pooled live accuracy {accuracy:.3f} on {scored}: above chance's interval"
    assert accuracy >= 0.5 - 3.29 * half, f"pooled live accuracy {accuracy:.3f} on {scored}: far below chance"
    # The shown figures: under chance each is 0.5 ± 0.5/sqrt(n) (n its evaluation
    # count). They share judgments, so their mean is bounded with the mean of their
    # standard errors (the perfectly correlated worst case), one-sided at 99%. The
    # inflated figures this guards against were 0.8-1.0 on every version.
    if shown:
        mean = float(np.mean([a for a, _ in shown]))
        bound = 0.5 + 2.33 * float(np.mean([0.5 / math.sqrt(n) for _, n in shown]))
        assert mean <= bound, f"versions show {mean:.3f} on average for random answers (bound {bound:.3f})"


def test_a_clear_utility_shows_accuracy_above_chance(eager_tasks, django_capture_on_commit_callbacks):
    """Answers from a simulated annotator who follows a clear hidden utility (the
    quality ladder, Bradley–Terry with scale 3) are predictable: the live model's
    held-out accuracy and its whole 95% interval lie above chance."""
    user = get_user_model().objects.create_user("careful-answerer")
    study, utility = _ladder_study("clear", evaluation_rate=0.5)
    Membership.objects.create(user=user, study=study, role=Membership.Role.ANNOTATOR)
    ids = sorted(utility)
    row = {cid: i for i, cid in enumerate(ids)}
    oracle = PreferenceOracle(np.array([utility[c] for c in ids]), scale=3.0)
    rng = np.random.default_rng(0)

    def choose(shown):
        first = oracle.answer_pairs(np.array([row[shown[0]]]), np.array([row[shown[1]]]), rng)[0]
        return "a" if first == 1.0 else "b"

    # Enough answers that a published version has 20 evaluation judgments
    # whichever pairs the refills happened to draw (with 60, the study's default
    # ensemble could end on a fit that did not improve, whose predecessor had 18).
    _answer(study, user, CLEAR_JUDGMENTS, choose, django_capture_on_commit_callbacks)
    live = RewardModelVersion.objects.filter(study=study, heldout_accuracy__isnull=False).order_by("-version").first()
    assert live is not None
    low, _ = _wilson(live.heldout_accuracy * live.n_heldout, live.n_heldout)
    assert live.heldout_accuracy > 0.75 and low > 0.5, (live.heldout_accuracy, live.n_heldout, low)
    # The study left the label-flip rate unset, so a kind with a flip parameter
    # learned it: small, as this annotator never flips an answer. The default kernel
    # kind has none (its evidence-chosen prior scale plays that part), and says how
    # sharp it found the crowd instead.
    if live.model_type == "kernel":
        assert live.metrics["prior_sd"] >= 3.0, live.metrics
    else:
        assert 0.0 < live.metrics["flip_rate"] < 0.1, live.metrics["flip_rate"]
