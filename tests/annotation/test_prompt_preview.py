"""Long prompts: the annotate page sends a bounded preview, the rest comes on demand.

A 1 MB prompt used to be rendered whole into the page, and a 12 MB one took
14 s to reach. These tests bound what the page carries; the figures (server
time and page size) are printed for the record, never asserted on, since they
depend on the machine:

    pytest -s tests/annotation/test_prompt_preview.py -k figures
"""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from annotation.models import Assignment, Prompt
from tests.annotation.test_views import HTMX, annotate_url
from tests.factories import CandidateFactory, PromptFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db

SENTENCE = (
    "the library opens at nine and closes at five on weekdays while volunteers sort returned books "
    "into carts by subject before shelving them again each evening"
)
WORDS = SENTENCE.split(" ")


def _sentence(k: int) -> str:
    return " ".join(WORDS[(k + i) % len(WORDS)] for i in range(24)).capitalize() + "."


def _conversation(size: int) -> str:
    """An HH-RLHF style transcript of about ``size`` characters (turns of ~2 KB)."""
    parts, total, k = [], 0, 0
    while total < size:
        role = "Human" if k % 2 == 0 else "Assistant"
        turn = f"\n\n{role}: " + " ".join(_sentence(k * 13 + j) for j in range(14))
        parts.append(turn)
        total += len(turn)
        k += 1
    parts.append("\n\nHuman: So which of these opening times is right? LAST-TURN-MARK")
    return "".join(parts)


def _plain(size: int) -> str:
    lines, total, k = [], 0, 0
    while total < size:
        line = _sentence(k)
        lines.append(line)
        total += len(line) + 1
        k += 1
    return "FIRST-LINE-MARK\n" + "\n".join(lines) + "\nLAST-LINE-MARK"


def _study_with_prompt(text: str, username: str):
    study = StudyFactory()
    prompt = PromptFactory(study=study, text=text)
    CandidateFactory(prompt=prompt, text="It opens at nine.")
    CandidateFactory(prompt=prompt, text="It opens at ten.")
    user = UserFactory(username=username)
    study.memberships.create(user=user, role="annotator")
    return study, user


@pytest.mark.parametrize("kind", ["conversation", "plain"])
def test_a_long_prompt_is_previewed_and_shown_whole_on_demand(client, kind):
    text = _conversation(1_000_000) if kind == "conversation" else _plain(1_000_000)
    study, user = _study_with_prompt(text, f"reader-{kind}")
    client.force_login(user)
    page = client.get(annotate_url(study))
    html = page.content.decode()
    assert page.status_code == 200
    assert len(page.content) < 150_000, f"the page carries {len(page.content)} bytes for a 1 MB prompt"
    # The end of the prompt (the conversation's last turn) is in the preview.
    assert "LAST-" in html
    assert "Show all (1.0 MB)" in html
    comparison_id = int(page.context["comparison"].comparison_id)
    full = client.get(reverse("annotate_prompt", args=[study.slug, comparison_id]), **HTMX)
    assert full.status_code == 200
    assert full.content.decode().count(WORDS[3]) > html.count(WORDS[3]) * 5
    assert "no-store" in full["Cache-Control"]


def test_the_whole_prompt_is_only_for_the_annotator_it_was_given_to(client):
    study, user = _study_with_prompt(_plain(100_000), "owner")
    client.force_login(user)
    comparison_id = int(client.get(annotate_url(study)).context["comparison"].comparison_id)
    url = reverse("annotate_prompt", args=[study.slug, comparison_id])
    client.logout()
    assert client.get(url)["Location"].startswith(reverse("login"))
    stranger = UserFactory(username="stranger")
    study.memberships.create(user=stranger, role="annotator")
    client.force_login(stranger)
    Assignment.objects.filter(annotator=stranger).delete()
    assert client.get(reverse("annotate_prompt", args=[study.slug, comparison_id]), **HTMX).status_code == 404
    _study_with_prompt("short", "outsider")
    outsider = UserFactory._meta.model.objects.get(username="outsider")
    client.force_login(outsider)
    assert client.get(reverse("annotate_prompt", args=[study.slug, comparison_id]), **HTMX).status_code == 404


@pytest.mark.parametrize("size_mb", [1, 12])
@pytest.mark.parametrize("kind", ["conversation", "plain"])
def test_figures_time_and_size_of_the_annotate_page(client, kind, size_mb):
    """Prints the server time and size of the annotate page for a large prompt."""
    size = size_mb * 1_000_000
    text = _conversation(size) if kind == "conversation" else _plain(size)
    study, user = _study_with_prompt(text, f"figures-{kind}-{size_mb}")
    assert Prompt.objects.get(study=study).text == text
    client.force_login(user)
    seconds = []
    for _ in range(2):  # the first request also leases the comparison and warms the templates up
        start = time.perf_counter()
        page = client.get(annotate_url(study))
        seconds.append(time.perf_counter() - start)
        assert page.status_code == 200
    print(
        f"\n[figures] {kind} prompt {size_mb} MB: annotate page {seconds[0]:.2f} s first, {seconds[1]:.2f} s again,"
        f" {len(page.content) / 1e6:.3f} MB"
    )
