import hashlib

import pytest
from django.contrib.auth import get_user_model

from activelearn import embedding
from annotation.models import Candidate, Membership, Prompt, Study

TOPICS = [
    (
        "How do I reverse a list in Python?",
        [
            "Use reversed() or slicing: xs[::-1].",
            "Call xs.reverse() to reverse in place.",
            "Lists cannot be reversed.",
            "Try a loop, maybe.",
        ],
    ),
    (
        "What causes the seasons on Earth?",
        [
            "The tilt of Earth's axis changes how directly sunlight hits each hemisphere.",
            "Distance from the Sun changes a lot during the year.",
            "Axial tilt of about 23.4 degrees.",
            "Weather.",
        ],
    ),
    ("Suggest a name for a bakery.", ["Rise & Shine Bakehouse", "The Daily Crumb", "Bread Shop", "Shop 12"]),
    (
        "Explain recursion to a child.",
        [
            "It's when something is defined using a smaller copy of itself, like nesting dolls.",
            "A function calling itself until a simple case stops it.",
            "Recursion is recursion.",
            "Ask your teacher.",
        ],
    ),
    (
        "How long should I boil an egg?",
        [
            "About 7 minutes for a jammy yolk, 10 for hard-boiled.",
            "Ten minutes, then cool it in cold water.",
            "A while.",
            "Eggs are not boiled.",
        ],
    ),
]


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@pytest.fixture
def make_study(db):
    """A pairwise study of five prompts with four candidates each, plus members.

    Its candidates are embedded, as the ``embed`` queue's task leaves them after
    an import; ``embedded=False`` leaves them as the import wrote them."""

    def make(embedded: bool = True, **fields) -> Study:
        # Every judgment trains unless a test is about the evaluation set: the
        # loop tests count fits and judgments.
        fields.setdefault("evaluation_rate", 0.0)
        # The loop's mechanics are tested on one head with a strategy it serves
        # (fast, and what a failed or frozen fit is faked on); tests about the
        # study defaults, the ensemble and double TS, ask for them.
        fields.setdefault("model_type", "mlp")
        fields.setdefault("strategy", "uncertainty")
        study = Study.objects.create(name="Loop study", slug=fields.pop("slug", "loop"), **fields)
        for prompt_text, responses in TOPICS:
            prompt = Prompt.objects.create(study=study, text=prompt_text, content_hash=_sha(prompt_text))
            Candidate.objects.bulk_create(
                Candidate(study=study, prompt=prompt, text=t, source=f"model-{k}", content_hash=_sha(prompt_text, t))
                for k, t in enumerate(responses)
            )
        if embedded:
            embedding.study_embed(study_id=study.id)
        return study

    return make


@pytest.fixture
def annotators(db):
    User = get_user_model()
    return [User.objects.create_user(f"ann{k}", password="pw-for-tests-123") for k in range(3)]


@pytest.fixture
def member(annotators):
    def add(study, users=None):
        for user in users or annotators:
            Membership.objects.get_or_create(user=user, study=study, defaults={"role": Membership.Role.ANNOTATOR})

    return add


@pytest.fixture(autouse=True)
def _checkpoints_in_tmp(settings, tmp_path):
    settings.PREFLOOP_CHECKPOINT_DIR = tmp_path / "checkpoints"


@pytest.fixture
def judge():
    """``judge(study, user, n)``: lease and answer ``n`` comparisons through the
    same services the annotation views call, always preferring the candidate
    created first. Not the answer shown first: a blind study shuffles the order
    at random for each lease, and answers that follow that shuffle make every fit
    on them (and whether it beats its starting point) differ from run to run. A
    queue that runs dry fails the test where it happens rather than as an error
    on ``None``."""
    from annotation.services import assignment_lease_next, judgment_submit

    def answer(study, user, n):
        for _ in range(n):
            lease = assignment_lease_next(study=study, annotator=user)
            assert lease is not None, "the queue ran dry"
            first, second = lease.assignment.display_order[:2]
            choice = "a" if first < second else "b"
            judgment_submit(study=study, annotator=user, comparison_id=lease.assignment.comparison_id, choice=choice)

    return answer
