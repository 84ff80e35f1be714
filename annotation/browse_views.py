"""The data browser (researchers): prompts searched and filtered, a page at a
time (htmx swaps the results; every link and form also works as a plain page),
one prompt with its responses and comparisons, and bulk actions on a selection.

Reads are ``annotation.selectors.browse``; writes ``annotation.services.browse``.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from annotation import selectors
from annotation.exports.kinds.judgments import judgment_record
from annotation.exports.rows import judgment_chunks
from annotation.exports.writers import jsonl_encoder
from annotation.models import Prompt, Study
from annotation.rendering import TextFormat
from annotation.selectors import browse as browse_selectors
from annotation.services import AnnotationError
from annotation.services.browse import judgments_exclude, selection_send_to_review

# "Every prompt matching the filters" acts on at most this many at once.
MAX_SELECTION = 20_000


@never_cache
@login_required
@require_GET
def data_browser(request: HttpRequest, slug: str) -> HttpResponse:
    """The browser page; htmx asks for the results alone when a filter changes."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    filters, errors = browse_selectors.filters_from(request.GET)
    page = browse_selectors.browse_page(study=study, filters=filters, errors=errors)
    context = {
        "study": study,
        "browse": page,
        "agreement_choices": browse_selectors.AGREEMENT_CHOICES,
        "sort_choices": browse_selectors.SORT_CHOICES,
    }
    if request.htmx and request.htmx.target == "browse-results":
        return render(request, "annotation/_browse_results.html", context)
    return render(request, "annotation/data_browser.html", context)


@never_cache
@login_required
@require_GET
def data_prompt(request: HttpRequest, slug: str, prompt_id: int) -> HttpResponse:
    """One prompt: its responses with the live model's scores, and every comparison and answer."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    detail = browse_selectors.prompt_detail(study=study, prompt_id=prompt_id)
    back = request.GET.get("back", "")
    back_url = reverse("data_browser", args=[study.slug]) + (f"?{back}" if back and "\n" not in back else "")
    # The prompt as annotators see it (turns of a conversation, Markdown), whole.
    shown = selectors.prompt_for_display(prompt=detail.prompt, whole=True)
    comparison = selectors.ComparisonDisplay(
        comparison_id=0,
        prompt=shown,
        candidates=(),
        text_format=TextFormat.MARKDOWN if shown.is_markdown else TextFormat.AUTO,
    )
    context = {"study": study, "detail": detail, "back_url": back_url, "comparison": comparison}
    return render(request, "annotation/data_prompt.html", context)


def selection_of(study: Study, *, ids: list | None, filters: dict | None) -> tuple[list[int], str]:
    """The prompts a bulk action is about: ``ids`` (kept to the study's), or with
    ``filters`` every prompt matching them; and a problem, if any."""
    if filters is not None:
        parsed, errors = browse_selectors.filters_from(filters)
        if errors:
            return [], "; ".join(f"{name}: {message}" for name, message in errors.items())
        found = browse_selectors.selection_ids(study=study, filters=parsed, limit=MAX_SELECTION)
        if len(found) > MAX_SELECTION:
            return [], f"More than {MAX_SELECTION:,} prompts match: narrow the filters first."
        return found, ""
    wanted = {int(v) for v in ids or [] if str(v).isdigit() and len(str(v)) < 19}
    found = sorted(Prompt.objects.filter(study=study, id__in=wanted).values_list("id", flat=True)) if wanted else []
    return found, "" if found else "Tick some prompts first (or choose every prompt that matches)."


@login_required
@require_POST
def data_bulk(request: HttpRequest, slug: str) -> HttpResponse:
    """A bulk action on the selection: exclude its judgments from training, send
    it to review, export its judgments (JSONL), or exclude every judgment of the
    annotator the filters name."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    action = request.POST.get("action", "")
    back = reverse("data_browser", args=[study.slug])
    query = request.POST.get("query", "")
    if query and "\n" not in query:
        back += f"?{query}"
    reason = request.POST.get("reason", "")
    try:
        if action == "exclude_annotator":
            username = request.POST.get("annotator", "").strip()
            user = get_user_model().objects.filter(username=username, judgments__study=study).distinct().first()
            if user is None:
                raise AnnotationError(f"No one named “{username}” has judgments in this study.")
            n = judgments_exclude(study=study, by=request.user, reason=reason, annotator_id=user.pk)
            messages.success(request, f"Excluded {n} judgment{'s' if n != 1 else ''} of {username} from training.")
            return redirect(back)
        every = request.POST.get("all") == "1"
        ids, problem = selection_of(
            study, ids=request.POST.getlist("prompt"), filters=request.POST.dict() if every else None
        )
        if problem:
            raise AnnotationError(problem)
        if action == "exclude":
            n = judgments_exclude(study=study, by=request.user, reason=reason, prompt_ids=ids)
            messages.success(
                request, f"Excluded {n} judgment{'s' if n != 1 else ''} on {len(ids)} prompt(s) from training."
            )
        elif action == "review":
            n = selection_send_to_review(study=study, by=request.user, prompt_ids=ids, reason=reason)
            messages.success(request, f"Sent {n} comparison{'s' if n != 1 else ''} to the review queue.")
        elif action == "export":
            return selection_export(study, ids)
        else:
            raise AnnotationError("Choose an action.")
    except AnnotationError as exc:
        messages.error(request, str(exc))
    return redirect(back)


def selection_export(study: Study, ids: list[int]) -> StreamingHttpResponse:
    """The selection's judgments as the *All judgments* JSONL records."""
    encoder = jsonl_encoder()

    def lines() -> Iterator[bytes]:
        for chunk in judgment_chunks(study, pseudonymise=False, prompt_ids=ids):
            yield "".join(encoder.encode(judgment_record(study, row)) + "\n" for row in chunk).encode("utf-8")

    response = StreamingHttpResponse(lines(), content_type="application/x-ndjson; charset=utf-8")
    name = f"{study.slug}-selection-{len(ids)}-prompts.jsonl"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
