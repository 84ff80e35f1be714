"""Reads of the review pages: the queue, one item with its answers and
history, and an annotator's own recent answers. A fixed number of queries
per page, whatever the size of the study."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db.models import Count, Q
from django.http import Http404
from django.utils import timezone

from annotation.models import (
    REVIEW_REASONS,
    REVIEW_RULES,
    Assignment,
    ComparisonItem,
    Judgment,
    JudgmentChange,
    Membership,
    ReviewItem,
    Study,
)
from annotation.selectors.annotating import ComparisonDisplay, comparison_for_display

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

REVIEW_PAGE_SIZE = 25
ANSWERS_PAGE_SIZE = 25
_LETTERS = "ABCDEFGH"


def letter_of(index: int) -> str:
    """A, B, … Z, then AA, AB, …: the letter of the ``index``-th response (0 = A)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def answer_letters(choice: str, ranking: list | None, order: list[int]) -> str:
    """An answer in the letters of ``order`` (candidate ids, A first): ``B>A``,
    ``A=B`` for a tie, ``A=B (both bad)``."""
    letter = {cid: letter_of(i) for i, cid in enumerate(order)}
    places = []
    for group in ranking or []:
        ids = group if isinstance(group, list) else [group]
        places.append("=".join(sorted(letter.get(int(c), "?") for c in ids)))
    text = ">".join(places)
    return f"{text} (both bad)" if choice == Judgment.Choice.BOTH_BAD else text


def _rule_label(rule: str) -> str:
    return REVIEW_REASONS.get(rule, rule)


@dataclass(frozen=True)
class QueueRow:
    item: ReviewItem
    prompt_excerpt: str
    rules: tuple[str, ...]
    answers: int


@dataclass(frozen=True)
class ReviewQueue:
    page: Page
    rows: list[QueueRow]
    status: str
    rule: str
    counts: dict[str, int]  # "open", "resolved", and open items per rule
    rules: list[tuple[str, str]]


def review_queue(*, study: Study, status: str = "open", rule: str = "", page: int = 1) -> ReviewQueue:
    """The study's review items, oldest open first (newest resolved first), with
    the counts the tabs show. Four queries."""
    status = status if status in ReviewItem.Status.values else ReviewItem.Status.OPEN
    rule = rule if rule in REVIEW_RULES else ""
    items = ReviewItem.objects.filter(study=study, status=status)
    if rule:
        # The JSON as text holds '"rule": "<rule>"' on both PostgreSQL and SQLite.
        items = items.filter(reasons__icontains=f'"rule": "{rule}"')
    items = items.order_by("id" if status == ReviewItem.Status.OPEN else "-resolved_at", "id")
    counts = dict(
        ReviewItem.objects.filter(study=study).values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    per_rule: Counter[str] = Counter()
    for reasons in ReviewItem.objects.filter(study=study, status=ReviewItem.Status.OPEN).values_list(
        "reasons", flat=True
    ):
        per_rule.update({r.get("rule") for r in reasons or []})
    paginator = Paginator(
        items.select_related("comparison__prompt").annotate(
            n_answers=Count("comparison__judgments", filter=Q(comparison__judgments__by_model=False))
        ),
        REVIEW_PAGE_SIZE,
    )
    shown = paginator.get_page(page)
    rows = [
        QueueRow(
            item=item,
            prompt_excerpt=shorten(item.comparison.prompt.text, 160) if item.comparison.prompt else "",
            rules=tuple(dict.fromkeys(_rule_label(r.get("rule", "")) for r in item.reasons or [])),
            answers=item.n_answers,
        )
        for item in shown.object_list
    ]
    return ReviewQueue(
        page=shown,
        rows=rows,
        status=status,
        rule=rule,
        counts={"open": counts.get("open", 0), "resolved": counts.get("resolved", 0), **per_rule},
        rules=[
            (key, label) for key, label in REVIEW_RULES.items() if key in (study.review_rules or []) or per_rule[key]
        ],
    )


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def feedback_flags(judgment: Judgment, letter: Mapping[int, str]) -> list[str]:
    """A judgment's richer feedback in a page's letters (candidate id → letter):
    issue tags ("B: unsafe, off topic") and tagged spans ("B “Sydney”: factual error")."""
    tags = [f"{letter.get(int(cid), '?')}: {', '.join(names)}" for cid, names in sorted(judgment.response_tags.items())]
    spans = [f"{letter.get(span['candidate_id'], '?')} “{span['text']}”: {span['tag']}" for span in judgment.spans]
    return tags + spans


@dataclass(frozen=True)
class AnswerRow:
    judgment: Judgment
    annotator: str
    by_model: bool
    answer: str  # in the review page's letters (A = first by position)
    shown_as: str  # the order the annotator saw, in the same letters
    adjudicated: str
    reasons: tuple[str, ...]
    flags: tuple[str, ...] = ()  # issue tags and tagged spans it gave (feedback_flags)


@dataclass(frozen=True)
class HistoryRow:
    change: JudgmentChange
    by: str
    annotator: str
    before: str
    after: str


@dataclass(frozen=True)
class ReviewDetail:
    item: ReviewItem
    comparison: ComparisonDisplay
    answers: list[AnswerRow]
    history: list[HistoryRow]
    options: list[dict[str, str]]  # the verdict buttons: value, label, key
    pairwise: bool
    next_open_id: int | None
    gold: str = ""
    reasons: list[dict[str, Any]] = field(default_factory=list)


def _names(study: Study, user_ids: set[int]) -> dict[int, str]:
    """How the review pages name people: a crowd id when they came with one, else the username."""
    names: dict[int, str] = {}
    for user_id, external_id, username, judge in Membership.objects.filter(
        study=study, user_id__in=user_ids
    ).values_list("user_id", "external_id", "user__username", "user__ai_judge__name"):
        names[user_id] = f"{judge} (AI judge)" if judge else external_id or username
    for user_id, username, judge in (
        get_user_model().objects.filter(id__in=user_ids - set(names)).values_list("id", "username", "ai_judge__name")
    ):
        names[user_id] = f"{judge} (AI judge)" if judge else username
    return names


def review_item_detail(*, study: Study, item_id: int) -> ReviewDetail:
    """One review item: the comparison (whole prompt, items in their stored
    order as A, B, …), every answer given to it with the reasons it was sent,
    its history and the verdict options. Http404 for another study's item."""
    item = ReviewItem.objects.filter(id=item_id, study=study).select_related("comparison").first()
    if item is None:
        raise Http404("No such review item.")
    comparison = item.comparison
    order = list(
        ComparisonItem.objects.filter(comparison=comparison).order_by("position").values_list("candidate_id", flat=True)
    )
    display = comparison_for_display(
        assignment=Assignment(comparison_id=comparison.id, display_order=order),
        blind=study.blind,
        whole_prompt=True,
    )
    judgments = list(Judgment.objects.filter(comparison=comparison).order_by("by_model", "id"))
    changes = list(JudgmentChange.objects.filter(judgment__comparison=comparison).order_by("-id")[:200])
    names = _names(study, {j.annotator_id for j in judgments} | {c.by_id for c in changes if c.by_id})
    why: dict[int, list[str]] = {}
    for reason in item.reasons or []:
        why.setdefault(reason.get("judgment"), []).append(
            f"{_rule_label(reason.get('rule', ''))}: {reason.get('detail', '')}"
        )
    answers = [
        AnswerRow(
            judgment=j,
            annotator=names.get(j.annotator_id, f"user {j.annotator_id}"),
            by_model=j.by_model,
            answer=answer_letters(j.choice, j.ranking, order),
            shown_as="".join(_LETTERS[order.index(int(c))] for c in j.shown_order or [] if int(c) in order),
            adjudicated=answer_letters(j.adjudicated_choice, j.adjudicated_ranking, order)
            if j.review_state == Judgment.ReviewState.OVERTURNED
            else "",
            reasons=tuple(why.get(j.id, ())),
            flags=tuple(feedback_flags(j, {cid: _LETTERS[k] for k, cid in enumerate(order)})),
        )
        for j in judgments
    ]
    owner = {j.id: j.annotator_id for j in judgments}
    history = [
        HistoryRow(
            change=c,
            by=names.get(c.by_id, "—") if c.by_id else "—",
            annotator=names.get(owner.get(c.judgment_id), ""),
            before=_state_text(c.before, order),
            after=_state_text(c.after, order),
        )
        for c in changes
    ]
    pairwise = len(order) == 2
    next_open = (
        ReviewItem.objects.filter(study=study, status=ReviewItem.Status.OPEN)
        .exclude(id=item.id)
        .order_by("id")
        .values_list("id", flat=True)
        .first()
    )
    gold = ""
    if (
        comparison.is_gold
        and isinstance(comparison.gold_answer, dict)
        and comparison.gold_answer.get("better") in order
    ):
        gold = _LETTERS[order.index(comparison.gold_answer["better"])]
    return ReviewDetail(
        item=item,
        comparison=display,
        answers=answers,
        history=history,
        options=_verdict_options(study, pairwise=pairwise, answers=answers),
        pairwise=pairwise,
        next_open_id=next_open,
        gold=gold,
        reasons=[
            {
                **r,
                "label": _rule_label(r.get("rule", "")),
                "who": names.get(owner.get(r.get("judgment")), f"judgment {r.get('judgment')}"),
            }
            for r in item.reasons or []
        ],
    )


def _state_text(label: dict, order: list[int]) -> str:
    """A history row's before or after, in the page's letters."""
    if not label:
        return ""
    said = answer_letters(label.get("choice", ""), label.get("ranking"), order)
    state = label.get("review_state") or ""
    if state == Judgment.ReviewState.OVERTURNED:
        return (
            f"{said} → {answer_letters(label.get('adjudicated_choice', ''), label.get('adjudicated_ranking'), order)}"
        )
    return f"{said} ({state})" if state else said


def _verdict_options(study: Study, *, pairwise: bool, answers: list[AnswerRow]) -> list[dict[str, str]]:
    """The right-answer buttons: a pair's answers the study allows; for a list,
    every ranking people gave (the reviewer may also type another)."""
    if pairwise:
        options = [
            {"value": "a", "label": "A is better", "key": "1"},
            {"value": "b", "label": "B is better", "key": "2"},
        ]
        if study.allow_tie:
            options.append({"value": "tie", "label": "Tie", "key": "3"})
        if study.allow_both_bad:
            options.append({"value": "both_bad", "label": "Both bad", "key": "4"})
        return options
    given = list(dict.fromkeys(a.answer for a in answers if not a.by_model and "(" not in a.answer))
    return [{"value": text, "label": text, "key": str(k + 1)} for k, text in enumerate(given[:9])]


@dataclass(frozen=True)
class MyAnswer:
    judgment: Judgment
    prompt_excerpt: str
    answer: str  # in the letters the annotator saw
    amend_until: datetime | None
    reviewed: str  # "", or how a reviewer settled it


def my_answers(*, study: Study, user: AbstractBaseUser, page: int = 1) -> tuple[Page, list[MyAnswer]]:
    """The annotator's own answers in the study, newest first, in the letters
    they saw, with until when each may be changed. Two queries."""
    judgments = (
        Judgment.objects.filter(study=study, annotator=user, by_model=False)
        .select_related("comparison__prompt")
        .order_by("-id")
    )
    shown = Paginator(judgments, ANSWERS_PAGE_SIZE).get_page(page)
    now = timezone.now()
    rows = []
    for j in shown.object_list:
        until = None
        if study.amend_seconds > 0 and not j.review_state:
            until = j.created_at + timedelta(seconds=study.amend_seconds)
            until = until if until > now else None
        prompt = j.comparison.prompt
        rows.append(
            MyAnswer(
                judgment=j,
                prompt_excerpt=shorten(prompt.text, 140) if prompt else "",
                answer=answer_letters(j.choice, j.ranking, [int(c) for c in j.shown_order or []]),
                amend_until=until,
                reviewed=j.get_review_state_display() if j.review_state else "",
            )
        )
    return shown, rows
