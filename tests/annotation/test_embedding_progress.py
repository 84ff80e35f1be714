"""The study and import pages show how far the worker has embedded the candidates."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import EmbeddingProgress, ImportJob, Membership

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.mark.django_db
def test_the_study_and_import_pages_show_embedding_progress_and_poll_until_done(study, make_member, client_for):
    client = client_for(make_member(study, Membership.Role.RESEARCHER))
    page = client.get(reverse("study_detail", args=[study.slug])).content.decode()
    assert 'id="embedding-progress"' not in page, "nothing to show before the first import"

    progress = EmbeddingProgress.objects.create(study=study, status="running", done=1200, total=4616)
    job = ImportJob.objects.create(study=study, format="jsonl", file_path="x.jsonl", status="done")
    polled = reverse("embedding_progress", args=[study.slug])
    for url in (reverse("study_detail", args=[study.slug]), reverse("import_job_detail", args=[study.slug, job.pk])):
        page = client.get(url).content.decode()
        assert "Embedding candidates: 1,200 / 4,616" in page, url
        assert f'hx-get="{polled}"' in page, url

    progress.status, progress.done = "done", 4616
    progress.save()
    partial = client.get(polled, **HTMX).content.decode()
    assert "All 4,616 candidates embedded" in partial
    assert "hx-get" not in partial, "a finished embedding stops polling"

    progress.status, progress.error = "failed", "RuntimeError: encoder crashed"
    progress.save()
    assert "encoder crashed" in client.get(polled, **HTMX).content.decode()
    assert client.get(polled).status_code == 302, "a plain GET goes to the study page"
