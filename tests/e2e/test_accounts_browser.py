"""An invited visitor creates an account, confirms the address from the email and
lands in the study; an organisation's owner manages it. In Chromium, by keyboard
where a person would type, with the strict Content-Security-Policy checked on
every page and screenshots of each step."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.urls import reverse

from annotation.models import Membership
from annotation.organisations.services import organisation_create, study_organisation_set
from tests.e2e.helpers import Visitor, log_in, study_with_prompts
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e]

PASSWORD = "a long new passphrase 42"


def test_an_invited_visitor_signs_up_confirms_and_lands_in_the_study(
    live_server, transactional_db, browser, artifacts_dir
):
    study = study_with_prompts(
        {"Which reply is clearer?": ["Short and right.", "Long and lost.", "No idea."]}, name="Clarity study"
    )
    visitor = Visitor(browser, viewport={"width": 1100, "height": 900})
    page = visitor.page
    visitor.visit(live_server.url + reverse("join", args=[study.invite_token]))
    assert "Clarity study" in page.inner_text(".invite-card")
    page.screenshot(path=str(artifacts_dir / "accounts-invite.png"), full_page=True)

    page.get_by_role("link", name="Create an account").click()
    page.wait_for_load_state("load")
    visitor.assert_clean("sign-up page")
    assert "Clarity study" in page.inner_text("main")
    page.get_by_label("Email").fill("nina@example.org")
    page.get_by_label("Username").fill("nina")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.screenshot(path=str(artifacts_dir / "accounts-signup.png"), full_page=True)
    page.get_by_label("Password (again)").press("Enter")  # the keyboard submits
    page.wait_for_url(live_server.url + reverse("account_email_verification_sent"))
    visitor.assert_clean("verification sent")
    assert "Check your email" in page.inner_text("main")
    page.screenshot(path=str(artifacts_dir / "accounts-verification-sent.png"), full_page=True)

    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[-1].body).group(0)
    visitor.visit(link)
    page.screenshot(path=str(artifacts_dir / "accounts-confirm-email.png"), full_page=True)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(live_server.url + reverse("annotate", args=[study.slug]))
    visitor.assert_clean("the study after confirming")
    assert page.inner_text(".user-nav .muted") == "nina"
    assert Membership.objects.get(study=study, user__username="nina").role == Membership.Role.ANNOTATOR
    visitor.close()


def test_an_owner_adds_a_member_and_sees_the_organisation_studies(
    live_server, transactional_db, browser, artifacts_dir
):
    owner = UserFactory(username="olga", is_staff=True)
    UserFactory(username="max")
    organisation = organisation_create(name="Vision Lab", created_by=owner)
    study = study_with_prompts({"Pick one": ["a", "b"]}, name="Captions")
    study_organisation_set(study=study, organisation=organisation)
    visitor = Visitor(browser, viewport={"width": 1100, "height": 900})
    page = visitor.page
    detail = reverse("organisation_detail", args=[organisation.slug])
    log_in(page, live_server, owner, detail)
    visitor.assert_clean("organisation page")
    assert "Captions" in page.inner_text("#studies-heading ~ ul")
    page.get_by_label("Add an account by username").fill("max")
    page.get_by_label("Role").select_option("member")
    page.get_by_role("button", name="Add", exact=True).press("Enter")
    page.wait_for_url(re.compile(re.escape(live_server.url + detail)))
    page.wait_for_load_state("load")
    visitor.assert_clean("after adding a member")
    assert "max is now a member of the organisation." in page.inner_text(".messages")
    assert "max" in page.inner_text(".org-members")
    page.screenshot(path=str(artifacts_dir / "accounts-organisation.png"), full_page=True)
    visitor.close()
