"""Reads of the annotate page: the annotator's progress and the comparison as they see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import Count, Q
from django.utils.safestring import SafeString

from annotation.models import Assignment, ComparisonItem, Judgment, Prompt, Study, in_display_order
from annotation.rendering import Message, conversation_messages, diff_html, safe_image_url

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    AnyUser = AbstractBaseUser | AnonymousUser


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
    """This annotator's judgments, everyone's judgments and the budget, in one query."""
    counts = Judgment.objects.filter(study=study).aggregate(
        total=Count("id"), mine=Count("id", filter=Q(annotator_id=user.pk))
    )
    return StudyProgress(mine=counts["mine"], total=counts["total"], budget=study.budget, quota=study.annotator_quota)


@dataclass(frozen=True)
class PromptDisplay:
    format: str
    text: str
    messages: tuple[Message, ...] = ()

    @property
    def is_conversation(self) -> bool:
        return bool(self.messages)

    @property
    def is_markdown(self) -> bool:
        return self.format == Prompt.Format.MARKDOWN


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

    @property
    def has_diff(self) -> bool:
        return any(c.diff is not None for c in self.candidates)


def comparison_for_display(
    *, assignment: Assignment, blind: bool = True, highlight_diff: bool = False
) -> ComparisonDisplay:
    """The leased comparison as the annotator sees it: prompt, then candidates A, B, … by position.

    One query (items joined to their candidate, comparison and prompt).
    Conversations are split into turns (JSON message lists, and HH-RLHF
    "Human: … Assistant: …" transcripts in prompts or responses); a candidate
    with an ``image`` URL in its metadata shows the image. With
    ``highlight_diff`` a pair also carries both texts with their differing
    words marked. Items come in the annotator's own order (the assignment's
    ``display_order``); model names are shown only when not ``blind``.
    """
    items = list(
        ComparisonItem.objects.filter(comparison_id=assignment.comparison_id)
        .select_related("candidate", "comparison__prompt")
        .order_by("position")
    )
    rank = {cid: k for k, cid in enumerate(in_display_order([i.candidate_id for i in items], assignment.display_order))}
    items.sort(key=lambda item: rank[item.candidate_id])
    prompt = None
    if items and items[0].comparison.prompt is not None:
        row = items[0].comparison.prompt
        messages = conversation_messages(row.text, declared=row.format == Prompt.Format.CONVERSATION)
        prompt = PromptDisplay(format=row.format, text=row.text, messages=messages)
    diffs: list[SafeString | None] = [None] * len(items)
    if highlight_diff and len(items) == 2:
        diffs = list(diff_html(items[0].candidate.text, items[1].candidate.text))
    candidates = tuple(
        CandidateDisplay(
            label=chr(ord("A") + index),
            position=index,
            text=item.candidate.text,
            source="" if blind else item.candidate.source,
            messages=conversation_messages(item.candidate.text),
            image_url=safe_image_url((item.candidate.metadata or {}).get("image")),
            diff=diffs[index],
        )
        for index, item in enumerate(items)
    )
    return ComparisonDisplay(comparison_id=assignment.comparison_id, prompt=prompt, candidates=candidates)
