"""Reads of the annotate page: the annotator's progress and the comparison as they see it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import Count, Q
from django.http import Http404
from django.utils.safestring import SafeString

from annotation.models import (
    Assignment,
    Candidate,
    Comparison,
    ComparisonItem,
    InstructionOutput,
    Judgment,
    Prompt,
    Study,
    TaskInput,
    in_display_order,
)
from annotation.rendering import (
    Message,
    TextFormat,
    conversation_messages,
    diff_html,
    messages_preview,
    safe_image_url,
    text_preview,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    AnyUser = AbstractBaseUser | AnonymousUser

# Shown in place of a prompt-optimisation response that does not exist (never
# expected: the refill compares only instructions whose responses exist).
MISSING_OUTPUT = "(This instruction's response is missing: skip this comparison.)"


@dataclass(frozen=True)
class StudyProgress:
    mine: int
    total: int
    budget: int
    quota: int | None = None

    @property
    def quota_reached(self) -> bool:
        return self.quota is not None and self.mine >= self.quota

    @property
    def finished(self) -> bool:
        """Nothing more will come for this annotator: completion code time."""
        return self.budget_reached or self.quota_reached

    @property
    def percent(self) -> int:
        if self.budget <= 0:
            return 100
        return min(100, round(100 * self.total / self.budget))

    @property
    def budget_reached(self) -> bool:
        return self.total >= self.budget


def study_progress(*, study: Study, user: AnyUser) -> StudyProgress:
    """This annotator's judgments, everyone's judgments and the budget, in one
    query (people's judgments: AI judges' answers spend no budget)."""
    counts = Judgment.objects.filter(study=study, by_model=False).aggregate(
        total=Count("id"), mine=Count("id", filter=Q(annotator_id=user.pk))
    )
    return StudyProgress(mine=counts["mine"], total=counts["total"], budget=study.budget, quota=study.annotator_quota)


@dataclass(frozen=True)
class PromptDisplay:
    """The prompt as the page shows it: whole, or for a long one its start and
    end (``hidden_chars`` left out, loaded on demand), never more than the
    ``rendering.PREVIEW_*_CHARS`` limits."""

    format: str
    text: str
    messages: tuple[Message, ...] = ()
    hidden_chars: int = 0
    hidden_turns: int = 0
    first_hidden_at: int = 0
    size_bytes: int = 0

    @property
    def is_conversation(self) -> bool:
        return bool(self.messages)

    @property
    def is_markdown(self) -> bool:
        return self.format == Prompt.Format.MARKDOWN

    @property
    def truncated(self) -> bool:
        return self.hidden_chars > 0


@dataclass(frozen=True)
class CandidateDisplay:
    label: str
    position: int  # on the annotator's screen: 0 is A
    text: str
    source: str = ""  # the model's name; empty in blind studies
    messages: tuple[Message, ...] = ()
    image_url: str = ""
    # The text with the words that differ from the other candidate marked.
    diff: SafeString | None = None


@dataclass(frozen=True)
class ComparisonDisplay:
    comparison_id: int
    prompt: PromptDisplay | None
    candidates: tuple[CandidateDisplay, ...]
    # How texts are read (rendering.TextFormat): Markdown when the prompt is
    # declared Markdown, else decided text by text.
    text_format: str = TextFormat.AUTO
    # The candidates are responses to a prompt (not a prompt-optimisation
    # comparison's outputs of instructions): they can be marked and rewritten.
    responses: bool = True

    @property
    def has_diff(self) -> bool:
        return any(c.diff is not None for c in self.candidates)


def comparison_for_display(
    *, assignment: Assignment, blind: bool = True, highlight_diff: bool = False, whole_prompt: bool = False
) -> ComparisonDisplay:
    """The leased comparison as the annotator sees it: prompt, then candidates A, B, … by position.

    One query (items joined to their candidate, comparison and prompt).
    Conversations are split into turns (JSON message lists, and HH-RLHF
    "Human: … Assistant: …" transcripts in prompts or responses); a candidate
    with an ``image`` URL in its metadata shows the image. With
    ``highlight_diff`` a pair also carries both texts with their differing
    words marked. Items come in the annotator's own order (the assignment's
    ``display_order``); model names are shown only when not ``blind``. A long
    prompt is cut to a preview unless ``whole_prompt``.
    """
    items = _shown_items(assignment.comparison_id)
    rank = {cid: k for k, cid in enumerate(in_display_order([i.candidate_id for i in items], assignment.display_order))}
    items.sort(key=lambda item: rank[item.candidate_id])
    prompt = None
    if items and items[0].prompt is not None:
        prompt = prompt_for_display(prompt=items[0].prompt, whole=whole_prompt)
    if items and items[0].task_input is not None:
        # Prompt optimisation: the task input and what each instruction answered, never the instructions.
        prompt = prompt_for_display(prompt=Prompt(text=items[0].task_input), whole=whole_prompt)
        items = [
            dataclasses.replace(item, text=item.output if item.output is not None else MISSING_OUTPUT, metadata={})
            for item in items
        ]
    diffs: list[SafeString | None] = [None] * len(items)
    if highlight_diff and len(items) == 2:
        diffs = list(diff_html(items[0].text, items[1].text))
    candidates = tuple(
        CandidateDisplay(
            label=chr(ord("A") + index),
            position=index,
            text=item.text,
            source="" if blind else item.source,
            messages=conversation_messages(item.text),
            image_url=safe_image_url(item.metadata.get("image") if isinstance(item.metadata, dict) else None),
            diff=diffs[index],
        )
        for index, item in enumerate(items)
    )
    text_format = TextFormat.MARKDOWN if prompt and prompt.is_markdown else TextFormat.AUTO
    return ComparisonDisplay(
        comparison_id=assignment.comparison_id,
        prompt=prompt,
        candidates=candidates,
        text_format=text_format,
        responses=bool(items) and items[0].task_input is None,
    )


@dataclass(frozen=True)
class _ShownItem:
    candidate_id: int
    text: str
    source: str
    metadata: object
    prompt: Prompt | None  # the comparison's (the same on every item)
    task_input: str | None = None  # a prompt-optimisation comparison's input
    output: str | None = None  # and what this item's instruction answered to it


def _shown_items(comparison_id: int) -> list[_ShownItem]:
    """A comparison's items in stored order with their candidates and its
    prompt: one statement, written out in SQL (every comparison an annotator
    sees is read here; the ORM built three model instances per item)."""
    item, candidate, comparison, prompt, task_input, output = (
        model._meta.db_table for model in (ComparisonItem, Candidate, Comparison, Prompt, TaskInput, InstructionOutput)
    )
    sql = f"""
        SELECT i.candidate_id, k.text, k.source, k.metadata, p.id, p.text, p.format, t.text, o.text
        FROM {item} i
        JOIN {candidate} k ON k.id = i.candidate_id
        JOIN {comparison} c ON c.id = i.comparison_id
        LEFT JOIN {prompt} p ON p.id = c.prompt_id
        LEFT JOIN {task_input} t ON t.id = c.task_input_id
        LEFT JOIN {output} o ON o.candidate_id = i.candidate_id AND o.task_input_id = c.task_input_id
        WHERE i.comparison_id = %s
        ORDER BY i.position
    """  # table names come from model metadata; the id is a parameter
    with connection.cursor() as cursor:
        cursor.execute(sql, [comparison_id])
        rows = cursor.fetchall()
    shown_prompt = None
    if rows and rows[0][4] is not None:
        shown_prompt = Prompt(id=rows[0][4], text=rows[0][5], format=rows[0][6])
    return [
        _ShownItem(
            candidate_id=candidate_id,
            text=text,
            source=source,
            metadata=json.loads(metadata) if isinstance(metadata, str) else metadata,
            prompt=shown_prompt,
            task_input=task_text,
            output=output_text,
        )
        for candidate_id, text, source, metadata, _, _, _, task_text, output_text in rows
    ]


def prompt_for_display(*, prompt: Prompt, whole: bool = False) -> PromptDisplay:
    """A prompt as the annotate page shows it: split into turns when it is a
    conversation, and cut to its start and end when long, unless ``whole``."""
    messages = conversation_messages(prompt.text, declared=prompt.format == Prompt.Format.CONVERSATION)
    size = len(prompt.text.encode())
    if whole:
        return PromptDisplay(format=prompt.format, text=prompt.text, messages=messages, size_bytes=size)
    preview = messages_preview(messages) if messages else text_preview(prompt.text)
    return PromptDisplay(
        format=prompt.format,
        text=preview.text,
        messages=preview.messages,
        hidden_chars=preview.hidden_chars,
        hidden_turns=preview.hidden_turns,
        first_hidden_at=preview.hidden_at,
        size_bytes=size,
    )


def prompt_for_annotator(*, study: Study, user: AnyUser, comparison_id: int) -> Prompt:
    """The prompt of a comparison given to ``user`` in ``study``, else Http404:
    the whole of a long prompt is served only to whom its comparison went."""
    assignment = (
        Assignment.objects.filter(study=study, annotator_id=user.pk, comparison_id=comparison_id)
        .select_related("comparison__prompt")
        .first()
    )
    if assignment is None or assignment.comparison.prompt is None:
        raise Http404("No such comparison.")
    return assignment.comparison.prompt
