"""The download views: every export streamed to the study's researchers under its
file name, ``datasets`` downloads that leave nothing behind, refusals explained,
and 404 for everyone else."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.test import Client
from django.urls import reverse

from annotation.exports import registry
from annotation.models import Membership, RewardModelVersion, Study
from tests.annotation.exports.answered import TEXT_FORMATS, Studies, answered_studies, body, jsonl
from tests.annotation.exports.chats import hh_study
from tests.factories import study_with_queue

pytestmark = pytest.mark.django_db


@pytest.fixture
def studies(make_member) -> Studies:
    return answered_studies(make_member)


def _export_url(study: Study, key: str) -> str:
    return reverse("study_export", args=[study.slug, key])


@pytest.mark.parametrize("key", TEXT_FORMATS)
def test_researchers_download_every_text_format(studies: Studies, client_for, key: str):
    client = client_for(studies.researcher)
    response = client.get(_export_url(studies.pairwise, key), {"pseudonymise": "1"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == registry.get(key).content_type
    assert response["Cache-Control"] == "private, no-store"
    kind, suffix = key.split(".")
    # Plain-text prompts: DPO pairs default to the text form, written responses to prompt/completion.
    form = {"dpo": "-text", "sft": "-prompt_completion"}.get(kind, "")
    name = f"{studies.pairwise.slug}-{kind}{form}-pseudonymised.{suffix}"
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
    data = b"".join(response.streaming_content)
    assert data == body(studies.pairwise, key, pseudonymise=True)
    assert b"alice" not in data
    plain = client.get(_export_url(studies.pairwise, key))
    assert "pseudonymised" not in plain["Content-Disposition"]
    api = client.get(reverse("api_export", args=[studies.pairwise.slug, key]), {"pseudonymise": "1"})
    assert api.status_code == 200 and b"".join(api.streaming_content) == data


def test_dataset_downloads_load_with_datasets_and_leave_no_temporary_files(
    studies: Studies, client_for, tmp_path: Path, monkeypatch
):
    import tempfile

    import datasets

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    client = client_for(studies.researcher)

    response = client.get(_export_url(studies.listwise, "dpo.parquet"))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{studies.listwise.slug}-dpo-text.parquet"'
    parquet = tmp_path / "download.parquet"
    parquet.write_bytes(b"".join(response.streaming_content))  # the test client closes it at the end
    dataset = datasets.load_dataset("parquet", data_files=str(parquet), split="train", cache_dir=str(tmp_path / "c"))
    assert dataset.num_rows == 5 and dataset.features["prompt"] == datasets.Value("string")

    response = client.get(_export_url(studies.pairwise, "dpo-dataset.zip"))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    archive.extractall(tmp_path / "unzipped")
    (folder,) = (tmp_path / "unzipped").iterdir()
    assert datasets.load_from_disk(str(folder))["chosen"] == [r["chosen"] for r in jsonl(studies.pairwise, "dpo.jsonl")]
    assert list(scratch.iterdir()) == [], "the temporary build folder is removed when the response closes"


def test_an_abandoned_dataset_download_still_removes_its_folder(studies: Studies, client_for, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    response = client_for(studies.researcher).get(_export_url(studies.pairwise, "judgments-dataset.zip"))
    assert any(tmp_path.iterdir())
    # The client went away before reading a byte. (Closing sends request_finished,
    # which would close the test's database connection, as the test client knows.)
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_download_of_an_empty_study_explains_itself_on_the_study_page(client_for, make_member):
    study = study_with_queue(n_prompts=1, n_candidates=2)
    client = client_for(make_member(study, Membership.Role.RESEARCHER))
    response = client.get(_export_url(study, "dpo-dataset.zip"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("study_detail", args=[study.slug])
    assert "no preference pairs yet" in response.content.decode()
    api = client.get(reverse("api_export", args=[study.slug, "dpo-dataset.zip"]))
    assert api.status_code == 409 and "no preference pairs yet" in api.json()["detail"]


def test_an_unknown_format_is_a_404_and_the_api_names_the_known_ones(studies: Studies, client_for):
    client = client_for(studies.researcher)
    assert client.get(_export_url(studies.pairwise, "judgments.xml")).status_code == 404
    api = client.get(reverse("api_export", args=[studies.pairwise.slug, "judgments.xml"]))
    assert api.status_code == 404
    assert api.json()["detail"] == f"No export format “judgments.xml”; one of: {', '.join(registry.known_keys())}."


def test_the_study_page_links_every_export_format(studies: Studies, client_for):
    html = client_for(studies.researcher).get(reverse("study_detail", args=[studies.pairwise.slug])).content.decode()
    for export in registry.exports():
        url = _export_url(studies.pairwise, export.key)
        for form in export.forms:
            assert f'href="{url}?form={form}"' in html, export.key
            assert f'href="{url}?form={form}&amp;pseudonymise=1"' in html, export.key
        if not export.forms:
            assert f'href="{url}"' in html, export.key
            assert f'href="{url}?pseudonymise=1"' in html, export.key


def test_annotators_and_strangers_get_404_from_every_export_url(
    studies: Studies, client_for, outsider, settings, tmp_path: Path
):
    settings.PREFLOOP_CHECKPOINT_DIR = tmp_path
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "config.json").write_text("{}")
    RewardModelVersion.objects.create(
        study=studies.pairwise, version=1, model_type="mlp", embedder_key="t", n_judgments=4,
        checkpoint_path=str(tmp_path / "v1"),
    )  # fmt: skip
    checkpoint = reverse("model_checkpoint", args=[studies.pairwise.slug, 1])
    assert client_for(studies.researcher).get(checkpoint).status_code == 200
    urls = [_export_url(studies.pairwise, key) for key in registry.known_keys()]
    urls += [_export_url(studies.pairwise, "nonsense.txt"), checkpoint]
    for user in (studies.alice, outsider):
        client = client_for(user)
        for url in urls:
            assert client.get(url).status_code == 404, (user.username, url)
            assert client.get(url + "?pseudonymise=1").status_code == 404, (user.username, url)
    assert Client().get(urls[0]).status_code == 302  # anonymous: to the login page


def test_dpo_pairs_download_in_the_form_asked_for_with_the_studys_default_marked(client_for):
    study = hh_study()
    client = client_for(Membership.objects.get(study=study, role=Membership.Role.RESEARCHER).user)
    page = client.get(reverse("study_detail", args=[study.slug])).content.decode()
    url = _export_url(study, "dpo.jsonl")
    default = page.index(f'href="{url}?form=conversational"')
    assert "(default)" in page[default - 200 : default], "conversations default to the conversational form"
    assert "\\n\\nAssistant:" in page, "the page says what the text form holds"

    response = client.get(url, {"form": "text"})
    assert response["Content-Disposition"] == f'attachment; filename="{study.slug}-dpo-text.jsonl"'
    first = json.loads(b"".join(response.streaming_content).splitlines()[0])
    assert first["form"] == "text" and first["prompt"].endswith("\n\nAssistant:")
    api = client.get(reverse("api_export", args=[study.slug, "dpo.jsonl"]))
    assert api["Content-Disposition"] == f'attachment; filename="{study.slug}-dpo-conversational.jsonl"'

    refused = client.get(reverse("api_export", args=[study.slug, "dpo.jsonl"]), {"form": "chatml"})
    assert refused.status_code == 400 and "conversational, text" in refused.json()["detail"]
    refused = client.get(reverse("api_export", args=[study.slug, "judgments.jsonl"]), {"form": "text"})
    assert refused.status_code == 400
    page = client.get(url, {"form": "chatml"}, follow=True)
    assert page.redirect_chain[-1][0] == reverse("study_detail", args=[study.slug])
    assert "conversational or text" in page.content.decode()
