"""Review pages (reviewers and researchers), annotators' own answers and their
amendments, and researchers' flags on annotators.

The rules and the verdicts live in ``annotation.services.review``; these views
authorise, read through ``annotation.selectors.review`` and render. Every form
posts plainly (no script needed); ``static/js/review.js`` adds the keys.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation import selectors
from annotation.models import REVIEW_RULES, Assignment, Judgment
from annotation.selectors import review as review_selectors
from annotation.services import AnnotationError
from annotation.services.review import EXCLUDE, judgment_amend, membership_flag_set, review_verdict
from annotation.views import _choices, _optional_int, _posted_ranking, annotator_study


def _page(request: HttpRequest) -> int:
    raw = request.GET.get("page", "")
    return int(raw) if raw.isdigit() and 0 < len(raw) < 7 else 1


@never_cache
@login_required
@require_GET
def review_queue(request: HttpRequest, slug: str) -> HttpResponse:
    """The study's review queue: open items oldest first, or resolved ones, by rule."""
    study = selectors.access_study_for_reviewer(user=request.user, slug=slug)
    queue = review_selectors.review_queue(
        study=study, status=request.GET.get("status", "open"), rule=request.GET.get("rule", ""), page=_page(request)
    )
    return render(
        request,
        "annotation/review_queue.html",
        {"study": study, "queue": queue, "rules_on": [REVIEW_RULES[r] for r in study.review_rules or []]},
    )


@never_cache
@login_required
@require_GET
def review_item(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    """One item: the comparison, every answer, the reasons, the history and the verdict form."""
    study = selectors.access_study_for_reviewer(user=request.user, slug=slug)
    detail = review_selectors.review_item_detail(study=study, item_id=item_id)
    return render(
        request, "annotation/review_item.html", {"study": study, "detail": detail, "comparison": detail.comparison}
    )


@login_required
@require_POST
def review_item_verdict(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    """Settle an item and go on to the next open one (back to the item with the message when refused)."""
    study = selectors.access_study_for_reviewer(user=request.user, slug=slug)
    detail = review_selectors.review_item_detail(study=study, item_id=item_id)
    answer = request.POST.get("answer", "").strip() or request.POST.get("answer_text", "").strip()
    exclude = [v for v in (_optional_int(x, upper=2**63 - 1) for x in request.POST.getlist("exclude")) if v is not None]
    try:
        review_verdict(
            item=detail.item, by=request.user, answer=answer, exclude=exclude, reason=request.POST.get("reason", "")
        )
    except AnnotationError as exc:
        # The page again with the message, and what the reviewer typed and ticked kept.
        context = {
            "study": study,
            "detail": detail,
            "comparison": detail.comparison,
            "error": str(exc),
            "posted": {
                "reason": request.POST.get("reason", ""),
                "answer_text": request.POST.get("answer_text", ""),
                "exclude": exclude,
            },
        }
        return render(request, "annotation/review_item.html", context, status=400)
    said = "excluded every answer" if answer.lower() == EXCLUDE else f"settled on {answer}"
    messages.success(request, f"Item {item_id}: {said}.")
    if detail.next_open_id is not None:
        return redirect("review_item", slug=study.slug, item_id=detail.next_open_id)
    return redirect("review_queue", slug=study.slug)


@never_cache
@login_required
@require_GET
def my_answers(request: HttpRequest, slug: str) -> HttpResponse:
    """An annotator's own answers in the study, newest first, with the ones they may still change."""
    study = annotator_study(request, slug)
    page, rows = review_selectors.my_answers(study=study, user=request.user, page=_page(request))
    context = {"study": study, "page": page, "rows": rows, "amend_window": timedelta(seconds=study.amend_seconds)}
    return render(request, "annotation/my_answers.html", context)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def answer_amend(request: HttpRequest, slug: str, judgment_id: int) -> HttpResponse:
    """Change one's own answer within the study's window: the comparison as it
    was shown, the answer buttons (or places) again, and the old answer marked."""
    study = annotator_study(request, slug)
    judgment = Judgment.objects.filter(id=judgment_id, study=study, annotator=request.user, by_model=False).first()
    if judgment is None:
        messages.error(request, gettext("There is no answer of yours with that id in this study."))
        return redirect("my_answers", slug=study.slug)
    if request.method == "POST":
        choice, _, strength = request.POST.get("choice", "").partition(":")
        try:
            judgment_amend(
                study=study,
                annotator=request.user,
                judgment_id=judgment.id,
                choice=choice,
                strength=strength,
                ranking=_posted_ranking(request.POST),
                rationale=request.POST.get("rationale") if "rationale" in request.POST else None,
            )
        except AnnotationError as exc:
            messages.error(request, str(exc))
            return redirect("answer_amend", slug=study.slug, judgment_id=judgment.id)
        messages.success(request, gettext("Your answer was changed."))
        return redirect("my_answers", slug=study.slug)
    order = [int(c) for c in judgment.shown_order or []]
    comparison = selectors.comparison_for_display(
        assignment=Assignment(comparison_id=judgment.comparison_id, display_order=order),
        blind=study.blind,
        whole_prompt=True,
    )
    place = {}
    for index, group in enumerate(judgment.ranking or []):
        for cid in group if isinstance(group, list) else [group]:
            place[int(cid)] = index + 1
    rank_items = [
        {"candidate": c, "place": place.get(order[c.position], c.position + 1) if c.position < len(order) else 1}
        for c in comparison.candidates
    ]
    rank_items.sort(key=lambda item: item["place"])
    current = judgment.choice + (f":{judgment.strength}" if judgment.strength else "")
    return render(
        request,
        "annotation/answer_amend.html",
        {
            "study": study,
            "judgment": judgment,
            "comparison": comparison,
            "choices": _choices(study),
            "current": current,
            "current_letters": review_selectors.answer_letters(judgment.choice, judgment.ranking, order),
            "rank_items": rank_items,
            "places": range(1, len(comparison.candidates) + 1),
        },
    )


@login_required
@require_POST
def member_flag(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    """Flag an annotator for review, or take the flag away (``flagged=0``)."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    flagged = request.POST.get("flagged", "1") != "0"
    try:
        membership = membership_flag_set(study=study, user_id=user_id, flagged=flagged)
    except AnnotationError as exc:
        messages.error(request, str(exc))
    else:
        name = membership.external_id or membership.user.get_username()
        if flagged and "flagged" in (study.review_rules or []):
            messages.success(request, f"{name} is flagged: their unreviewed answers are in the review queue.")
        elif flagged:
            messages.success(request, f"{name} is flagged. Turn on the “flagged” review rule to review their answers.")
        else:
            messages.success(request, f"{name} is no longer flagged.")
    return redirect(reverse("study_detail", args=[study.slug]) + "#annotator-quality")
