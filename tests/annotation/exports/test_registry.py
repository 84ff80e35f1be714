"""The registry of downloads: the keys, file names and labels researchers rely on,
and a kind added with one line is served like the built-in ones."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from annotation.exports import registry
from annotation.exports.registry import Export
from annotation.exports.writers import CSV, JSONL
from annotation.models import Judgment
from tests.annotation.exports import toy_kind
from tests.annotation.exports.answered import Studies

pytestmark = pytest.mark.django_db


def test_downloads_keep_their_keys_labels_file_names_and_content_types():
    table = [
        (e.key, e.label, e.file_name(slug="s"), e.file_name(slug="s", pseudonymise=True), e.content_type)
        for e in registry.exports()
    ]
    ndjson, text_csv, parquet, zip_ = (
        "application/x-ndjson; charset=utf-8", "text/csv; charset=utf-8", "application/vnd.apache.parquet",
        "application/zip",
    )  # fmt: skip
    assert table == [
        (
            "judgments.jsonl", "All judgments (JSON lines)", "s-judgments.jsonl", "s-judgments-pseudonymised.jsonl",
            ndjson,
        ),
        ("judgments.csv", "All judgments (CSV)", "s-judgments.csv", "s-judgments-pseudonymised.csv", text_csv),
        ("dpo.jsonl", "DPO pairs (JSON lines)", "s-dpo.jsonl", "s-dpo-pseudonymised.jsonl", ndjson),
        ("dpo.csv", "DPO pairs (CSV)", "s-dpo.csv", "s-dpo-pseudonymised.csv", text_csv),
        (
            "rankings.jsonl", "Listwise rankings (JSON lines)", "s-rankings.jsonl", "s-rankings-pseudonymised.jsonl",
            ndjson,
        ),
        ("skips.jsonl", "Skipped comparisons (JSON lines)", "s-skips.jsonl", "s-skips-pseudonymised.jsonl", ndjson),
        ("skips.csv", "Skipped comparisons (CSV)", "s-skips.csv", "s-skips-pseudonymised.csv", text_csv),
        ("dpo.parquet", "DPO pairs (Hugging Face parquet)", "s-dpo.parquet", "s-dpo-pseudonymised.parquet", parquet),
        (
            "judgments.parquet", "All judgments (Hugging Face parquet)", "s-judgments.parquet",
            "s-judgments-pseudonymised.parquet", parquet,
        ),
        (
            "dpo-dataset.zip", "DPO pairs (datasets save_to_disk folder, zipped)", "s-dpo-dataset.zip",
            "s-dpo-pseudonymised-dataset.zip", zip_,
        ),
        (
            "judgments-dataset.zip", "All judgments (datasets save_to_disk folder, zipped)",
            "s-judgments-dataset.zip", "s-judgments-pseudonymised-dataset.zip", zip_,
        ),
        ("sft.jsonl", "Written responses (SFT) (JSON lines)", "s-sft.jsonl", "s-sft-pseudonymised.jsonl", ndjson),
        (
            "sft.parquet", "Written responses (SFT) (Hugging Face parquet)", "s-sft.parquet",
            "s-sft-pseudonymised.parquet", parquet,
        ),
    ]  # fmt: skip
    assert registry.known_keys() == [row[0] for row in table]


def test_a_key_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Export(registry.get("dpo.jsonl").kind, JSONL))
    assert registry.known_keys().count("dpo.jsonl") == 1


def test_a_kind_added_to_the_registry_is_served_by_the_download_views(studies: Studies, client_for):
    client = client_for(studies.researcher)
    study = studies.pairwise
    page_url = reverse("study_export", args=[study.slug, "choices.csv"])
    api_url = reverse("api_export", args=[study.slug, "choices.csv"])
    assert client.get(page_url).status_code == 404

    with registry.registered(Export(toy_kind.KIND, CSV)):
        response = client.get(page_url, {"pseudonymise": "1"})
        assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"] == f'attachment; filename="{study.slug}-choices-pseudonymised.csv"'
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert tuple(rows[0]) == toy_kind.SCHEMA.names
        assert [row[2] for row in rows[1:]] == list(
            Judgment.objects.filter(study=study).order_by("id").values_list("choice", flat=True)
        )
        assert "alice" not in {row[1] for row in rows[1:]}
        api = client.get(api_url)
        assert api.status_code == 200 and b"".join(api.streaming_content).startswith(b"judgment_id,annotator,")
        page = client.get(reverse("study_detail", args=[study.slug])).content.decode()
        assert f'href="{page_url}"' in page and "Choices only (CSV)" in page

    assert client.get(page_url).status_code == 404
    assert "choices.csv" not in registry.known_keys()
