"""The study page's "Webhooks" card (issue 18): add a webhook, turn it on or off,
send a test ping, give it a new secret, delete it, and send a failed delivery again.

Researchers only (``selectors.access_study_for_researcher``: a 404 for anyone
else). Every action is a form post that redirects back to the card with a
message; deliveries are sent by the worker (``annotation.tasks.webhook_deliver``).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation import selectors
from annotation.forms import WebhookForm
from annotation.models import Study, Webhook, WebhookDelivery
from annotation.services import webhooks


def _back(study: Study) -> str:
    return reverse("study_detail", args=[study.slug]) + "#webhooks"


def _messages(errors: dict[str, list[str]]) -> str:
    return " ".join(" ".join(e) for e in errors.values())


@login_required
@require_POST
def webhook_add(request: HttpRequest, slug: str) -> HttpResponse:
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    form = WebhookForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Webhook not added. {_messages(form.errors)}")
        return redirect(_back(study))
    try:
        hook = webhooks.webhook_create(study=study, created_by=request.user, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, f"Webhook not added. {_messages(exc.message_dict)}")
        return redirect(_back(study))
    messages.success(request, f"Webhook added: {hook.url} gets {', '.join(hook.events)}. Its secret is on the card.")
    return redirect(_back(study))


def _hook(request: HttpRequest, slug: str, webhook_id: int) -> tuple[Study, Webhook]:
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    return study, get_object_or_404(Webhook, pk=webhook_id, study=study)


@login_required
@require_POST
def webhook_active_set(request: HttpRequest, slug: str, webhook_id: int) -> HttpResponse:
    study, hook = _hook(request, slug, webhook_id)
    webhooks.webhook_update(webhook=hook, active=request.POST.get("active") == "1")
    messages.success(request, f"Webhook {hook.url} is {'on' if hook.active else 'off'}.")
    return redirect(_back(study))


@login_required
@require_POST
def webhook_ping(request: HttpRequest, slug: str, webhook_id: int) -> HttpResponse:
    study, hook = _hook(request, slug, webhook_id)
    if not hook.active:
        messages.error(request, "Turn the webhook on first: an inactive webhook is sent nothing.")
        return redirect(_back(study))
    webhooks.webhook_ping(webhook=hook)
    messages.success(request, f"A test ping is on its way to {hook.url}; its delivery shows below.")
    return redirect(_back(study))


@login_required
@require_POST
def webhook_delete(request: HttpRequest, slug: str, webhook_id: int) -> HttpResponse:
    study, hook = _hook(request, slug, webhook_id)
    hook.delete()
    messages.success(request, f"Webhook {hook.url} deleted, with its deliveries.")
    return redirect(_back(study))


@login_required
@require_POST
def webhook_delivery_retry(request: HttpRequest, slug: str, delivery_id: int) -> HttpResponse:
    study = selectors.access_study_for_researcher(user=request.user, slug=slug)
    delivery = get_object_or_404(WebhookDelivery, pk=delivery_id, webhook__study=study)
    try:
        webhooks.delivery_retry(delivery=delivery)
    except ValidationError as exc:
        messages.error(request, _messages(exc.message_dict))
        return redirect(_back(study))
    messages.success(request, f"Sending the {delivery.event} delivery again.")
    return redirect(_back(study))


@login_required
@require_POST
def webhook_secret_new(request: HttpRequest, slug: str, webhook_id: int) -> HttpResponse:
    """Replace a webhook's secret (when the old one may have leaked)."""
    study, hook = _hook(request, slug, webhook_id)
    webhooks.webhook_update(webhook=hook, new_secret=True)
    messages.success(request, f"Webhook {hook.url} has a new secret: update the receiver before the next event.")
    return redirect(_back(study))
