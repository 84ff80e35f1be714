"""Reward-model checkpoints as zip downloads, and only from the checkpoint folder."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.urls import reverse

from annotation.models import RewardModelVersion, Study

pytestmark = pytest.mark.django_db


@pytest.fixture
def checkpoint(study: Study, settings, tmp_path: Path) -> RewardModelVersion:
    import numpy as np
    from safetensors.numpy import save_file

    settings.PREFLOOP_CHECKPOINT_DIR = tmp_path / "checkpoints"
    folder = settings.PREFLOOP_CHECKPOINT_DIR / f"study-{study.id}" / "v00001-abcdef12"
    folder.mkdir(parents=True)
    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"format": "prefloop-reward", "input_dim": 3}')
    return RewardModelVersion.objects.create(
        study=study, version=1, model_type="mlp", embedder_key="test", n_judgments=4, checkpoint_path=str(folder)
    )


def test_checkpoint_download_is_a_zip_of_the_model_folder(study: Study, researcher, checkpoint, client_for):
    from safetensors.numpy import load

    client = client_for(researcher)
    url = reverse("model_checkpoint", args=[study.slug, 1])
    page = client.get(reverse("study_detail", args=[study.slug]))
    assert url in page.content.decode()
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="{study.slug}-model-v1.zip"'
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["model-v1/config.json", "model-v1/model.safetensors"]
    assert json.loads(archive.read("model-v1/config.json"))["input_dim"] == 3
    assert load(archive.read("model-v1/model.safetensors"))["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert client.get(reverse("model_checkpoint", args=[study.slug, 2])).status_code == 404
    api = client.get(reverse("api_checkpoint", args=[study.slug, 1]))
    assert api.status_code == 200 and zipfile.ZipFile(io.BytesIO(b"".join(api.streaming_content))).testzip() is None


def test_checkpoints_outside_the_checkpoint_folder_or_gone_are_not_served(
    study: Study, researcher, checkpoint, client_for, tmp_path: Path
):
    client = client_for(researcher)
    url = reverse("model_checkpoint", args=[study.slug, 1])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_text("not a model")
    RewardModelVersion.objects.filter(id=checkpoint.id).update(checkpoint_path=str(outside))
    assert client.get(url).status_code == 404
    assert client.get(reverse("api_checkpoint", args=[study.slug, 1])).status_code == 404
    RewardModelVersion.objects.filter(id=checkpoint.id).update(checkpoint_path=checkpoint.checkpoint_path + "-gone")
    assert client.get(url).status_code == 404
