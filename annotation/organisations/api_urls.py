"""Routes of the organisations API, mounted at ``/api/v1/organisations/``."""

from django.urls import path

from annotation.organisations import api

urlpatterns = [
    path("", api.OrganisationList.as_view(), name="api_organisations"),
    path("<slug:slug>/", api.OrganisationDetail.as_view(), name="api_organisation"),
    path("<slug:slug>/invite/", api.OrganisationInvite.as_view(), name="api_organisation_invite"),
    path("<slug:slug>/members/", api.OrganisationMembers.as_view(), name="api_organisation_members"),
    path("<slug:slug>/members/<str:username>/", api.OrganisationMember.as_view(), name="api_organisation_member"),
    path("<slug:slug>/studies/", api.OrganisationStudies.as_view(), name="api_organisation_studies"),
]
