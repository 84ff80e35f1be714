"""The sign-in page: Django's login view (so django-axes' lockout holds as
before) that knows about invitations and single sign-on."""

from __future__ import annotations

from allauth.account.views import SignupView as AllauthSignupView
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import reverse

from webapp.accounts.forms import SignInForm
from webapp.accounts.invites import invite_from_request, invite_from_url


def sso_login_url() -> str | None:
    """Where the single sign-on button posts to, or None when no provider is configured."""
    if not (settings.PREFLOOP_OIDC_SERVER_URL and settings.PREFLOOP_OIDC_CLIENT_ID):
        return None
    return reverse("openid_connect_login", kwargs={"provider_id": settings.PREFLOOP_OIDC_PROVIDER_ID})


class SignInView(auth_views.LoginView):
    """``/accounts/login/`` (URL names ``login`` and allauth's ``account_login``).

    Followed from an invite link (``next`` is ``/join/<token>/`` or
    ``/orgs/join/<token>/``), the page says who invited the visitor and offers to
    create an account, to sign in, or single sign-on when it is configured.
    """

    form_class = SignInForm
    template_name = "registration/login.html"
    redirect_authenticated_user = False

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        next_url = context.get("next") or ""
        context["invite"] = invite_from_url(next_url)
        context["sso_url"] = sso_login_url()
        context["sso_name"] = settings.PREFLOOP_OIDC_NAME
        return context


class InvitedSignupView(AllauthSignupView):
    """allauth's sign-up page (``/accounts/signup/``), saying which invitation it
    is for; without a valid one it is closed (``adapters.AccountAdapter``)."""

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["invite"] = invite_from_request(self.request)
        context["sso_url"] = sso_login_url()
        context["sso_name"] = settings.PREFLOOP_OIDC_NAME
        return context
