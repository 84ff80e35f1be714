"""Organisations scope who sees which studies: through the pages, the API and the
access selectors. Studies without one behave as before (the permission matrix
covers every route with an owner and a member of the study's organisation)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

import tests.annotation.test_study_setup as study_setup_tests
from annotation.models import Membership, Study
from annotation.organisations.models import OrganisationMember, OrganisationStudy
from annotation.organisations.services import (
    OrganisationError,
    organisation_create,
    organisation_member_add,
    organisation_member_remove,
    study_organisation_set,
)
from tests.factories import MembershipFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab(db):
    """An organisation with an owner, a researcher member and a study of the researcher's in it."""
    owner = UserFactory(username="olga", is_staff=True)
    researcher = UserFactory(username="rita")
    organisation = organisation_create(name="Vision Lab", created_by=owner)
    OrganisationMember.objects.create(organisation=organisation, user=researcher)
    study = StudyFactory(name="Captions")
    MembershipFactory(user=researcher, study=study, role=Membership.Role.RESEARCHER)
    study_organisation_set(study=study, organisation=organisation)
    return {"organisation": organisation, "owner": owner, "researcher": researcher, "study": study}


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_owner_manages_every_study_of_the_organisation_without_a_membership(client, lab) -> None:
    client.force_login(lab["owner"])
    assert client.get(reverse("study_detail", args=[lab["study"].slug])).status_code == 200
    home = client.get(reverse("home")).content.decode()
    assert "Captions" in home and "Organisation owner" in home
    listed = _api(lab["owner"]).get("/api/v1/studies/").json()
    assert [(s["slug"], s["role"]) for s in listed] == [(lab["study"].slug, "owner")]


def test_a_researcher_taken_out_of_the_organisation_no_longer_manages_its_study(client, lab) -> None:
    slug = lab["study"].slug
    client.force_login(lab["researcher"])
    assert client.get(reverse("study_detail", args=[slug])).status_code == 200
    organisation_member_remove(organisation=lab["organisation"], user_id=lab["researcher"].pk)
    assert client.get(reverse("study_detail", args=[slug])).status_code == 404
    assert _api(lab["researcher"]).get(f"/api/v1/studies/{slug}/progress/").status_code == 404
    assert _api(lab["researcher"]).get(f"/api/v1/studies/{slug}/").json()["role"] == "annotator"


def test_outsiders_see_neither_the_organisation_nor_its_studies(client, lab) -> None:
    outsider = UserFactory(username="oscar", is_staff=True)
    client.force_login(outsider)
    assert client.get(reverse("organisation_detail", args=[lab["organisation"].slug])).status_code == 404
    assert client.get(reverse("study_detail", args=[lab["study"].slug])).status_code == 404
    assert "Captions" not in client.get(reverse("home")).content.decode()
    assert "Vision Lab" not in client.get(reverse("organisation_list")).content.decode()
    assert _api(outsider).get(f"/api/v1/organisations/{lab['organisation'].slug}/studies/").status_code == 404


def test_a_member_sees_the_studies_listed_but_opens_only_their_own(client, lab) -> None:
    member = UserFactory(username="mo")
    OrganisationMember.objects.create(organisation=lab["organisation"], user=member)
    rows = _api(member).get(f"/api/v1/organisations/{lab['organisation'].slug}/studies/").json()
    assert rows == [
        {"slug": lab["study"].slug, "name": "Captions", "status": "active", "your_role": None, "can_open": False}
    ]
    client.force_login(member)
    assert client.get(reverse("study_detail", args=[lab["study"].slug])).status_code == 404
    assert "Captions" in client.get(reverse("organisation_detail", args=[lab["organisation"].slug])).content.decode()


def test_annotators_need_not_belong_to_the_organisation(client, lab) -> None:
    annotator = UserFactory(username="ann")
    MembershipFactory(user=annotator, study=lab["study"], role=Membership.Role.ANNOTATOR)
    client.force_login(annotator)
    assert client.get(reverse("annotate", args=[lab["study"].slug])).status_code == 200


def test_a_member_creates_a_study_in_the_organisation_from_the_page_and_the_api(client, lab) -> None:
    member = UserFactory(username="newbie")  # neither staff nor a researcher anywhere
    OrganisationMember.objects.create(organisation=lab["organisation"], user=member)
    assert _api(member).post("/api/v1/studies/", {"name": "Loose"}, format="json").status_code == 403
    client.force_login(member)
    form = client.get(reverse("study_new") + f"?organisation={lab['organisation'].slug}").content.decode()
    assert 'name="organisation"' in form and "Vision Lab" in form
    refused = client.post(reverse("study_new"), study_setup_tests.settings_post(name="Outside"))
    assert refused.status_code == 400 and not Study.objects.filter(name="Outside").exists()
    inside = study_setup_tests.settings_post(name="Inside", organisation=lab["organisation"].slug)
    assert client.post(reverse("study_new"), inside).status_code == 302
    made = Study.objects.get(name="Inside")
    assert OrganisationStudy.objects.get(study=made).organisation == lab["organisation"]
    assert Membership.objects.get(study=made).user == member
    created = _api(member).post(
        f"/api/v1/organisations/{lab['organisation'].slug}/studies/", {"name": "By API"}, format="json"
    )
    assert created.status_code == 201 and created.json()["role"] == "researcher"
    assert OrganisationStudy.objects.filter(study__slug=created.json()["slug"]).exists()


def test_a_study_outside_any_organisation_behaves_as_before(client) -> None:
    researcher = UserFactory(username="solo")
    study = StudyFactory()
    MembershipFactory(user=researcher, study=study, role=Membership.Role.RESEARCHER)
    client.force_login(researcher)
    assert client.get(reverse("study_detail", args=[study.slug])).status_code == 200
    assert 'name="organisation"' not in client.get(reverse("study_new")).content.decode()


def test_owners_manage_members_and_the_last_owner_stays(lab) -> None:
    organisation = lab["organisation"]
    api = _api(lab["owner"])
    added = api.post(
        f"/api/v1/organisations/{organisation.slug}/members/", {"username": "RITA", "role": "owner"}, format="json"
    )
    assert added.status_code == 200 and added.json()["role"] == "owner"
    organisation_member_add(organisation=organisation, username="olga", role="member")
    with pytest.raises(OrganisationError, match="needs an owner"):
        organisation_member_add(organisation=organisation, username="rita", role="member")
    with pytest.raises(OrganisationError, match="needs an owner"):
        organisation_member_remove(organisation=organisation, user_id=lab["researcher"].pk)
    assert api.delete(f"/api/v1/organisations/{organisation.slug}/members/nobody/").status_code == 404
    missing = api.post(f"/api/v1/organisations/{organisation.slug}/members/", {"username": "ghost"}, format="json")
    assert missing.status_code in (400, 404)


def test_the_organisation_invite_link_joins_after_a_confirming_click(client, lab) -> None:
    organisation = lab["organisation"]
    visitor = UserFactory(username="vic")
    client.force_login(visitor)
    url = reverse("organisation_join", args=[organisation.invite_token])
    page = client.get(url)
    assert page.status_code == 200 and "Vision Lab" in page.content.decode()
    assert not OrganisationMember.objects.filter(user=visitor).exists(), "a GET joins nothing"
    assert client.post(url)["Location"] == reverse("organisation_detail", args=[organisation.slug])
    assert OrganisationMember.objects.get(user=visitor).role == OrganisationMember.Role.MEMBER
    rotated = _api(lab["owner"]).post(f"/api/v1/organisations/{organisation.slug}/invite/").json()
    assert rotated["invite_url"] and organisation.invite_token not in rotated["invite_url"]
    assert client.get(url).status_code == 404


def test_only_staff_and_researchers_create_organisations(client, lab) -> None:
    annotator = UserFactory(username="plain")
    assert _api(annotator).post("/api/v1/organisations/", {"name": "Mine"}, format="json").status_code == 403
    made = _api(lab["researcher"]).post("/api/v1/organisations/", {"name": "Vision Lab"}, format="json").json()
    assert made["slug"] == "vision-lab-2" and made["role"] == "owner"


def test_a_study_moves_into_an_organisation_its_researcher_belongs_to_and_only_an_owner_takes_it_out(client, lab):
    study, researcher = lab["study"], lab["researcher"]
    other = organisation_create(name="Audio Lab", created_by=researcher)  # rita owns this one
    client.force_login(researcher)
    settings = client.get(reverse("study_settings", args=[study.slug])).content.decode()
    assert 'id="organisation"' in settings and "Vision Lab" in settings and 'value="audio-lab"' in settings
    # Out of Vision Lab: rita is a member there, not an owner.
    refused = client.post(reverse("study_organisation_move", args=[study.slug]), {"organisation": "audio-lab"})
    assert refused.status_code == 302
    assert OrganisationStudy.objects.get(study=study).organisation == lab["organisation"]
    page = client.get(reverse("study_settings", args=[study.slug])).content.decode()
    assert "Only an owner of “Vision Lab” can move a study out of it." in page
    api = _api(researcher).put(f"/api/v1/studies/{study.slug}/organisation/", {"organisation": None}, format="json")
    assert api.status_code == 403 and "Only an owner" in api.json()["detail"]
    # The owner moves it to no organisation; rita then puts it in her own.
    moved = _api(lab["owner"]).put(f"/api/v1/studies/{study.slug}/organisation/", {"organisation": None}, format="json")
    assert moved.status_code == 200 and moved.json() == {"organisation": None, "researchers_outside": []}
    response = client.post(reverse("study_organisation_move", args=[study.slug]), {"organisation": other.slug})
    assert response.status_code == 302
    assert OrganisationStudy.objects.get(study=study).organisation == other
    # An organisation one does not belong to is refused, and says so.
    stranger_org = organisation_create(name="Elsewhere", created_by=UserFactory())
    refused = _api(researcher).put(
        f"/api/v1/studies/{study.slug}/organisation/", {"organisation": stranger_org.slug}, format="json"
    )
    assert refused.status_code == 403 and "organisation you belong to" in refused.json()["detail"]
    assert OrganisationStudy.objects.get(study=study).organisation == other


def test_moving_names_the_researchers_who_stop_managing_the_study(client, lab):
    study = lab["study"]
    outsider = UserFactory(username="otto")
    MembershipFactory(user=outsider, study=study, role=Membership.Role.RESEARCHER)
    answer = _api(lab["owner"]).get(f"/api/v1/studies/{study.slug}/organisation/").json()
    assert answer == {"organisation": lab["organisation"].slug, "researchers_outside": ["otto"]}
    client.force_login(lab["owner"])
    moved = client.post(
        reverse("study_organisation_move", args=[study.slug]), {"organisation": lab["organisation"].slug}, follow=True
    )
    assert "no longer managing the study until they join it: otto." in moved.content.decode()
