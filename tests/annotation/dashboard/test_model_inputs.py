"""The study page says what the reward model sees and how many responses were cut."""

from __future__ import annotations

import re

from django.urls import reverse

from annotation.models import RewardModelVersion

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_the_versions_table_counts_the_responses_cut_to_the_encoders_length(client_for, researcher, study, tmp_path):
    study.features = "conversation"
    study.save(update_fields=["features"])
    RewardModelVersion.objects.create(
        study=study, version=1, model_type="mlp", embedder_key="minilm+conversation", n_judgments=4,
        checkpoint_path=str(tmp_path), metrics={"inputs": 9.0, "inputs_truncated": 2.0},
    )  # fmt: skip
    html = client_for(researcher).get(reverse("study_dashboard", args=[study.slug]), **HTMX).content.decode()
    line = re.sub(r"\s+", " ", html[html.index('id="model-inputs"') :].split("</p>")[0])
    assert "sees whole conversation + response" in line
    assert "2 of 9 responses were too long for the encoder" in line


def test_no_count_before_a_version_recorded_one(client_for, researcher, study, tmp_path):
    RewardModelVersion.objects.create(
        study=study, version=1, model_type="mlp", embedder_key="minilm", n_judgments=4, checkpoint_path=str(tmp_path),
    )  # fmt: skip
    html = client_for(researcher).get(reverse("study_dashboard", args=[study.slug]), **HTMX).content.decode()
    assert 'id="model-inputs"' not in html
