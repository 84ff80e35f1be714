"""``manage.py seed_demo``: demo users, a study with data, idempotent."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotation.models import Candidate, Membership, Prompt, Study


def _seed_counts() -> tuple[int, ...]:
    return (
        get_user_model().objects.count(),
        Study.objects.count(),
        Membership.objects.count(),
        Prompt.objects.count(),
        Candidate.objects.count(),
    )


@pytest.fixture(autouse=True)
def _debug_on(settings) -> None:
    """The published demo passwords are for DEBUG machines (``scripts/run``)."""
    settings.DEBUG = True


@pytest.mark.django_db
def test_seed_demo_creates_users_study_and_memberships_and_is_idempotent() -> None:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    first = _seed_counts()
    call_command("seed_demo", stdout=io.StringIO())

    assert _seed_counts() == first == (4, 1, 3, 30, 120)
    users = {u.username: u for u in get_user_model().objects.all()}
    assert users["annotator"].check_password("annotate-demo")
    assert users["annotator2"].check_password("annotate-demo")
    assert users["researcher"].check_password("research-demo")
    # Access to a study follows membership; staff is only for Django's admin.
    assert not users["researcher"].is_staff and not users["researcher"].is_superuser
    assert users["admin"].is_superuser and users["admin"].check_password("admin-demo")
    assert not users["annotator"].is_staff

    study = Study.objects.get(slug="demo")
    assert study.name == "Demo: which answer is more helpful?"
    assert study.budget == 300
    assert "`1`" in study.guidelines and "tie" in study.guidelines
    roles = dict(study.memberships.values_list("user__username", "role"))
    assert roles == {"annotator": "annotator", "annotator2": "annotator", "researcher": "researcher"}
    assert study.prompts.filter(format=Prompt.Format.CONVERSATION).count() >= 2
    assert set(study.candidates.values_list("source", flat=True)) == {
        "model-alpha", "model-beta", "model-gamma", "model-delta",
    }  # fmt: skip
    assert "annotate-demo" in out.getvalue() and "admin-demo" in out.getvalue()


@pytest.mark.django_db
def test_seed_demo_reset_recreates_the_study() -> None:
    call_command("seed_demo", stdout=io.StringIO())
    old = Study.objects.get(slug="demo")
    old.prompts.first().delete()
    old.name = "Renamed by someone"
    old.save(update_fields=["name"])

    call_command("seed_demo", "--reset", stdout=io.StringIO())

    new = Study.objects.get(slug="demo")
    assert new.pk != old.pk
    assert new.name == "Demo: which answer is more helpful?"
    assert (new.prompts.count(), new.candidates.count(), new.memberships.count()) == (30, 120, 3)
    assert get_user_model().objects.count() == 4


@pytest.mark.django_db
def test_seed_demo_refuses_the_published_passwords_when_debug_is_off(settings) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--random-passwords"):
        call_command("seed_demo", stdout=io.StringIO())
    assert _seed_counts() == (0, 0, 0, 0, 0)

    out = io.StringIO()
    call_command("seed_demo", "--random-passwords", stdout=out)
    users = {u.username: u for u in get_user_model().objects.all()}
    assert set(users) == {"annotator", "annotator2", "researcher", "admin"}
    for user in users.values():
        assert not user.check_password("annotate-demo") and not user.check_password("admin-demo")
    printed = out.getvalue()
    assert "admin-demo" not in printed and "research-demo" not in printed
    admin_line = next(line for line in printed.splitlines() if line.strip().startswith("admin "))
    assert users["admin"].check_password(admin_line.split("/")[1].split()[0])

    # Once the users exist, running it again creates nothing with a known password.
    again = io.StringIO()
    call_command("seed_demo", stdout=again)
    assert "(unchanged)" in again.getvalue()
