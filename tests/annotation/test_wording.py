"""Words a new user reads: the article before a role, help texts that render in the
admin (which treats them as HTML) and that speak of the app, not of its source files."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from annotation.models import Study
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

REPOSITORY_PATH = re.compile(r"\b[\w-]+/[\w/.-]*\.(?:md|py|txt)\b|\b(?:docs|models_runtime|activelearn|annotation)/")


@pytest.mark.parametrize(
    ("role", "said"), [("annotator", "is now an annotator."), ("researcher", "is now a researcher.")]
)
def test_adding_a_member_uses_the_right_article(client_for, researcher, study, role, said):
    UserFactory(username="newcomer")
    response = client_for(researcher).post(
        reverse("study_member_add", args=[study.slug]), {"username": "newcomer", "role": role}
    )
    assert [str(m) for m in get_messages(response.wsgi_request)] == [f"newcomer {said}"]


def test_help_texts_render_in_the_admin_and_name_no_repository_files(client, study):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    html = client.get(reverse("admin:annotation_study_change", args=[study.pk])).content.decode()
    assert "/join//" not in html and "/join/ followed by this token" in html
    for field in Study._meta.get_fields():
        text = str(getattr(field, "help_text", "") or "")
        assert not REPOSITORY_PATH.search(text), (field.name, text)
        assert "<" not in text, (field.name, text)  # the admin would swallow it as a tag


def test_the_settings_page_names_no_repository_files(client_for, researcher, study):
    html = client_for(researcher).get(reverse("study_settings", args=[study.slug])).content.decode()
    assert not REPOSITORY_PATH.search(html), REPOSITORY_PATH.search(html)
