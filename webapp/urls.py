"""URL routes."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """The icon's hashed address, looked up per request: at import time it needs
    the static files' manifest, and ``migrate`` before ``collectstatic`` on a
    fresh production host would fail on loading the URLs."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))


urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include("annotation.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # Browsers and tools ask for /favicon.ico whatever the page's <link rel="icon"> says.
    path("favicon.ico", favicon),
    path("", include("annotation.urls")),
]
