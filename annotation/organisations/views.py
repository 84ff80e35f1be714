"""Organisation pages: the list (and creating one), an organisation's page with its
members, studies and invite link, and joining through the link.

Function views as in ``annotation.views``: each resolves its organisation through
an ``access_organisation_*`` selector (a 404 for outsiders), parses a form, calls
one service and renders or redirects.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods, require_POST

from annotation.organisations import selectors, services
from annotation.organisations.forms import OrganisationCreateForm, OrganisationMemberAddForm
from annotation.selectors import access_study_for_researcher, user_can_create_study


@login_required
@require_http_methods(["GET", "POST"])
def organisation_list(request: HttpRequest) -> HttpResponse:
    """Your organisations, and a form to create one (you become its owner) for
    those who may create studies outside an organisation (staff and researchers)."""
    can_create = user_can_create_study(user=request.user)
    if request.method == "POST" and not can_create:
        raise PermissionDenied("Only staff and researchers can create organisations.")
    form = OrganisationCreateForm(request.POST or None) if can_create else None
    if request.method == "POST" and form.is_valid():
        try:
            organisation = services.organisation_create(name=form.cleaned_data["name"], created_by=request.user)
        except services.OrganisationError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, gettext("Created the organisation “%(name)s”.") % {"name": organisation.name})
            return redirect("organisation_detail", slug=organisation.slug)
    status = 400 if form is not None and form.is_bound and form.errors else 200
    context = {"entries": selectors.organisations_for_user(user=request.user), "form": form}
    return render(request, "organisations/organisation_list.html", context, status=status)


@login_required
def organisation_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """An organisation's page: its studies for every member; members and the invite link to manage for owners."""
    organisation = selectors.access_organisation_for_member(user=request.user, slug=slug)
    owner = selectors.owns_organisation(user=request.user, organisation=organisation)
    context = {
        "organisation": organisation,
        "is_owner": owner,
        "studies": selectors.organisation_studies(user=request.user, organisation=organisation),
        "members": selectors.organisation_members(organisation=organisation),
        "member_form": OrganisationMemberAddForm() if owner else None,
        "invite_url": request.build_absolute_uri(reverse("organisation_join", args=[organisation.invite_token]))
        if owner
        else None,
    }
    return render(request, "organisations/organisation_detail.html", context)


@login_required
@require_POST
def organisation_member_add(request: HttpRequest, slug: str) -> HttpResponse:
    organisation = selectors.access_organisation_for_owner(user=request.user, slug=slug)
    form = OrganisationMemberAddForm(request.POST)
    if not form.is_valid():
        messages.error(request, gettext("Enter a username and a role."))
    else:
        try:
            member = services.organisation_member_add(
                organisation=organisation, username=form.cleaned_data["username"], role=form.cleaned_data["role"]
            )
        except services.OrganisationError as exc:
            messages.error(request, str(exc))
        else:
            text = (
                gettext("%(name)s is now an owner of the organisation.")
                if member.role == member.Role.OWNER
                else gettext("%(name)s is now a member of the organisation.")
            )
            messages.success(request, text % {"name": member.user.get_username()})
    return redirect(reverse("organisation_detail", args=[organisation.slug]) + "#members")


@login_required
@require_POST
def organisation_member_remove(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    organisation = selectors.access_organisation_for_owner(user=request.user, slug=slug)
    try:
        services.organisation_member_remove(organisation=organisation, user_id=user_id)
    except services.OrganisationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, gettext("Removed from the organisation."))
    return redirect(reverse("organisation_detail", args=[organisation.slug]) + "#members")


@login_required
@require_POST
def organisation_invite_rotate(request: HttpRequest, slug: str) -> HttpResponse:
    organisation = selectors.access_organisation_for_owner(user=request.user, slug=slug)
    services.organisation_invite_rotate(organisation=organisation)
    messages.success(request, gettext("New invite link made; the old one no longer works."))
    return redirect(reverse("organisation_detail", args=[organisation.slug]) + "#invite")


@require_http_methods(["GET", "POST"])
def organisation_join(request: HttpRequest, token: str) -> HttpResponse:
    """An organisation's invite link: visitors sign in or sign up first (the sign-in
    page says who invited them); a signed-in person confirms with a button (a
    CSRF-checked POST), and a member goes straight to the organisation's page."""
    organisation = selectors.organisation_for_invite(token=token)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    already = organisation.members.filter(user=request.user).exists()
    if request.method == "POST" or already:
        if not already:
            services.organisation_join(organisation=organisation, user=request.user)
            messages.success(request, gettext("You joined “%(name)s”.") % {"name": organisation.name})
        return redirect("organisation_detail", slug=organisation.slug)
    return render(request, "organisations/organisation_join.html", {"organisation": organisation})


@login_required
@require_POST
def study_organisation_move(request: HttpRequest, slug: str) -> HttpResponse:
    """Move a study into one of your organisations, or out of its own (the
    settings page's *Organisation* card; ``services.study_organisation_move`` has the rules)."""
    study = access_study_for_researcher(user=request.user, slug=slug)
    try:
        moved = services.study_organisation_move(
            study=study, organisation_slug=request.POST.get("organisation", ""), by=request.user
        )
    except services.OrganisationError as exc:
        messages.error(request, str(exc))
        return redirect("study_settings", slug=study.slug)
    if moved.organisation is None:
        messages.success(request, gettext("The study is in no organisation now."))
    else:
        messages.success(request, gettext("The study is in “%(name)s” now.") % {"name": moved.organisation.name})
    outside = moved.researchers_outside
    if outside:
        messages.warning(
            request,
            gettext("Not in the organisation, so no longer managing the study until they join it: %(names)s.")
            % {"names": ", ".join(outside)},
        )
    return redirect("study_settings", slug=study.slug)
