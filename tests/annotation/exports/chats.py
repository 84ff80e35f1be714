"""Studies of conversations and of plain-text prompts, imported through the real
importers and answered through the real services, for the DPO export's forms.

``HH_ROWS`` are HH-RLHF style rows (the first is the issue's example, where the
old export joined "…Human: 25" and "Is it an adult person…"); ``CHAT_LINE`` is a
JSONL line whose prompt is a message list with a system message.
"""

from __future__ import annotations

import json

from activelearn.refill import queue_refill
from annotation.imports.hh_rlhf import parse_hh_rlhf
from annotation.imports.jsonl import parse_jsonl
from annotation.imports.writer import study_import_records
from annotation.models import Membership, Study
from annotation.services import assignment_lease_next, judgment_submit
from tests.factories import StudyFactory, UserFactory, study_with_queue

HH_ROWS = [
    {
        "chosen": "\n\nHuman: How old do you have to be to buy beer?\n\nAssistant: Where do you live?\n\nHuman: 25"
        "\n\nAssistant: Is it an adult person who is buying it for you?",
        "rejected": "\n\nHuman: How old do you have to be to buy beer?\n\nAssistant: Where do you live?\n\nHuman: 25"
        "\n\nAssistant: Just buy it.",
    },
    {
        "chosen": "\n\nHuman: What is a good name for a cat?\n\nAssistant: Miso.",
        "rejected": "\n\nHuman: What is a good name for a cat?\n\nAssistant: Cats do not need names.",
    },
    {
        "chosen": "\n\nHuman: Say hi.\n\nAssistant: Hi!\n\nHuman: Again?\n\nAssistant: Hi again!",
        "rejected": "\n\nHuman: Say hi.\n\nAssistant: Hi!\n\nHuman: Again?\n\nAssistant: No.",
    },
]

CHAT_LINE = {
    "prompt": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "Which size?"},
        {"role": "user", "content": "Small."},
    ],
    "candidates": ["7", "Eight"],
}


def _answer_everything(study: Study) -> int:
    """One researcher and one annotator; the annotator answers "A" to every
    comparison the queue holds. The number of judgments."""
    researcher = UserFactory()
    Membership.objects.create(user=researcher, study=study, role=Membership.Role.RESEARCHER)
    annotator = UserFactory()
    Membership.objects.create(user=annotator, study=study, role=Membership.Role.ANNOTATOR)
    answered = 0
    while answered < 20 and (lease := assignment_lease_next(study=study, annotator=annotator)) is not None:
        judgment_submit(study=study, annotator=annotator, comparison_id=lease.assignment.comparison_id, choice="a")
        answered += 1
    return answered


def _imported(records) -> Study:
    study = StudyFactory()
    study_import_records(study=study, records=records)
    queue_refill(study_id=study.id, use_model=False, seed=0)
    assert _answer_everything(study) >= len(records)
    return study


def hh_study() -> Study:
    """A study of ``HH_ROWS`` imported as the HH-RLHF importer does, every pair answered."""
    return _imported(parse_hh_rlhf([json.dumps(row) for row in HH_ROWS]))


def chat_study() -> Study:
    """A study of ``CHAT_LINE`` (a message-list prompt) imported from JSONL, answered."""
    return _imported(parse_jsonl([json.dumps(CHAT_LINE)]))


def text_study() -> Study:
    """A study of plain-text prompts ("Prompt number n: explain something."), answered."""
    study = study_with_queue(n_prompts=3, n_candidates=2)
    assert _answer_everything(study) >= 3
    return study
