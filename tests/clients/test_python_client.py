"""The Python client package (issue 18, clients/python) against the live app: it
signs in, creates a study, imports records (at once and as a background job),
reads progress, model versions and the leaderboard, downloads an export, and
turns the server's refusals into PrefloopError; and it installs with pip."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prefloop_client import Client, ImportJob, ImportResult, PrefloopError, Progress

from annotation.models import Membership, RewardModelVersion, Study
from annotation.services import assignment_lease_or_refill, judgment_submit
from tests.factories import PASSWORD, UserFactory

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def researcher(transactional_db):
    return UserFactory(username="client-researcher", is_staff=True)


def test_the_client_drives_a_study_from_creation_to_export(live_server, researcher, tmp_path, monkeypatch) -> None:
    from annotation.imports import upload
    from webapp.celery import app as celery_app

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)  # a background import, in the server's thread
    with pytest.raises(PrefloopError) as refused:
        Client.login(live_server.url, researcher.username, "not the password")
    assert refused.value.status == 400

    client = Client.login(live_server.url, researcher.username, PASSWORD)
    study = client.create_study("Client study", settings={"budget": 40, "mode": "pairwise"})
    slug = study["slug"]
    assert [s["slug"] for s in client.studies()] == [slug] and client.study(slug)["budget"] == 40
    with pytest.raises(PrefloopError) as bad:
        client.update_study(slug, {"budget": -1})
    assert bad.value.status == 400 and "budget" in bad.value.fields

    records = [{"prompt": f"Question {k}?", "candidates": [f"Answer {k}a.", f"Answer {k}b.", f"Answer {k}c."]}
               for k in range(4)]  # fmt: skip
    result = client.import_records(slug, records)
    assert isinstance(result, ImportResult) and (result.prompts_created, result.candidates_created) == (4, 12)
    with pytest.raises(PrefloopError) as invalid:
        client.import_records(slug, [{"prompt": "", "candidates": ["x"]}])
    assert invalid.value.status == 400 and "line 1" in invalid.value.detail.lower()

    # A file big enough to go to the background: waited for, or its job handed back.
    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 10)
    lines = tmp_path / "more.jsonl"
    lines.write_text("".join(json.dumps({"prompt": f"More {k}?", "candidates": ["Yes.", "No."]}) + "\n"
                             for k in range(3)))  # fmt: skip
    waited = client.import_file(slug, lines)
    assert isinstance(waited, ImportResult) and waited.prompts_created == 3
    job = client.import_file(slug, lines, wait=False)
    assert isinstance(job, (ImportJob, ImportResult))

    Study.objects.filter(slug=slug).update(status=Study.Status.ACTIVE)
    model = Study.objects.get(slug=slug)
    person = UserFactory(username="client-annotator")
    Membership.objects.create(user=person, study=model, role=Membership.Role.ANNOTATOR)
    for _ in range(5):
        lease = assignment_lease_or_refill(study=model, annotator=person)
        judgment_submit(study=model, annotator=person, comparison_id=lease.assignment.comparison_id, choice="a")
    RewardModelVersion.objects.create(study=model, version=1, model_type="kernel", embedder_key="t", n_judgments=5,
                                      checkpoint_path="/x", heldout_accuracy=0.6)  # fmt: skip
    progress = client.progress(slug)
    assert isinstance(progress, Progress)
    assert (progress.judgments, progress.budget, progress.percent, progress.annotators) == (5, 40, 12, 1)
    assert progress.model_version == 1 and progress.heldout_accuracy == 0.6 and progress.judgments_by_models == 0
    assert [v["version"] for v in client.model_versions(slug)] == [1]
    assert "models" in client.leaderboard(slug)

    exported = client.export(slug, "judgments.jsonl", tmp_path / "j.jsonl", pseudonymise=True)
    rows = [json.loads(line) for line in Path(exported).read_text().splitlines()]
    assert len(rows) == 5 and {r["annotator"] for r in rows} != {person.username}
    assert client.export(slug, "judgments.csv").startswith(b"judgment_id,")
    with pytest.raises(PrefloopError) as missing:
        client.export(slug, "nonsense.txt")
    assert missing.value.status == 404
    stranger = Client.login(live_server.url, person.username, PASSWORD)
    with pytest.raises(PrefloopError) as hidden:
        stranger.progress(slug)
    assert hidden.value.status == 404, "an annotator sees no researcher's figures"


def test_the_client_installs_with_pip(tmp_path: Path) -> None:
    # From a copy: a build writes its leftovers (build/, *.egg-info) beside the sources.
    source, target = tmp_path / "source", tmp_path / "site"
    shutil.copytree(REPO / "clients" / "python", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    shown = subprocess.run(
        [sys.executable, "-c", "import prefloop_client as p; print(p.__file__, p.__version__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(target)},
    )  # fmt: skip
    path, version = shown.stdout.split()
    assert path.startswith(str(target)) and version == "0.1.0"
    assert (target / "prefloop_client" / "py.typed").exists()
