"""HTML views for annotators and researchers (function views + htmx partials).

Each view authorises through an ``access_*`` selector, calls a service or
selector, and renders. Every htmx request has a plain-HTML twin: the answer
form posts normally without JavaScript, the dashboard partial redirects to its
page, and the pages reload to the same state.
"""

from __future__ import annotations

import json
from itertools import pairwise

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.module_loading import import_string
from django.utils.translation import gettext, gettext_noop
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation import selectors
from annotation.dashboard import selectors as dashboard
from annotation.exports import registry as export_registry
from annotation.forms import (
    AIJudgeForm,
    GenerationJobForm,
    GenerationSourceForm,
    JudgeRoutingForm,
    PromptOptimisationForm,
    RegenerationForm,
    StudyImportForm,
    WebhookForm,
)
from annotation.models import LIKERT_POINTS, Assignment, Judgment, ReviewItem, Study
from annotation.organisations.forms import study_organisation_form
from annotation.rendering import TextFormat
from annotation.selectors import ComparisonDisplay
from annotation.selectors.review import letter_of
from annotation.services import (
    UNDO_SECONDS_SHOWN,
    AnnotationError,
    Lease,
    ParticipantInUse,
    StudyNotOpen,
    TooManyEntries,
    assignment_lease_ahead,
    assignment_lease_or_refill,
    assignment_skip,
    invite_accept,
    judgment_submit,
    judgment_undo,
)
from annotation.services.feedback import MAX_SPANS, Feedback, SpanMark
from annotation.services.prompt_opt import prompt_optimisation_status

# A time on task beyond a day is a tab left open, not work; it is dropped.
MAX_TIME_ON_TASK_MS = 24 * 60 * 60 * 1000


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    can_create = selectors.user_can_create_study(user=request.user)
    return render(
        request,
        "annotation/home.html",
        {
            "entries": selectors.studies_for_user(user=request.user),
            "can_create": can_create,
            "create_form": StudyImportForm() if can_create else None,
            "org_form": study_organisation_form(request) if can_create else None,
        },
    )


# --- annotating ------------------------------------------------------------------


def speak_study_language(request: HttpRequest, study: Study) -> None:
    """Annotator pages speak the study's language when it sets one; otherwise the
    browser's, which ``LocaleMiddleware`` chose from Accept-Language."""
    if study.language:
        translation.activate(study.language)
        request.LANGUAGE_CODE = translation.get_language()


def annotator_study(request: HttpRequest, slug: str) -> Study:
    """The study of an annotator page (``access_study_for_annotator``), in its language."""
    study = selectors.access_study_for_annotator(user=request.user, slug=slug)
    speak_study_language(request, study)
    return study


def _ui_text() -> dict[str, str]:
    """What annotate.js and rank.js say, in the page's language (placeholders in %(name)s)."""
    return {
        "missing": gettext("Before answering, please give: %(missing)s."),
        "reason": gettext("a reason (Why?)"),
        "moved": gettext("Response %(label)s moved to place %(place)s."),
        "tied": gettext("Response %(label)s tied with response %(above)s."),
        "untied": gettext("Response %(label)s no longer tied."),
        "span_empty": gettext("Select some words in the box first."),
        "span_remove": gettext("Remove"),
        "rewrite_replace": gettext("Replace what you wrote with response %(label)s?"),
    }


def _comparison_context(*, study: Study, user, lease: Lease | None, error: str = "", post=None, progress=None) -> dict:
    """What ``_comparison.html`` needs. ``post`` is a refused answer's form data:
    when the same comparison is shown again, what the annotator typed and rated
    is put back, so a refusal loses nothing."""
    comparison = (
        selectors.comparison_for_display(
            assignment=lease.assignment, blind=study.blind, highlight_diff=study.highlight_diff
        )
        if lease
        else None
    )
    again = bool(post) and comparison is not None and str(comparison.comparison_id) == post.get("comparison_id")
    aspects = [a.strip() for a in study.aspects or []]
    rows = []
    for index, aspect in enumerate(aspects):
        cells = []
        for candidate in comparison.candidates if comparison else ():
            name = f"aspect_{candidate.position}_{index}"
            cells.append({"label": candidate.label, "name": name, "value": post.get(name, "") if again else ""})
        rows.append({"name": aspect, "cells": cells})
    rank_items = []
    for index, candidate in enumerate(comparison.candidates if comparison else ()):
        place = _optional_int(post.get(f"rank_{candidate.position}"), upper=64) if again else None
        rank_items.append({"candidate": candidate, "place": place or index + 1})
    rank_items.sort(key=lambda item: item["place"])
    feedback = _feedback_context(study, comparison, post if again else None)
    for previous, item in pairwise(rank_items):
        item["tied"] = item["place"] == previous["place"]
    return {
        "study": study,
        "comparison": comparison,
        "progress": progress or selectors.study_progress(study=study, user=user),
        "error": error,
        "choices": _choices(study),
        "places": range(1, len(comparison.candidates) + 1) if comparison else range(0),
        "aspect_rows": rows,
        "rank_items": rank_items,
        "feedback": feedback,
        "likert": [str(n) for n in range(1, LIKERT_POINTS + 1)],
        "skip_reasons": Assignment.SkipReason.choices,
        "posted": {
            "rationale": post.get("rationale", "") if again else "",
            "skip_reason": post.get("skip_reason", "") if again else "",
            "skip_note": post.get("skip_note", "") if again else "",
            "skipping": again and post.get("choice") == "skip",
        },
    }


def _feedback_context(study: Study, comparison, post) -> dict | None:
    """What the feedback panel (``_feedback.html``) shows: the study's issue tags
    per response, the span marker, the box for a better response; with a
    refused answer's ``post``, what the annotator had ticked, marked and written.
    None when the study asks for none of it."""
    if comparison is None:
        return None
    tags = [t.strip() for t in study.feedback_tags or []]
    spans_on = bool(study.tag_spans and tags and comparison.responses)
    rewrite_on = bool(study.allow_rewrite and comparison.responses and comparison.prompt is not None)
    if not (tags or spans_on or rewrite_on):
        return None
    rows = []
    for candidate in comparison.candidates:
        ticked = set(post.getlist(f"tag_{candidate.position}")) if post else set()
        rows.append(
            {
                "label": candidate.label,
                "position": candidate.position,
                "tags": [{"name": tag, "checked": tag in ticked} for tag in tags],
                # Spans are marked in a response's plain text: not an image's or a conversation's.
                "markable": spans_on and not candidate.image_url and not candidate.messages,
                "writable": rewrite_on and not candidate.image_url and not candidate.messages,
                "text": candidate.text,
            }
        )
    marked = []
    for span in _posted_spans(post) if post else []:
        if 0 <= span.position < len(comparison.candidates):
            text = comparison.candidates[span.position].text
            marked.append(
                {
                    "label": letter_of(span.position),
                    "value": f"{span.position}:{span.start}:{span.end}:{span.tag}",
                    "tag": span.tag,
                    "text": text[span.start : span.end],
                }
            )
    rewrite = post.get("rewrite_text", "") if post else ""
    return {
        "tags": tags,
        "spans": spans_on and any(row["markable"] for row in rows),
        "rewrite": rewrite_on,
        "rows": rows,
        # JSON in an attribute keeps every character of the texts (HTML would turn "\r\n" into "\n").
        "texts_json": json.dumps(
            {row["position"]: row["text"] for row in rows if row["markable"] or row["writable"]}, ensure_ascii=False
        ),
        "marked": marked,
        "rewrite_text": rewrite,
        "rewrite_of": post.get("rewrite_of", "") if post else "",
        "open": bool(marked or rewrite.strip() or any(tag["checked"] for row in rows for tag in row["tags"])),
    }


def _posted_spans(post) -> list[SpanMark]:
    """``span`` fields, each "<position>:<start>:<end>:<tag>" (annotate's span
    marker writes them); unreadable ones are left out."""
    spans = []
    for value in post.getlist("span")[: MAX_SPANS + 1]:
        position, start, end, tag = [*value.split(":", 3), "", "", ""][:4]
        numbers = [_optional_int(n, upper=10**9) for n in (position, start, end)]
        if None not in numbers and tag:
            spans.append(SpanMark(position=numbers[0], start=numbers[1], end=numbers[2], tag=tag))
    return spans


def _posted_feedback(post) -> Feedback:
    """Issue tags (``tag_<position>`` boxes), spans and a written response from the answer form."""
    tags: dict[int, list[str]] = {}
    for key in post:
        if key.startswith("tag_"):
            position = _optional_int(key.removeprefix("tag_"), upper=64)
            if position is not None:
                tags[position] = post.getlist(key)
    return Feedback(
        tags=tags,
        spans=_posted_spans(post),
        rewrite=post.get("rewrite_text", ""),
        rewrite_of=_optional_int(post.get("rewrite_of"), upper=64),
    )


def _choices(study: Study) -> list[dict]:
    """The answer buttons of a pair, left to right, with their keys.

    With strength asked, A and B each get three buttons on one scale (much
    better … slightly better), so one press answers both questions.
    """
    a, b = Judgment.Choice.A.value, Judgment.Choice.B.value
    if study.ask_strength:
        strengths = ("strong", "clear", "slight")
        scale_a = list(
            zip(strengths, (gettext("A much better"), gettext("A better"), gettext("A slightly better")), strict=True)
        )
        scale_b = list(
            zip(strengths, (gettext("B much better"), gettext("B better"), gettext("B slightly better")), strict=True)
        )
        choices = [
            {"value": f"{a}:{s}", "label": text, "key": str(k + 1), "card": "A", "side": "a"}
            for k, (s, text) in enumerate(scale_a)
        ]
        tie_key, b_keys = "4", ["7", "6", "5"]
        choices_b = [
            {"value": f"{b}:{s}", "label": text, "key": key, "card": "B", "side": "b"}
            for (s, text), key in zip(scale_b, b_keys, strict=True)
        ]
    else:
        choices = [{"value": a, "label": gettext("A is better"), "key": "1", "card": "A", "side": "a"}]
        tie_key = "3"
        choices_b = [{"value": b, "label": gettext("B is better"), "key": "2", "card": "B", "side": "b"}]
    if not study.ask_strength:
        choices += choices_b
    if study.allow_tie:
        choices.append(
            {"value": Judgment.Choice.TIE.value, "label": gettext("Tie"), "key": tie_key, "card": "AB", "side": "tie"}
        )
    if study.ask_strength:
        choices += list(reversed(choices_b))
    if study.allow_both_bad:
        # Fixed keys, whichever other options the study has, for muscle memory.
        key = "8" if study.ask_strength else "4"
        choices.append(
            {
                "value": Judgment.Choice.BOTH_BAD.value,
                "label": gettext("Both bad"),
                "key": key,
                "card": "",
                "side": "bad",
            }
        )
    return choices


@never_cache
@login_required
@require_GET
def annotate(request: HttpRequest, slug: str) -> HttpResponse:
    study = annotator_study(request, slug)
    try:
        lease = assignment_lease_or_refill(study=study, annotator=request.user)
    except StudyNotOpen as exc:
        return render(request, "annotation/study_closed.html", {"study": study, "message": str(exc)})
    context = _comparison_context(study=study, user=request.user, lease=lease, progress=_lease_progress(lease))
    context["ui_text"] = json.dumps(_ui_text())
    _add_ahead(request, study, context, lease)
    # Guidelines start open until the annotator has answered something.
    context["guidelines_open"] = context["progress"].mine == 0
    return render(request, "annotation/annotate.html", context)


def _lease_progress(lease: Lease | None):
    """The progress counted when the lease was taken (None: the page reads it)."""
    return lease.progress if lease is not None else None


def _add_ahead(request: HttpRequest, study: Study, context: dict, lease: Lease | None) -> None:
    """Put the comparison after the current one into the page, leased ahead, so
    annotate.js can show it the moment the current one is answered: the wait
    for the server is then off the annotator's path. None near the end of the
    budget or quota, or when the queue has nothing to spare."""
    if lease is None:
        return
    ahead = assignment_lease_ahead(study=study, annotator=request.user)
    if ahead is None or ahead.assignment.comparison_id == lease.assignment.comparison_id:
        return
    ahead_context = _comparison_context(study=study, user=request.user, lease=ahead, progress=context["progress"])
    context["ahead_html"] = render_to_string("annotation/_comparison.html", ahead_context, request=request)


def _optional_int(raw: str | None, *, upper: int) -> int | None:
    try:
        value = int(raw or "")
    except ValueError:
        return None
    return value if 0 <= value <= upper else None


def _posted_ranking(post) -> list[list[int]] | None:
    """A listwise answer from ``rank_<position>`` fields (place numbers, 1 = best;
    equal numbers are a tie) as groups of positions, best first; None when the
    form carries no places (a pairwise answer). Unreadable places are left out,
    so the service reports the ranking as incomplete."""
    places: dict[int, list[int]] = {}
    found = False
    for key, value in post.items():
        if not key.startswith("rank_"):
            continue
        found = True
        position = _optional_int(key.removeprefix("rank_"), upper=64)
        place = _optional_int(value, upper=64)
        if position is not None and place is not None:
            places.setdefault(place, []).append(position)
    if not found:
        return None
    return [sorted(places[place]) for place in sorted(places)]


def _posted_aspect_ratings(post, *, study: Study) -> dict[int, dict[str, int]]:
    """``aspect_<position>_<aspect index>`` radio values as {position: {aspect: rating}}."""
    aspects = [a.strip() for a in study.aspects or []]
    ratings: dict[int, dict[str, int]] = {}
    for key, value in post.items():
        if not key.startswith("aspect_"):
            continue
        position, _, index = key.removeprefix("aspect_").partition("_")
        position_n, index_n = _optional_int(position, upper=64), _optional_int(index, upper=len(aspects) - 1)
        rating = _optional_int(value, upper=LIKERT_POINTS)
        if position_n is not None and index_n is not None and rating:
            ratings.setdefault(position_n, {})[aspects[index_n]] = rating
    return ratings


@never_cache
@login_required
@require_POST
def annotate_submit(request: HttpRequest, slug: str) -> HttpResponse:
    """Save one answer, then show the next comparison.

    htmx gets the ``_comparison.html`` partial for the next lease (400 with the
    message and a still-answerable comparison when the answer was refused);
    a plain form post is redirected back to the annotate page. Submitting the
    same comparison twice is harmless: the service keeps the first answer.
    """
    study = annotator_study(request, slug)
    error = ""
    submission = None
    comparison_id = _optional_int(request.POST.get("comparison_id"), upper=2**63 - 1)
    choice, _, strength = request.POST.get("choice", "").partition(":")
    if comparison_id is None:
        error = gettext("The form was missing the comparison; please answer again.")
    elif choice == "skip":
        try:
            assignment_skip(
                study=study,
                annotator=request.user,
                comparison_id=comparison_id,
                reason=request.POST.get("skip_reason", ""),
                note=request.POST.get("skip_note", ""),
            )
        except AnnotationError as exc:
            error = str(exc)
    else:
        try:
            submission = judgment_submit(
                study=study,
                annotator=request.user,
                comparison_id=comparison_id,
                choice=choice,
                strength=strength,
                ranking=_posted_ranking(request.POST),
                rationale=request.POST.get("rationale", ""),
                aspect_ratings=_posted_aspect_ratings(request.POST, study=study),
                time_on_task_ms=_optional_int(request.POST.get("time_on_task_ms"), upper=MAX_TIME_ON_TASK_MS),
                client_info={"via": "htmx" if request.htmx else "form"},
                feedback=_posted_feedback(request.POST),
            )
        except AnnotationError as exc:
            error = str(exc)

    undo = None
    if submission is not None and submission.created:
        undo = {"judgment_id": submission.judgment.id, "seconds": UNDO_SECONDS_SHOWN}
    notice = gettext(SUPERSEDED_NOTICE) if submission is not None and submission.superseded else ""
    return _next_comparison(request, study, error=error, undo=undo, notice=notice)


# A second tab (or a page restored from history) answered a comparison already
# answered differently: the first answer stands, and the annotator is told so.
SUPERSEDED_NOTICE = gettext_noop(
    "That comparison was already answered (in another tab or window?): your earlier answer stands "
    "and this one was not recorded. Here is the next one."
)


# Sent by annotate.js with an answer when it has already put the comparison
# leased ahead on screen: that comparison's id.
SHOWING_HEADER = "X-Prefloop-Showing"


def _next_comparison(
    request: HttpRequest, study: Study, *, error: str, undo: dict | None = None, notice: str = ""
) -> HttpResponse:
    """After an answer, a skip or an undo: the annotator's next comparison as the
    htmx partial (400 with the message and the refused form's values kept when
    ``error``; ``notice`` shown above it), or a redirect to the annotate page
    for a plain form post. When the page says (``SHOWING_HEADER``) it already
    shows the comparison that is next, the partial carries only the parts
    around it (progress, undo bar, notice, the one leased after it): the page
    keeps its own, and the server skips reading and rendering it again."""
    if not request.htmx:
        if error:
            messages.error(request, error)
        if notice:
            messages.warning(request, notice)
        return redirect("annotate", slug=study.slug)
    try:
        lease = assignment_lease_or_refill(study=study, annotator=request.user)
    except StudyNotOpen as exc:
        # The study closed between two answers: say so where the comparison was.
        return render(
            request,
            "annotation/_comparison.html",
            {"study": study, "comparison": None, "closed_message": str(exc), "error": error, "notice": notice},
            status=400 if error else 200,
        )
    if not error and lease is not None and request.headers.get(SHOWING_HEADER) == str(lease.assignment.comparison_id):
        # The page already shows this comparison (the one leased ahead, put on
        # screen as the answer went out): render only the parts around it.
        context = {
            "study": study,
            "kept_comparison_id": lease.assignment.comparison_id,
            "progress": _lease_progress(lease) or selectors.study_progress(study=study, user=request.user),
        }
    else:
        context = _comparison_context(
            study=study,
            user=request.user,
            lease=lease,
            error=error,
            post=request.POST if error else None,
            progress=_lease_progress(lease),
        )
    if undo is not None and lease is not None:
        context["undo"] = undo
    context["notice"] = notice
    _add_ahead(request, study, context, lease)
    return render(request, "annotation/_comparison.html", context, status=400 if error else 200)


@never_cache
@login_required
@require_POST
def annotate_undo(request: HttpRequest, slug: str) -> HttpResponse:
    """Take back the answer just given and show its comparison again."""
    study = annotator_study(request, slug)
    error = ""
    judgment_id = _optional_int(request.POST.get("judgment_id"), upper=2**63 - 1)
    try:
        if judgment_id is None:
            raise AnnotationError(gettext("There is no answer of yours to undo."))
        judgment_undo(study=study, annotator=request.user, judgment_id=judgment_id)
    except AnnotationError as exc:
        error = str(exc)
    return _next_comparison(request, study, error=error)


@never_cache
@login_required
@require_GET
def annotate_prompt(request: HttpRequest, slug: str, comparison_id: int) -> HttpResponse:
    """The whole of a long prompt, which the annotate page shows cut to its
    start and end: the prompt partial for htmx ("Show all"), a page of its
    own for a plain link. Only for the annotator the comparison was given to."""
    study = annotator_study(request, slug)
    prompt = selectors.prompt_for_annotator(study=study, user=request.user, comparison_id=comparison_id)
    shown = selectors.prompt_for_display(prompt=prompt, whole=True)
    comparison = ComparisonDisplay(
        comparison_id=comparison_id,
        prompt=shown,
        candidates=(),
        text_format=TextFormat.MARKDOWN if shown.is_markdown else TextFormat.AUTO,
    )
    template = "annotation/_prompt.html" if request.htmx else "annotation/prompt_whole.html"
    return render(request, template, {"study": study, "comparison": comparison})


# --- joining ----------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, token: str) -> HttpResponse:
    """A study's invite link (the policy is ``services.invite_accept``): a crowd
    participant is signed in to their own account and starts at once, a signed-in
    user joins, anyone else signs in first and comes back here.

    A participant's link followed while someone with an account is signed in
    asks them first; their POST (CSRF-checked) signs them out and follows the
    link again."""
    study = selectors.study_for_invite(token=token)
    speak_study_language(request, study)
    if request.method == "POST":
        logout(request)
    try:
        accepted = invite_accept(study=study, user=request.user, params=request.GET, client=_client_address(request))
    except TooManyEntries as exc:
        context = {"study": study, "heading": gettext("Too many new participants"), "message": str(exc)}
        response = render(request, "annotation/join_refused.html", context, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    except ParticipantInUse as exc:
        context = {"study": study, "heading": gettext("This participant id is in use"), "message": str(exc)}
        return render(request, "annotation/join_refused.html", context, status=403)
    except AnnotationError as exc:
        return render(request, "annotation/study_closed.html", {"study": study, "message": str(exc)}, status=400)
    if accepted.needs_sign_out:
        return render(request, "annotation/join_signed_in.html", {"study": study})
    if accepted.needs_sign_in:
        return redirect_to_login(request.get_full_path())
    if accepted.participant is not None and request.user.pk != accepted.participant.pk:
        if request.user.is_authenticated:
            logout(request)  # a password-less crowd participant's session (the service's rule)
        login(request, accepted.participant, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("annotate", slug=study.slug)


def _client_address(request: HttpRequest) -> str:
    """The client's address, behind trusted proxies too (``settings.PREFLOOP_CLIENT_IP_CALLABLE``)."""
    return import_string(settings.PREFLOOP_CLIENT_IP_CALLABLE)(request)


# --- researchers ---------------------------------------------------------------------


@login_required
@require_GET
def study_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """A study's page for its researchers: the live dashboard (also served alone to
    htmx polls by :func:`study_dashboard`), imports, exports and invite links."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    invite = request.build_absolute_uri(reverse("join", args=[study.invite_token]))
    generation = selectors.generation_overview(study=study)
    prompt_opt = prompt_optimisation_status(study=study)
    return render(
        request,
        "annotation/study_detail.html",
        {
            "study": study,
            "dashboard": dashboard.study_dashboard(study=study, versions_page=_versions_page(request)),
            "embedding": selectors.embedding_progress_get(study=study),
            "export_formats": export_registry.downloads(study=study),
            "import_form": StudyImportForm(),
            **generation,
            "generation_source_form": GenerationSourceForm(),
            "generation_job_form": GenerationJobForm(study=study),
            "regeneration_form": RegenerationForm(study=study, sources=generation["generation_sources"]),
            "judges": selectors.judges_overview(study=study),
            "judge_form": AIJudgeForm(sources=generation["generation_sources"]),
            "judge_routing_form": JudgeRoutingForm(study=study),
            **selectors.webhooks_overview(study=study),
            "webhook_form": WebhookForm(),
            "prompt_opt": prompt_opt,
            "prompt_opt_form": PromptOptimisationForm(
                sources=generation["generation_sources"], config=prompt_opt["config"] if prompt_opt else None
            ),
            # One query more only for a study that reviews (the page's query count is tested).
            "review_open": ReviewItem.objects.filter(study=study, status=ReviewItem.Status.OPEN).count()
            if study.review_rules
            else 0,
            "invite_url": invite,
            "prolific_url": invite
            + "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}",
        },
    )


@login_required
@require_GET
def study_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    """The live part of the study page, polled by htmx; a plain GET goes to the page."""
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    if not request.htmx:
        return redirect("study_detail", slug=study.slug)
    live = dashboard.study_dashboard(study=study, versions_page=_versions_page(request))
    return render(request, "annotation/_dashboard.html", {"study": study, "dashboard": live})


def _versions_page(request: HttpRequest) -> int:
    """The page of the model-version table asked for (``?versions=N``; 1 when absent or not a number)."""
    raw = request.GET.get("versions", "")
    return int(raw) if raw.isdigit() and 0 < len(raw) < 7 else 1
