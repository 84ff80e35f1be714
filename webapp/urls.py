"""URL routes."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from webapp.accounts.views import InvitedSignupView, SignInView


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """The icon's hashed address, looked up per request: at import time it needs
    the static files' manifest, and ``migrate`` before ``collectstatic`` on a
    fresh production host would fail on loading the URLs."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))


urlpatterns = [
    path("admin/", admin.site.urls),
    # Django's sign-in view (django-axes watches it), before allauth's own at the same
    # address: the form keeps its username and password fields, the page knows invites.
    path("accounts/login/", SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", InvitedSignupView.as_view(), name="account_signup"),
    # Sign-up by invitation, email confirmation, password reset, single sign-on.
    path("accounts/", include("allauth.urls")),
    path("orgs/", include("annotation.organisations.urls")),
    path("api/v1/organisations/", include("annotation.organisations.api_urls")),
    path("api/v1/", include("annotation.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # Browsers and tools ask for /favicon.ico whatever the page's <link rel="icon"> says.
    path("favicon.ico", favicon),
    path("", include("annotation.urls")),
]
