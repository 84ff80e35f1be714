"""Reads of the data browser: prompts found by text and filtered by source,
annotator, date, agreement and the live model's certainty, a page at a time;
one prompt with its responses, their scores and every comparison of them.

A fixed number of queries per page whatever the study's size (the tests count
them). Text search is PostgreSQL full-text search (``to_tsvector('simple', …)``
over prompts and responses, GIN-indexed by migration 0032) and a plain
case-insensitive match on SQLite. The filters that involve judgments are
subqueries on indexed columns; agreement reads ``Comparison.disagreement`` and
``Prompt.people_judgments``, which the review scan keeps
(``annotation.services.review``), so a new answer shows here within a scan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import BooleanField, Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone
from django.utils.http import urlencode

from annotation.models import (
    Candidate,
    Comparison,
    ComparisonItem,
    Judgment,
    Prompt,
    RewardModelVersion,
    Study,
)
from annotation.rendering import conversation_messages
from annotation.selectors.review import answer_letters, feedback_flags, letter_of, shorten

BROWSE_PAGE_SIZE = 50
AGREEMENT_CHOICES = (
    ("", "Any"),
    ("disagree", "People disagree"),
    ("agree", "People agree"),
    ("unjudged", "Not judged yet"),
)
SORT_CHOICES = (("newest", "Newest first"), ("oldest", "Oldest first"), ("uncertain", "Model least sure first"))


@dataclass(frozen=True)
class BrowseFilters:
    q: str = ""
    source: str = ""
    annotator: str = ""
    since: date | None = None
    until: date | None = None
    agreement: str = ""
    below: float | None = None  # the live model's P(best) under this
    sort: str = "newest"
    page: int = 1

    def query(self, **changes: Any) -> dict[str, str]:
        """The filters as query parameters (for links that keep them), with ``changes``."""
        values = {
            "q": self.q, "source": self.source, "annotator": self.annotator,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "agreement": self.agreement, "below": "" if self.below is None else f"{self.below:g}", "sort": self.sort,
        }  # fmt: skip
        values.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v and not (k == "sort" and v == "newest")}

    @property
    def active(self) -> bool:
        return bool(self.query())


def filters_from(params: Any) -> tuple[BrowseFilters, dict[str, str]]:
    """Filters from a query string, and a message for each parameter that could not be read."""
    errors: dict[str, str] = {}

    def day(name: str) -> date | None:
        raw = (params.get(name) or "").strip()
        if not raw:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            errors[name] = "A date as YYYY-MM-DD."
            return None

    below = None
    raw_below = (params.get("below") or "").strip()
    if raw_below:
        try:
            below = float(raw_below)
            if not 0.0 < below <= 1.0:
                raise ValueError
        except ValueError:
            errors["below"] = "A probability above 0 and at most 1, such as 0.6."
            below = None
    agreement = params.get("agreement") or ""
    if agreement not in dict(AGREEMENT_CHOICES):
        errors["agreement"] = "One of: " + ", ".join(k for k, _ in AGREEMENT_CHOICES if k) + "."
        agreement = ""
    sort = params.get("sort") or "newest"
    if sort not in dict(SORT_CHOICES):
        errors["sort"] = "One of: " + ", ".join(k for k, _ in SORT_CHOICES) + "."
        sort = "newest"
    raw_page = params.get("page") or "1"
    page = int(raw_page) if raw_page.isdigit() and 0 < len(raw_page) < 7 else 1
    filters = BrowseFilters(
        q=(params.get("q") or "").strip()[:200],
        source=(params.get("source") or "").strip()[:200],
        annotator=(params.get("annotator") or "").strip()[:150],
        since=day("since"),
        until=day("until"),
        agreement=agreement,
        below=below,
        sort=sort,
        page=page,
    )
    return filters, errors


def _text_match(study: Study, q: str) -> Q:
    """Prompts whose text, or one of whose responses' text, matches ``q``. On
    PostgreSQL one IN over the UNION of two full-text matches, so each side uses
    its GIN index (an OR of the two made the planner scan every prompt)."""
    if connection.vendor == "postgresql":
        return Q(
            RawSQL(
                "annotation_prompt.id IN ("
                "SELECT p.id FROM annotation_prompt p WHERE p.study_id = %s"
                " AND to_tsvector('simple', p.text) @@ plainto_tsquery('simple', %s)"
                " UNION SELECT c.prompt_id FROM annotation_candidate c WHERE c.study_id = %s"
                " AND to_tsvector('simple', c.text) @@ plainto_tsquery('simple', %s))",
                [study.id, q, study.id, q],
                output_field=BooleanField(),
            )
        )  # table names are the models' (migration 0032 indexes these expressions); values are parameters
    candidates = Candidate.objects.filter(study=study, text__icontains=q).values("prompt_id")
    return Q(text__icontains=q) | Q(id__in=candidates)


def _judged_prompts(judged: QuerySet[Judgment]) -> Q:
    """Prompts with a judgment among ``judged``, through the prompt each judgment
    keeps a copy of. On PostgreSQL the prompt ids are gathered once into an array
    (``= ANY(ARRAY(…))``, an init plan, read from the judgments' (study,
    created_at) or (annotator) index alone, which carry the prompt), and the
    prompts are read from their primary key in the page's order. As ``IN``, the
    planner took the page's ``LIMIT`` to mean it could stop early and walked
    every prompt newest first probing its judgments (232 ms for one annotator,
    21 ms this way); ARCHITECTURE, the data browser, has the figures."""
    if connection.vendor != "postgresql":
        return Q(id__in=judged.values("prompt_id"))
    sql, params = judged.values("prompt_id").query.sql_with_params()
    return Q(
        RawSQL(f"{Prompt._meta.db_table}.id = ANY(ARRAY({sql}))", params, output_field=BooleanField())
    )  # the table name comes from model metadata; every value is a parameter


def _judgment_filtered(filters: BrowseFilters) -> bool:
    return bool(filters.annotator or filters.since or filters.until)


def browse_queryset(*, study: Study, filters: BrowseFilters) -> QuerySet[Prompt]:
    """The study's prompts that match ``filters``, in their order."""
    prompts = Prompt.objects.filter(study=study)
    if filters.q:
        prompts = prompts.filter(_text_match(study, filters.q))
    if filters.source:
        prompts = prompts.filter(
            id__in=Candidate.objects.filter(study=study, source=filters.source).values("prompt_id")
        )
    judged = Judgment.objects.filter(study=study, by_model=False)
    if filters.annotator:
        # The account first (one indexed read): with its id the planner counts its judgments
        # right, where a join on the username left it guessing (and choosing slow plans).
        user_id = get_user_model().objects.filter(username=filters.annotator).values_list("id", flat=True).first()
        judged = judged.filter(annotator_id=user_id if user_id is not None else -1)
    if filters.since:
        start = timezone.make_aware(datetime.combine(filters.since, time.min))
        judged = judged.filter(created_at__gte=start)
    if filters.until:
        end = timezone.make_aware(datetime.combine(filters.until + timedelta(days=1), time.min))
        judged = judged.filter(created_at__lt=end)
    if _judgment_filtered(filters):
        prompts = prompts.filter(_judged_prompts(judged))
    # EXISTS and NOT EXISTS per prompt, never NOT IN: PostgreSQL cannot turn NOT IN
    # over a million judgments into an anti-join, and ran it as a nested loop.
    # Whether people judged a prompt is its count, kept by the review scan.
    split = Exists(Comparison.objects.filter(prompt_id=OuterRef("pk"), disagreement=True))
    if filters.agreement == "disagree":
        prompts = prompts.filter(split)
    elif filters.agreement == "agree":
        prompts = prompts.filter(people_judgments__gt=0).filter(~split)
    elif filters.agreement == "unjudged":
        prompts = prompts.filter(people_judgments=0)
    if filters.below is not None:
        prompts = prompts.filter(model_p_best__lt=filters.below)
    order = {
        "newest": ("-id",),
        "oldest": ("id",),
        "uncertain": (F("model_p_best").asc(nulls_last=True), "id"),
    }[filters.sort]
    return prompts.order_by(*order)


def _excerpt(prompt: Prompt) -> str:
    """A prompt on one line: a conversation as its turns ("user: …"), not its JSON."""
    messages = conversation_messages(prompt.text, declared=prompt.format == Prompt.Format.CONVERSATION)
    text = " ".join(f"{m.role}: {m.content}" for m in messages) if messages else prompt.text
    return shorten(text, 220)


@dataclass(frozen=True)
class BrowseRow:
    prompt: Prompt
    excerpt: str
    candidates: int
    judgments: int
    disagreements: int


@dataclass(frozen=True)
class BrowsePage:
    filters: BrowseFilters
    page: Page
    rows: list[BrowseRow]
    sources: list[str]
    live_version: int | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def query(self) -> str:
        """The current filters and page as a query string (links back here keep them)."""
        return urlencode(self.filters.query(page=self.page.number) if self.page.number > 1 else self.filters.query())

    @property
    def filter_query(self) -> str:
        """The filters without the page (what "every matching prompt" is)."""
        return urlencode(self.filters.query())

    def _page_query(self, number: int) -> str:
        return urlencode(self.filters.query(page=number))

    @property
    def previous_query(self) -> str:
        return self._page_query(self.page.previous_page_number()) if self.page.has_previous() else ""

    @property
    def next_query(self) -> str:
        return self._page_query(self.page.next_page_number()) if self.page.has_next() else ""


def browse_page(*, study: Study, filters: BrowseFilters, errors: dict[str, str] | None = None) -> BrowsePage:
    """One page of matching prompts with their counts. Five queries: how many
    match, the page's ids, their prompts with their counts, the study's sources,
    the live version. A text search, or a filter on the judgments (who, when),
    counts and pages in one statement: evaluating it twice cost more than
    anything else on the page (benchmarks/data_browser.py); for the other filters
    PostgreSQL plans the two separately better than together."""
    prompts = browse_queryset(study=study, filters=filters)
    if filters.q or _judgment_filtered(filters):
        page = _page_of_ids(prompts, filters.page)
    else:
        page = Paginator(prompts.values_list("id", flat=True), BROWSE_PAGE_SIZE).get_page(filters.page)
    ids = list(page.object_list)
    counted = Prompt.objects.filter(id__in=ids).annotate(
        n_candidates=Coalesce(
            Subquery(
                Candidate.objects.filter(prompt_id=OuterRef("pk"))
                .order_by()
                .values("prompt_id")
                .annotate(n=Count("id"))
                .values("n"),
                output_field=IntegerField(),
            ),
            0,
        ),
        n_split=Coalesce(
            Subquery(
                Comparison.objects.filter(prompt_id=OuterRef("pk"), disagreement=True)
                .order_by()
                .values("prompt_id")
                .annotate(n=Count("id"))
                .values("n"),
                output_field=IntegerField(),
            ),
            0,
        ),
    )
    by_id = {p.id: p for p in counted}
    rows = [
        BrowseRow(
            prompt=by_id[i],
            excerpt=_excerpt(by_id[i]),
            candidates=by_id[i].n_candidates,
            judgments=by_id[i].people_judgments,
            disagreements=by_id[i].n_split,
        )
        for i in ids
        if i in by_id
    ]
    sources = list(
        Candidate.objects.filter(study=study)
        .exclude(source="")
        .order_by("source")
        .values_list("source", flat=True)
        .distinct()[:200]
    )
    live = RewardModelVersion.objects.filter(study=study).order_by("-version").values_list("version", flat=True).first()
    return BrowsePage(filters=filters, page=page, rows=rows, sources=sources, live_version=live, errors=errors or {})


class _CountedIds:
    """What a ``Paginator`` needs from one page of ids whose total is known: its
    length, and the page's ids for the one slice it takes."""

    def __init__(self, total: int, ids: list[int]) -> None:
        self.total, self.ids = total, ids

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, _window: slice) -> list[int]:
        return self.ids


def _page_of_ids(prompts: QuerySet[Prompt], number: int) -> Page:
    """Page ``number`` of the ids of ``prompts``, and how many there are, in one
    statement (``COUNT(*) OVER ()`` beside the page's rows): the filter is evaluated
    once, where ``COUNT`` then ``OFFSET … LIMIT`` ran it twice. A page past the end
    becomes the last one, as ``Paginator.get_page`` does."""
    counted = prompts.annotate(matching=Window(Count("*"))).values_list("id", "matching")
    start = (number - 1) * BROWSE_PAGE_SIZE
    rows = list(counted[start : start + BROWSE_PAGE_SIZE])
    if not rows and number > 1:
        total = prompts.count()
        number = max(1, -(-total // BROWSE_PAGE_SIZE))
        start = (number - 1) * BROWSE_PAGE_SIZE
        rows = list(counted[start : start + BROWSE_PAGE_SIZE])
    total = rows[0][1] if rows else 0
    paginator = Paginator(_CountedIds(total, [row[0] for row in rows]), BROWSE_PAGE_SIZE)
    return paginator.page(number)


def selection_ids(*, study: Study, filters: BrowseFilters, limit: int) -> list[int]:
    """The ids of every prompt matching ``filters``, at most ``limit`` + 1 (so a caller can tell it was cut)."""
    return list(browse_queryset(study=study, filters=filters).values_list("id", flat=True)[: limit + 1])


# --- one prompt ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateRow:
    candidate: Candidate
    letter: str
    mean: float | None
    std: float | None
    p_best: float | None


@dataclass(frozen=True)
class ComparisonRow:
    comparison: Comparison
    candidate_ids: list[int]  # its items, in their stored order
    letters: str  # the same, as this page's letters
    answers: list[dict]


@dataclass(frozen=True)
class PromptDetail:
    prompt: Prompt
    candidates: list[CandidateRow]
    comparisons: list[ComparisonRow]
    live_version: int | None


def _board(version_id: int, prompt_id: int) -> dict:
    """The live version's leaderboard of one prompt, read out of its recommendation
    in the database (the whole recommendation of a large study is megabytes)."""
    table = RewardModelVersion._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"SELECT recommendation -> 'prompts' -> %s FROM {table} WHERE id = %s", [str(prompt_id), version_id]
            )
        else:
            cursor.execute(
                f"SELECT json_extract(recommendation, %s) FROM {table} WHERE id = %s",
                [f'$.prompts."{prompt_id}"', version_id],
            )
        row = cursor.fetchone()
    value = row[0] if row else None
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def prompt_detail(*, study: Study, prompt_id: int) -> PromptDetail:
    """A prompt with its responses (best first under the live model, with its
    posterior mean, spread and P(best) where it has them) and every comparison
    of them with every answer. Http404 for another study's prompt. Six queries."""
    prompt = Prompt.objects.filter(id=prompt_id, study=study).first()
    if prompt is None:
        raise Http404("No such prompt in this study.")
    live = RewardModelVersion.objects.filter(study=study).order_by("-version").values_list("id", "version").first()
    scores: dict[int, dict] = {}
    if live is not None:
        scores = {int(row["candidate"]): row for row in _board(live[0], prompt.id).get("leaderboard") or []}
    candidates = list(Candidate.objects.filter(prompt=prompt).select_related("author").order_by("id"))
    candidates.sort(key=lambda c: (-(scores.get(c.id) or {}).get("mean", float("-inf")), c.id))
    letter = {c.id: letter_of(i) for i, c in enumerate(candidates)}
    comparisons = list(Comparison.objects.filter(prompt=prompt).order_by("id"))
    items: dict[int, list[int]] = {}
    for comparison_id, candidate_id in (
        ComparisonItem.objects.filter(comparison__prompt=prompt)
        .order_by("comparison_id", "position")
        .values_list("comparison_id", "candidate_id")
    ):
        items.setdefault(comparison_id, []).append(candidate_id)
    answers: dict[int, list[dict]] = {}
    names = dict(get_user_model().objects.filter(judgments__prompt=prompt).values_list("id", "username").distinct())
    for j in Judgment.objects.filter(prompt=prompt).order_by("id"):
        order = list(letter)  # the page's letters: the prompt's responses best first
        said = answer_letters(j.choice, j.ranking, order)
        adjudicated = (
            answer_letters(j.adjudicated_choice, j.adjudicated_ranking, order)
            if j.review_state == Judgment.ReviewState.OVERTURNED
            else ""
        )
        answers.setdefault(j.comparison_id, []).append(
            {"judgment": j, "annotator": names.get(j.annotator_id, f"user {j.annotator_id}"), "said": said,
             "adjudicated": adjudicated, "flagged": feedback_flags(j, letter), "wrote": letter.get(j.rewrite_id)}
        )  # fmt: skip
    return PromptDetail(
        prompt=prompt,
        candidates=[
            CandidateRow(
                candidate=c,
                letter=letter[c.id],
                mean=(scores.get(c.id) or {}).get("mean"),
                std=(scores.get(c.id) or {}).get("std"),
                p_best=(scores.get(c.id) or {}).get("p_best"),
            )
            for c in candidates
        ],
        comparisons=[
            ComparisonRow(
                comparison=c,
                candidate_ids=items.get(c.id, []),
                letters=" · ".join(letter.get(cid, "?") for cid in items.get(c.id, [])),
                answers=answers.get(c.id, []),
            )
            for c in comparisons
        ],
        live_version=live[1] if live else None,
    )
