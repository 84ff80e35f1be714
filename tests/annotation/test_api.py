"""The REST API through real requests: token auth, studies, answering, results."""

from __future__ import annotations

import gzip
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Assignment, Candidate, ImportJob, Judgment, Membership, RewardModelVersion, Study
from tests.factories import UserFactory, study_with_queue
from tests.shared_data import REAL_HH

pytestmark = pytest.mark.django_db


def api_as(user) -> APIClient:
    """A client that authenticates with the user's API token, as a script would."""
    from rest_framework.authtoken.models import Token

    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_a_token_comes_from_username_and_password_and_is_required():
    UserFactory(username="scripted", password="a-long-password-123")
    anonymous = APIClient()
    assert anonymous.get("/api/v1/studies/").status_code == 401
    refused = anonymous.post("/api/v1/auth/token/", {"username": "scripted", "password": "wrong"}, format="json")
    assert refused.status_code == 400
    response = anonymous.post(
        "/api/v1/auth/token/", {"username": "scripted", "password": "a-long-password-123"}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/studies/").json() == []
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/api/v1/studies/").status_code == 401


def test_researchers_create_studies_with_settings_checked_field_by_field(study, researcher):
    client = api_as(researcher)
    bad = client.post(
        "/api/v1/studies/",
        {"name": "Bad", "settings": {"list_size": 12, "strategy_params": {"nonsense": 1}, "colour": "red"}},
        format="json",
    )
    assert bad.status_code == 400
    assert set(bad.json()["fields"]) == {"colour"}, "unknown settings are refused before anything else"
    bad = client.post("/api/v1/studies/", {"name": "Bad", "settings": {"gold_rate": 2}}, format="json")
    assert bad.status_code == 400 and "gold_rate" in bad.json()["fields"]
    assert not Study.objects.filter(name="Bad").exists()

    made = client.post(
        "/api/v1/studies/",
        {"name": "Ranked lists", "settings": {"mode": "listwise", "list_size": 4, "budget": 50}},
        format="json",
    )
    assert made.status_code == 201, made.json()
    body = made.json()
    assert body["role"] == "researcher" and body["mode"] == "listwise" and body["list_size"] == 4
    created = Study.objects.get(slug=body["slug"])
    assert Membership.objects.get(study=created, user=researcher).role == "researcher"


def test_annotators_cannot_create_studies(study, annotator):
    response = api_as(annotator).post("/api/v1/studies/", {"name": "Mine"}, format="json")
    assert response.status_code == 403


def test_settings_change_and_the_comparison_shape_locks_once_judged(study, researcher, annotator):
    client = api_as(researcher)
    changed = client.patch(f"/api/v1/studies/{study.slug}/", {"settings": {"budget": 77}}, format="json")
    assert changed.status_code == 200 and changed.json()["budget"] == 77
    _answer_one(api_as(annotator), study)
    locked = client.patch(
        f"/api/v1/studies/{study.slug}/", {"settings": {"mode": "listwise", "list_size": 3}}, format="json"
    )
    assert locked.status_code == 400
    assert set(locked.json()["fields"]) == {"mode", "list_size"}
    study.refresh_from_db()
    assert study.mode == "pairwise" and study.budget == 77
    assert api_as(annotator).patch(f"/api/v1/studies/{study.slug}/", {"settings": {}}, format="json").status_code == 404


def _answer_one(client, study, choice="a"):
    shown = client.get(f"/api/v1/studies/{study.slug}/next/").json()
    response = client.post(
        f"/api/v1/studies/{study.slug}/judgments/",
        {"comparison_id": shown["comparison_id"], "choice": choice, "time_on_task_ms": 1200},
        format="json",
    )
    return shown, response


def test_a_program_annotates_through_next_and_judgments(study, annotator):
    client = api_as(annotator)
    seen = client.get(f"/api/v1/studies/{study.slug}/").json()
    assert seen["role"] == "annotator" and "strategy" not in seen, "annotators see the task, not the set-up"
    first = client.get(f"/api/v1/studies/{study.slug}/next/").json()
    again = client.get(f"/api/v1/studies/{study.slug}/next/").json()
    assert first["comparison_id"] == again["comparison_id"], "the lease is kept until answered"
    assert [c["label"] for c in first["candidates"]] == ["A", "B"]
    assert all(c["source"] == "" for c in first["candidates"]), "blind study: no model names"

    answered = client.post(
        f"/api/v1/studies/{study.slug}/judgments/",
        {"comparison_id": first["comparison_id"], "choice": "b", "time_on_task_ms": 900},
        format="json",
    )
    assert answered.status_code == 201
    judgment = Judgment.objects.get(pk=answered.json()["id"])
    b_id = judgment.shown_order[1]
    assert judgment.ranking[0] == b_id and judgment.client_info == {"via": "api"}
    replay = client.post(
        f"/api/v1/studies/{study.slug}/judgments/",
        {"comparison_id": first["comparison_id"], "choice": "a"},
        format="json",
    )
    assert replay.status_code == 200 and replay.json()["id"] == judgment.id and not replay.json()["created"]
    assert Judgment.objects.count() == 1

    following = client.get(f"/api/v1/studies/{study.slug}/next/").json()
    assert following["comparison_id"] != first["comparison_id"]
    assert following["progress"]["mine"] == 1


def test_a_cycle_of_next_and_answer_is_a_handful_of_statements(study, annotator, django_assert_max_num_queries):
    """The annotate cycle runs for every answer of every annotator (issue 16):
    sign-in, the study, the lease (counts, pick, lease, status) and the shown
    comparison; then the answer (its target, the judgment, the lease, the
    status) and the loop's one read. Was 14 + 12 before they were written out."""
    client = api_as(annotator)
    _answer_one(client, study)  # the loop's claims taken, connections open
    with django_assert_max_num_queries(10):
        shown = client.get(f"/api/v1/studies/{study.slug}/next/").json()
    with django_assert_max_num_queries(11):
        response = client.post(
            f"/api/v1/studies/{study.slug}/judgments/",
            {"comparison_id": shown["comparison_id"], "choice": "a"},
            format="json",
        )
    assert response.status_code == 201


def test_bad_answers_are_refused_with_the_reason(study, annotator, outsider):
    client = api_as(annotator)
    shown = client.get(f"/api/v1/studies/{study.slug}/next/").json()
    url = f"/api/v1/studies/{study.slug}/judgments/"
    both = client.post(url, {"comparison_id": shown["comparison_id"], "choice": "a", "ranking": [0, 1]}, format="json")
    assert both.status_code == 400
    unknown = client.post(url, {"comparison_id": shown["comparison_id"], "choice": "maybe"}, format="json")
    assert unknown.status_code == 400 and "choice" in unknown.json()
    not_mine = client.post(url, {"comparison_id": 10**9, "choice": "a"}, format="json")
    assert not_mine.status_code == 400 and "comparison" in not_mine.json()["detail"]
    Study.objects.filter(pk=study.pk).update(allow_tie=False)
    tie = client.post(url, {"comparison_id": shown["comparison_id"], "choice": "tie"}, format="json")
    assert tie.status_code == 400 and "ties" in tie.json()["detail"]
    assert not Judgment.objects.exists()
    assert api_as(outsider).get(f"/api/v1/studies/{study.slug}/next/").status_code == 404


def test_lists_are_ranked_by_position_with_ties_where_allowed(db):
    study = study_with_queue(n_prompts=2, n_candidates=4, mode="listwise", list_size=3)
    user = UserFactory()
    Membership.objects.create(study=study, user=user, role="annotator")
    client = api_as(user)
    shown = client.get(f"/api/v1/studies/{study.slug}/next/").json()
    assert len(shown["candidates"]) == 3
    url = f"/api/v1/studies/{study.slug}/judgments/"
    incomplete = client.post(url, {"comparison_id": shown["comparison_id"], "ranking": [2, 0]}, format="json")
    assert incomplete.status_code == 400
    ranked = client.post(url, {"comparison_id": shown["comparison_id"], "ranking": [[2, 0], 1]}, format="json")
    assert ranked.status_code == 201, ranked.json()
    judgment = Judgment.objects.get()
    order = judgment.shown_order
    assert judgment.choice == "ranked"
    first_group, second = judgment.ranking
    assert set(first_group) == {order[2], order[0]} and second in (order[1], [order[1]])


def test_skips_go_back_to_the_queue_with_the_reason(study, annotator):
    client = api_as(annotator)
    shown = client.get(f"/api/v1/studies/{study.slug}/next/").json()
    url = f"/api/v1/studies/{study.slug}/skips/"
    assert (
        client.post(url, {"comparison_id": shown["comparison_id"], "reason": "why"}, format="json").status_code == 400
    )
    skipped = client.post(url, {"comparison_id": shown["comparison_id"], "reason": "broken"}, format="json")
    assert skipped.status_code == 204
    assignment = Assignment.objects.get(comparison_id=shown["comparison_id"], annotator=annotator)
    assert assignment.status == "skipped" and assignment.skip_reason == "broken"
    assert client.get(f"/api/v1/studies/{study.slug}/next/").json()["comparison_id"] != shown["comparison_id"]


def test_annotators_list_only_their_own_judgments_researchers_all(study, annotator, researcher, make_member):
    other = make_member(study, "annotator")
    _answer_one(api_as(annotator), study)
    _answer_one(api_as(other), study)
    mine = api_as(annotator).get(f"/api/v1/studies/{study.slug}/judgments/").json()["results"]
    assert len(mine) == 1 and Judgment.objects.get(pk=mine[0]["id"]).annotator == annotator
    everyone = api_as(researcher).get(f"/api/v1/studies/{study.slug}/judgments/").json()["results"]
    assert len(everyone) == 2


def test_a_closed_study_says_so_and_a_finished_annotator_gets_the_completion_code(study, annotator):
    client = api_as(annotator)
    Study.objects.filter(pk=study.pk).update(annotator_quota=1, completion_code="C0DE42")
    _answer_one(client, study)
    done = client.get(f"/api/v1/studies/{study.slug}/next/").json()
    assert done["comparison_id"] is None and done["completion_code"] == "C0DE42"
    Study.objects.filter(pk=study.pk).update(status="closed")
    assert client.get(f"/api/v1/studies/{study.slug}/next/").status_code == 409


def test_model_versions_are_listed_for_researchers_only(study, researcher, annotator):
    RewardModelVersion.objects.create(
        study=study, version=1, model_type="mlp", embedder_key="k", n_judgments=9, heldout_accuracy=0.75,
        checkpoint_path="/nowhere",
    )  # fmt: skip
    RewardModelVersion.objects.create(
        study=study, version=2, model_type="mlp", embedder_key="k", n_judgments=12, checkpoint_path="/nowhere",
        pruned_at=timezone.now(),
    )  # fmt: skip
    body = api_as(researcher).get(f"/api/v1/studies/{study.slug}/model-versions/?page_size=1").json()
    assert body["results"][0]["version"] == 2 and body["results"][0]["checkpoint_url"] == ""  # pruned
    rows = api_as(researcher).get(body["next"]).json()["results"]
    assert rows[0]["version"] == 1 and rows[0]["heldout_accuracy"] == 0.75
    assert rows[0]["checkpoint_url"].endswith(f"/api/v1/studies/{study.slug}/model-versions/1/checkpoint/")
    assert api_as(annotator).get(f"/api/v1/studies/{study.slug}/model-versions/").status_code == 404


# --- imports -------------------------------------------------------------------------

HH_PAIR = {
    "chosen": "\n\nHuman: How do I boil an egg?\n\nAssistant: Six minutes.",
    "rejected": "\n\nHuman: How do I boil an egg?\n\nAssistant: Microwave it.",
}


def _import(client, study, name: str, content: bytes, **fields):
    return client.post(
        f"/api/v1/studies/{study.slug}/imports/",
        {"file": SimpleUploadedFile(name, content), **fields},
        format="multipart",
    )


def test_small_csv_and_hh_rlhf_uploads_are_imported_at_once(study, researcher):
    client = api_as(researcher)
    made = _import(client, study, "pairs.csv", b"prompt,response_1,response_2\nName a colour,Red,Blue\n")
    assert made.status_code == 201, made.json()
    assert made.json() == {
        "prompts_created": 1,
        "prompts_existing": 0,
        "candidates_created": 2,
        "duplicates_skipped": 0,
        "rows_skipped": 0,
    }
    assert set(Candidate.objects.filter(prompt__text="Name a colour").values_list("text", flat=True)) == {"Red", "Blue"}

    made = _import(client, study, "train.jsonl", json.dumps(HH_PAIR).encode(), record_preference="false")
    assert made.status_code == 201 and made.json()["candidates_created"] == 2
    six = Candidate.objects.get(study=study, text="Six minutes.")
    assert six.prompt.text == "Human: How do I boil an egg?" and six.metadata == {}


def test_bad_uploads_are_refused_with_the_row_and_field_and_import_nothing(study, researcher):
    client = api_as(researcher)
    before = Candidate.objects.count()
    bad = _import(client, study, "pairs.csv", b"prompt,response\nfine,a\n,orphan\n")
    assert bad.status_code == 400
    assert bad.json() == {
        "detail": 'Nothing imported: row 3, field "prompt": is empty (and no earlier row has this prompt_id)'
    }
    unknown = _import(client, study, "notes.txt", b"hello")
    assert unknown.status_code == 400 and "cannot tell the format of 'notes.txt'" in unknown.json()["detail"]
    chosen = _import(client, study, "notes.txt", b'{"prompt": "p", "candidates": ["a"]}\n', format="jsonl")
    assert chosen.status_code == 201
    missing = client.post(f"/api/v1/studies/{study.slug}/imports/", {}, format="multipart")
    assert missing.json() == {"detail": 'Send the file as the multipart field “file”, or JSON {"records": [...]}.'}
    assert Candidate.objects.count() == before + 1


def test_a_large_upload_is_accepted_as_a_job_that_the_worker_runs_and_the_api_reports(
    study, researcher, monkeypatch, settings, tmp_path, django_capture_on_commit_callbacks
):
    from annotation.imports import upload
    from webapp.celery import app as celery_app

    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 100)
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", True)
    lines = "".join(json.dumps({"prompt": f"Prompt {i}", "candidates": [f"x{i}", f"y{i}"]}) + "\n" for i in range(20))
    client = api_as(researcher)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        accepted = _import(client, study, "big.jsonl", lines.encode())
    assert accepted.status_code == 202, accepted.json()
    job = accepted.json()
    assert (job["status"], job["format"], job["original_name"], job["result"]) == ("queued", "jsonl", "big.jsonl", None)
    assert job["url"].endswith(f"/api/v1/studies/{study.slug}/imports/{job['id']}/")
    assert accepted["Location"] == job["url"]

    for callback in callbacks:
        callback()  # the commit: the task runs, in-process
    done = client.get(job["url"])
    assert done.status_code == 200
    body = done.json()
    assert (body["status"], body["percent"], body["total"], body["error"]) == ("done", 100, 20, "")
    assert body["result"] == {
        "prompts_created": 20,
        "prompts_existing": 0,
        "candidates_created": 40,
        "duplicates_skipped": 0,
        "rows_skipped": 0,
    }
    assert Candidate.objects.filter(study=study, text="y19").exists()


def test_import_jobs_are_shown_to_the_study_researchers_only(study, researcher, annotator):
    job = ImportJob.objects.create(study=study, format="csv", file_path="imports/x/y.csv", original_name="y.csv")
    other = study_with_queue(n_prompts=1, n_candidates=2)
    theirs = ImportJob.objects.create(study=other, format="csv", file_path="imports/z/y.csv")
    other_researcher = UserFactory()
    Membership.objects.create(study=other, user=other_researcher, role=Membership.Role.RESEARCHER)
    url = f"/api/v1/studies/{study.slug}/imports/{job.pk}/"
    seen = api_as(researcher).get(url)
    assert seen.status_code == 200 and seen.json()["status"] == "queued" and seen.json()["percent"] == 0
    assert api_as(annotator).get(url).status_code == 404
    assert api_as(other_researcher).get(url).status_code == 404
    assert api_as(researcher).get(f"/api/v1/studies/{study.slug}/imports/{theirs.pk}/").status_code == 404


@pytest.fixture
def eager(monkeypatch):
    from webapp.celery import app as celery_app

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", True)


def test_a_compressed_hh_rlhf_upload_runs_as_a_job_and_keeps_empty_replies(
    study, researcher, eager, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    """Any format, compressed or not, through the API as through the page: a gzip upload
    holding more than the in-request limit is a job (202)."""
    from annotation.imports import upload

    monkeypatch.setattr(upload, "SYNC_IMPORT_MAX_BYTES", 10)
    settings.MEDIA_ROOT = tmp_path / "media"
    empty = {**HH_PAIR, "chosen": "\n\nHuman: How do I boil an egg?\n\nAssistant: "}
    content = gzip.compress(b"".join(json.dumps(row).encode() + b"\n" for row in (HH_PAIR, empty)))
    client = api_as(researcher)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        accepted = _import(client, study, "pairs.jsonl.gz", content)
    assert accepted.status_code == 202, accepted.json()
    assert accepted.json()["format"] == "hh_rlhf"
    for callback in callbacks:
        callback()  # the commit: the task runs, in-process
    done = client.get(accepted.json()["url"]).json()
    assert done["status"] == "done" and done["result"]["prompts_created"] == 2
    assert Candidate.objects.filter(study=study, text="").count() == 1


def test_skip_invalid_imports_the_valid_rows_and_reports_the_others(study, researcher):
    client = api_as(researcher)
    content = json.dumps(HH_PAIR).encode() + b"\n" + b'{"chosen": "no turns"}\n' + b"{oops\n"
    all_or_nothing = _import(client, study, "pairs.jsonl", content)
    assert all_or_nothing.status_code == 400
    assert all_or_nothing.json()["detail"] == 'Nothing imported: line 2, field "rejected": is required'

    made = _import(client, study, "pairs.jsonl", content, skip_invalid="true")

    assert made.status_code == 201, made.json()
    body = made.json()
    assert (body["prompts_created"], body["candidates_created"], body["rows_skipped"]) == (1, 2, 2)
    job = body["job"]
    assert (job["status"], job["skipped_count"]) == ("done", 2)
    assert [(row["line"], row["field"]) for row in job["skipped"]] == [(2, "rejected"), (3, None)]
    report = client.get(job["skipped_url"])
    assert report.status_code == 200 and report["Content-Type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in report.content.decode().splitlines()]
    assert rows[0] == {"line": 2, "field": "rejected", "error": "is required", "raw": '{"chosen": "no turns"}'}
    assert rows[1]["raw"] == "{oops" and rows[1]["error"].startswith("invalid JSON at character 2")
    as_csv = client.get(job["skipped_url"] + "?as=csv")
    assert as_csv.content.decode().splitlines()[0] == "line,field,error,raw"


def test_records_may_be_sent_inline_as_json(study, researcher):
    client = api_as(researcher)
    made = client.post(
        f"/api/v1/studies/{study.slug}/imports/",
        {"records": [HH_PAIR], "skip_invalid": False},
        format="json",
    )
    assert made.status_code == 201, made.json()
    assert made.json()["candidates_created"] == 2
    assert Candidate.objects.get(study=study, text="Six minutes.").metadata == {"preference": "chosen"}


@pytest.mark.skipif(not REAL_HH.exists(), reason=f"the public HH-RLHF test split is not at {REAL_HH}")
def test_the_real_hh_rlhf_test_split_imports_fully_through_the_api(
    study, researcher, eager, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path / "media"
    client = api_as(researcher)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        accepted = _import(client, study, REAL_HH.name, REAL_HH.read_bytes())
    assert accepted.status_code == 202, accepted.json()
    for callback in callbacks:
        callback()
    done = client.get(accepted.json()["url"]).json()
    assert done["status"] == "done", done["error"]
    assert (done["result"]["prompts_created"], done["result"]["candidates_created"]) == (2312, 4624)


def test_the_openapi_schema_is_generated_and_valid(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(out), "--validate", "--fail-on-warn")
    text = out.read_text()
    for path in (
        "/api/v1/studies/{slug}/next/",
        "/api/v1/studies/{slug}/judgments/",
        "/api/v1/auth/token/",
        "/api/v1/studies/{slug}/imports/{job_id}/",
    ):
        assert path in text
    assert "tokenAuth" in text
