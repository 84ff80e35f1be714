"""Written responses for supervised fine-tuning: every better response an
annotator wrote while answering (``Candidate.author`` set), with its prompt, in
one of the two shapes TRL's ``SFTTrainer`` reads.

``messages``
    Conversational language modelling: ``messages`` is the prompt's turns (a
    plain-text prompt is one user message) followed by the written response as
    the assistant's message. The default for a study with conversation prompts.
``prompt_completion``
    ``prompt`` and ``completion`` strings, joined by the trainer with nothing
    between them: a conversation is an HH-RLHF transcript ending in the cue
    ``"\\n\\nAssistant:"`` and the completion starts with a space, as the DPO
    text form does (``dpo`` explains why). The default for plain-text prompts.

Each record also names the candidate, its prompt, its author (pseudonymised on
request, with the same pseudonym as in the judgment exports), the response it
revises (id, source and text; empty when written from scratch), the judgment
it was written with, and when.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from annotation.exports.kinds.dpo import MESSAGES, has_conversations, hh_transcript, prompt_messages, spaced_reply
from annotation.exports.rows import PromptText, annotator_pseudonym, id_chunks
from annotation.exports.schema import INT64, STRING, TIMESTAMP, Column, Forms, RecordKind, Schema
from annotation.models import Candidate, Judgment, Study

MESSAGES_FORM = "messages"
PROMPT_COMPLETION = "prompt_completion"

_DETAILS: tuple[Column, ...] = (
    ("form", STRING),
    ("candidate_id", INT64),
    ("prompt_id", INT64),
    ("prompt_external_id", STRING),
    ("prompt_format", STRING),
    ("author", STRING),
    ("revises_id", INT64),
    ("revises_source", STRING),
    ("revises_text", STRING),
    ("judgment_id", INT64),
    ("study", STRING),
    ("created_at", TIMESTAMP),
)

MESSAGES_SCHEMA = Schema(("messages", MESSAGES), *_DETAILS)
PROMPT_COMPLETION_SCHEMA = Schema(("prompt", STRING), ("completion", STRING), *_DETAILS)

_FIELDS = (
    "id", "text", "author_id", "author__username", "revises_id", "revises__source", "revises__text", "prompt_id",
    "prompt__text", "prompt__format", "prompt__external_id", "prompt__metadata", "created_at",
)  # fmt: skip


def _shaped(form: str, prompt: PromptText, text: str) -> dict[str, Any]:
    turns = prompt_messages(prompt)
    if form == MESSAGES_FORM:
        messages = turns or [{"role": "user", "content": prompt.text}]
        return {"messages": [*messages, {"role": "assistant", "content": text}]}
    prompt_text = hh_transcript(turns) if turns else prompt.text
    return {"prompt": prompt_text, "completion": spaced_reply(text, after=prompt_text)}


def _reader(form: str) -> Callable[..., Iterator[list[dict[str, Any]]]]:
    def records(*, study: Study, pseudonymise: bool) -> Iterator[list[dict[str, Any]]]:
        """The study's written responses in id order, a chunk at a time (two queries a chunk)."""
        written = Candidate.objects.filter(study_id=study.id, author__isnull=False, prompt__isnull=False)
        for rows in id_chunks(written, _FIELDS):
            with_judgment = dict(
                Judgment.objects.filter(study_id=study.id, rewrite_id__in=[row[0] for row in rows])
                .order_by("id")
                .values_list("rewrite_id", "id")
            )
            chunk = []
            for row in rows:
                (cid, text, author_id, username, revises_id, revises_source, revises_text, prompt_id) = row[:8]
                prompt = PromptText(id=prompt_id, text=row[8], format=row[9], external_id=row[10], metadata=row[11])
                author = annotator_pseudonym(study_id=study.id, user_id=author_id) if pseudonymise else username
                chunk.append(
                    {
                        **_shaped(form, prompt, text),
                        "form": form,
                        "candidate_id": cid,
                        "prompt_id": prompt_id,
                        "prompt_external_id": prompt.external_id,
                        "prompt_format": prompt.format,
                        "author": author,
                        "revises_id": revises_id,
                        "revises_source": revises_source or "",
                        "revises_text": revises_text or "",
                        "judgment_id": with_judgment.get(cid),
                        "study": study.slug,
                        "created_at": row[12],
                    }
                )
            yield chunk

    return records


def default_form(study: Study) -> str:
    """Messages for a study of conversations, prompt/completion for plain-text prompts (as for DPO pairs)."""
    return MESSAGES_FORM if has_conversations(study) else PROMPT_COMPLETION


_NAMES = {"name": "sft", "title": "Written responses (SFT)", "noun": "written responses"}

MESSAGES_KIND = RecordKind(
    **_NAMES,
    schema=MESSAGES_SCHEMA,
    read=_reader(MESSAGES_FORM),
    form=MESSAGES_FORM,
    about=(
        "TRL's conversational SFT format: messages is the prompt's turns (a plain-text prompt is one user "
        "message) followed by the written response as the assistant's message."
    ),
)
PROMPT_COMPLETION_KIND = RecordKind(
    **_NAMES,
    schema=PROMPT_COMPLETION_SCHEMA,
    read=_reader(PROMPT_COMPLETION),
    form=PROMPT_COMPLETION,
    about=(
        "TRL's prompt-completion format, joined as prompt + completion: a conversation is an HH-RLHF transcript "
        'ending in the cue "\\n\\nAssistant:" and the completion starts with a space.'
    ),
)
KIND = Forms(choices=(MESSAGES_KIND, PROMPT_COMPLETION_KIND), default=default_form)
