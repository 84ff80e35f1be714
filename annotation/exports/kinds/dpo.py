"""DPO pairs: the preference pairs the judgments imply, with the ``prompt``,
``chosen`` and ``rejected`` columns TRL's ``DPOTrainer`` reads, plus ids and
metadata, in one of two forms.

A pair answer (A or B) gives one pair. Ties and "both bad" give none: there is
no preferred response. A ranking gives every strict pair it implies: each
response against every response in a lower place (tied responses are not paired
with each other), so a strict ranking of K gives K(K-1)/2 pairs;
``n_pairs_in_judgment`` lets a trainer weight them 1/n per judgment.
``chosen_rank``/``rejected_rank`` are the 1-based places. Pairs come from the
label the reward model learns: a reviewer's where they overturned an answer, and
none from a judgment a reviewer excluded.

The forms (the ``form`` column says which a file holds):

``conversational``
    TRL's conversational preference format: ``prompt`` is the list of
    ``{"role", "content"}`` messages (a plain-text prompt is one user message),
    ``chosen`` and ``rejected`` one assistant message each. The trainer renders
    them with the tokenizer's chat template, which puts the assistant's turn
    marker between the prompt and the reply. The default for a study with
    conversation prompts (stored as messages or as HH-RLHF transcripts), as TRL
    recommends for chat models.
``text``
    TRL's standard (plain-text) format. TRL tokenizes ``prompt + chosen`` as
    one string (``DPOTrainer._prepare_dataset`` in trl 1.16), so the boundary
    has to be in the strings: a conversation is written as an HH-RLHF
    transcript ending in the assistant cue, ``"\\n\\nHuman: …\\n\\nAssistant:"``,
    and each reply starts with a space (``" reply"``), which joined give back
    the original HH transcript; a system message comes first, before the first
    ``Human:`` turn. A plain-text prompt is kept as it is, and a reply that
    would run into it (no whitespace on either side) starts with a space, as in
    TRL's own ``{"prompt": "The sky is", "chosen": " blue."}``. The default for
    a study of plain-text prompts.

Without the cue, a trainer would learn replies that run on from the human's
last words (``…Human: 25Is it an adult…``) rather than an assistant's turn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django.db.models import Q

from annotation.exports.kinds.shared import prompt_fields
from annotation.exports.rows import JudgmentRow, PromptText, judgment_chunks
from annotation.exports.schema import (
    BOOL,
    FLOAT64,
    INT32,
    INT64,
    STRING,
    TIMESTAMP,
    Column,
    Forms,
    RecordKind,
    Schema,
    list_of,
    struct_of,
)
from annotation.models import Judgment, Prompt, Study
from annotation.rendering import conversation_messages

CONVERSATIONAL = "conversational"
TEXT = "text"

# HH-RLHF transcripts name their speakers; chat messages have roles.
_ROLE_OF_SPEAKER = {"Human": "user", "Assistant": "assistant"}
_SPEAKER_OF_ROLE = {"user": "Human", "assistant": "Assistant"}
ASSISTANT_CUE = "\n\nAssistant:"

MESSAGES = list_of(struct_of(("role", STRING), ("content", STRING)))

_DETAILS: tuple[Column, ...] = (
    ("form", STRING),
    ("prompt_format", STRING),
    ("prompt_id", INT64),
    ("prompt_external_id", STRING),
    ("chosen_id", INT64),
    ("rejected_id", INT64),
    ("chosen_source", STRING),
    ("rejected_source", STRING),
    ("chosen_rank", INT32),
    ("rejected_rank", INT32),
    ("n_pairs_in_judgment", INT32),
    ("judgment_id", INT64),
    ("comparison_id", INT64),
    ("study", STRING),
    ("annotator", STRING),
    ("annotator_kind", STRING),
    ("choice", STRING),
    ("strength", STRING),
    ("is_gold", BOOL),
    ("strategy", STRING),
    ("model_version", INT64),
    ("score", FLOAT64),
    ("propensity", FLOAT64),
    ("created_at", TIMESTAMP),
)

CONVERSATIONAL_SCHEMA = Schema(("prompt", MESSAGES), ("chosen", MESSAGES), ("rejected", MESSAGES), *_DETAILS)
TEXT_SCHEMA = Schema(("prompt", STRING), ("chosen", STRING), ("rejected", STRING), *_DETAILS)


# --- the prompt and replies in each form ----------------------------------------------


def prompt_messages(prompt: PromptText | None) -> list[dict[str, str]] | None:
    """The prompt's turns as chat messages when it is a conversation (stored as
    JSON messages, or as an HH-RLHF transcript "Human: …\\n\\nAssistant: …"),
    else None: a plain-text prompt."""
    if prompt is None:
        return None
    turns = conversation_messages(prompt.text, declared=prompt.format == Prompt.Format.CONVERSATION)
    if not turns:
        return None
    return [{"role": _ROLE_OF_SPEAKER.get(turn.role, turn.role), "content": turn.content} for turn in turns]


def hh_transcript(messages: list[dict[str, str]]) -> str:
    """A conversation as an HH-RLHF prompt: each turn "\\n\\nHuman: …" or
    "\\n\\nAssistant: …", ending in the cue "\\n\\nAssistant:" for the reply.

    A leading system message is its text before the first turn (where
    Anthropic's text format put it); any other role is named as it is.
    """
    parts = []
    for index, message in enumerate(messages):
        role, content = message["role"], message["content"]
        if role == "system" and index == 0:
            parts.append(content)
        else:
            parts.append(f"\n\n{_SPEAKER_OF_ROLE.get(role, role.capitalize())}: {content}")
    return "".join(parts) + ASSISTANT_CUE


def spaced_reply(reply: str, *, after: str) -> str:
    """``reply`` with a space in front when it would otherwise run into ``after``
    (TRL joins prompt and reply with nothing between them)."""
    if after and not after[-1].isspace() and not reply[:1].isspace():
        return " " + reply
    return reply


Pair = Callable[[str, str], tuple[Any, Any, Any]]


def conversational_pair(prompt: PromptText | None) -> Pair:
    """For one prompt: (chosen text, rejected text) → the conversational
    ``prompt``, ``chosen`` and ``rejected``."""
    messages = prompt_messages(prompt) or [{"role": "user", "content": prompt.text if prompt else ""}]

    def pair(chosen: str, rejected: str) -> tuple[Any, Any, Any]:
        return messages, [{"role": "assistant", "content": chosen}], [{"role": "assistant", "content": rejected}]

    return pair


def text_pair(prompt: PromptText | None) -> Pair:
    """For one prompt: (chosen text, rejected text) → the text ``prompt``,
    ``chosen`` and ``rejected`` (see the module docstring)."""
    messages = prompt_messages(prompt)
    text = hh_transcript(messages) if messages else (prompt.text if prompt else "")

    def pair(chosen: str, rejected: str) -> tuple[Any, Any, Any]:
        return text, spaced_reply(chosen, after=text), spaced_reply(rejected, after=text)

    return pair


def has_conversations(study: Study) -> bool:
    """Whether any of the study's prompts is a conversation (JSON messages, or
    an HH-RLHF transcript as the HH importer stores it): one query."""
    conversations = (
        Q(format=Prompt.Format.CONVERSATION) | Q(text__startswith="Human:") | Q(text__startswith="\n\nHuman:")
    )
    return Prompt.objects.filter(conversations, study_id=study.id).exists()


def default_form(study: Study) -> str:
    """Conversational when the study's prompts are conversations (``has_conversations``):
    what TRL recommends for chat models, and the trainer then needs no convention for
    where a turn ends. Text for plain-text prompts, which are not turns of a chat."""
    return CONVERSATIONAL if has_conversations(study) else TEXT


# --- records ----------------------------------------------------------------------


def dpo_records(study: Study, row: JudgmentRow, *, form: str = TEXT) -> list[dict[str, Any]]:
    """Every strict pair one judgment implies (see the module docstring), in ``form``."""
    if row.choice in (Judgment.Choice.TIE, Judgment.Choice.BOTH_BAD):
        return []
    pairs = [
        (better, worse, upper + 1, lower + 1)
        for upper, high in enumerate(row.groups)
        for lower in range(upper + 1, len(row.groups))
        for better in high
        for worse in row.groups[lower]
    ]
    prompt = prompt_fields(row.prompt)
    shape = (conversational_pair if form == CONVERSATIONAL else text_pair)(row.prompt)
    records = []
    for better, worse, better_rank, worse_rank in pairs:
        chosen, rejected = row.candidates.get(better), row.candidates.get(worse)
        prompt_value, chosen_value, rejected_value = shape(
            chosen.text if chosen else "", rejected.text if rejected else ""
        )
        records.append(
            {
                "prompt": prompt_value,
                "chosen": chosen_value,
                "rejected": rejected_value,
                "form": form,
                "prompt_format": prompt["prompt_format"],
                "prompt_id": prompt["prompt_id"],
                "prompt_external_id": prompt["prompt_external_id"],
                "chosen_id": better,
                "rejected_id": worse,
                "chosen_source": chosen.source if chosen else "",
                "rejected_source": rejected.source if rejected else "",
                "chosen_rank": better_rank,
                "rejected_rank": worse_rank,
                "n_pairs_in_judgment": len(pairs),
                "judgment_id": row.id,
                "comparison_id": row.comparison_id,
                "study": study.slug,
                "annotator": row.annotator,
                "annotator_kind": row.annotator_kind,
                "choice": row.choice,
                "strength": row.strength,
                "is_gold": row.chosen_by.is_gold,
                "strategy": row.chosen_by.strategy,
                "model_version": row.chosen_by.model_version,
                "score": row.chosen_by.score,
                "propensity": row.chosen_by.propensity,
                "created_at": row.created_at,
            }
        )
    return records


def _reader(form: str) -> Callable[..., Iterator[list[dict[str, Any]]]]:
    def records(*, study: Study, pseudonymise: bool) -> Iterator[list[dict[str, Any]]]:
        """The pairs of every judgment, in judgment id order, a chunk of judgments at a time."""
        for chunk in judgment_chunks(study, pseudonymise=pseudonymise, adjudicated=True):
            yield [record for row in chunk for record in dpo_records(study, row, form=form)]

    return records


_NAMES = {"name": "dpo", "title": "DPO pairs", "noun": "preference pairs"}

CONVERSATIONAL_KIND = RecordKind(
    **_NAMES,
    schema=CONVERSATIONAL_SCHEMA,
    read=_reader(CONVERSATIONAL),
    form=CONVERSATIONAL,
    about=(
        "TRL's conversational format: prompt is a list of {role, content} messages (a plain-text prompt is one "
        "user message), chosen and rejected one assistant message each; the trainer renders them with the "
        "tokenizer's chat template."
    ),
)
TEXT_KIND = RecordKind(
    **_NAMES,
    schema=TEXT_SCHEMA,
    read=_reader(TEXT),
    form=TEXT,
    about=(
        "TRL's standard text format, which the trainer joins as prompt + chosen: a conversation is an HH-RLHF "
        'transcript ending in the cue "\\n\\nAssistant:" and each reply starts with a space; a plain-text prompt '
        "is kept as it is, and a reply that would run into it starts with a space."
    ),
)
KIND = Forms(choices=(CONVERSATIONAL_KIND, TEXT_KIND), default=default_form)
