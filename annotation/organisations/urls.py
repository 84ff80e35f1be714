"""Routes of the organisation pages (mounted at ``/orgs/``)."""

from django.urls import path

from annotation.organisations import views

urlpatterns = [
    path("", views.organisation_list, name="organisation_list"),
    path("join/<str:token>/", views.organisation_join, name="organisation_join"),
    path("<slug:slug>/", views.organisation_detail, name="organisation_detail"),
    path("<slug:slug>/members/", views.organisation_member_add, name="organisation_member_add"),
    path(
        "<slug:slug>/members/<int:user_id>/remove/",
        views.organisation_member_remove,
        name="organisation_member_remove",
    ),
    path("<slug:slug>/invite/rotate/", views.organisation_invite_rotate, name="organisation_invite_rotate"),
]
