"""Researcher exports: every format from judgments given through the real services,
pairs that really are the annotators' preferences, pseudonyms, Hugging Face
datasets loaded back with ``datasets``, checkpoints, access, and queries that do
not grow with the study."""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotation import exporting
from annotation.exporting import EXPORT_FORMATS, ExportError, export_hf_dataset, export_stream
from annotation.models import (
    Assignment,
    Candidate,
    ComparisonItem,
    Judgment,
    Membership,
    Prompt,
    RewardModelVersion,
    Study,
)
from annotation.services import assignment_lease_next, assignment_skip, judgment_submit
from tests.factories import UserFactory, study_with_queue

pytestmark = pytest.mark.django_db

TRICKY_RATIONALE = 'A is "clearer", shorter,\nand right.'
STREAMING = [key for key, spec in EXPORT_FORMATS.items() if spec.kind == "stream"]


@dataclass
class Given:
    """What the annotators answered, as the test saw it on their screens."""

    choice: str
    shown: list[int]  # candidate ids in the order the annotator saw them
    ranking: list[list[int]]  # positions on screen, best first (for lists)
    judgment_id: int = 0


@dataclass
class Studies:
    pairwise: Study
    listwise: Study
    researcher: object
    alice: object
    bob: object
    given: dict[int, Given] = field(default_factory=dict)
    skipped_shown: list[int] = field(default_factory=list)


def _lease(study: Study, user) -> Assignment:
    lease = assignment_lease_next(study=study, annotator=user)
    assert lease is not None, "the queue ran dry"
    return lease.assignment


def _answer(studies: Studies, study: Study, user, *, choice: str = "", ranking=None, flip: bool = False, **extra):
    assignment = _lease(study, user)
    if flip:
        # Show this annotator the queued order reversed, as a blind study may:
        # "A" is then the item queued second.
        items = list(
            ComparisonItem.objects.filter(comparison_id=assignment.comparison_id)
            .order_by("position")
            .values_list("candidate_id", flat=True)
        )
        Assignment.objects.filter(id=assignment.id).update(display_order=items[::-1])
        assignment.refresh_from_db()
    shown = list(assignment.display_order)
    if study.aspects:
        extra["aspect_ratings"] = {k: {"helpfulness": 1 + k} for k in range(len(shown))}
    submission = judgment_submit(
        study=study,
        annotator=user,
        comparison_id=assignment.comparison_id,
        choice=choice,
        ranking=ranking,
        time_on_task_ms=4200,
        client_info={"via": "test"},
        **extra,
    )
    judgment = submission.judgment
    studies.given[judgment.id] = Given(
        choice=judgment.choice, shown=shown, ranking=ranking or [], judgment_id=judgment.id
    )
    return judgment


@pytest.fixture
def studies(make_member) -> Studies:
    """A blind pairwise study answered A (on a flipped screen), B, tie, both bad and
    one skip; a listwise study of 3 answered with a strict and a tied ranking."""
    pairwise = study_with_queue(
        n_prompts=3, n_candidates=3, allow_both_bad=True, ask_strength=True, aspects=["helpfulness"],
        ask_rationale=Study.RationaleMode.OPTIONAL, blind=True,
    )  # fmt: skip
    listwise = study_with_queue(n_prompts=2, n_candidates=4, mode=Study.Mode.LISTWISE, list_size=3, blind=True)
    researcher = make_member(pairwise, Membership.Role.RESEARCHER, username="res")
    Membership.objects.create(user=researcher, study=listwise, role=Membership.Role.RESEARCHER)
    alice = make_member(pairwise, username="alice")
    Membership.objects.create(user=alice, study=listwise, role=Membership.Role.ANNOTATOR)
    bob = make_member(pairwise, username="bob")
    s = Studies(pairwise=pairwise, listwise=listwise, researcher=researcher, alice=alice, bob=bob)

    _answer(s, pairwise, alice, choice="a", strength="strong", rationale=TRICKY_RATIONALE, flip=True)
    _answer(s, pairwise, alice, choice="b", strength="slight")
    _answer(s, pairwise, alice, choice="tie")
    _answer(s, pairwise, bob, choice="both_bad")
    skipped = _lease(pairwise, bob)
    assignment_skip(
        study=pairwise, annotator=bob, comparison_id=skipped.comparison_id, reason="broken", note="B is empty"
    )
    s.skipped_shown = list(skipped.display_order)
    _answer(s, listwise, alice, ranking=[[2], [0], [1]])
    _answer(s, listwise, alice, ranking=[[1, 2], [0]])
    return s


def _body(study: Study, fmt: str, *, pseudonymise: bool = False) -> bytes:
    return b"".join(export_stream(study=study, fmt=fmt, pseudonymise=pseudonymise))


def _jsonl(study: Study, fmt: str, **kwargs) -> list[dict]:
    return [json.loads(line) for line in _body(study, fmt, **kwargs).decode("utf-8").splitlines()]


def _csv(study: Study, fmt: str, **kwargs) -> list[dict]:
    return list(csv.DictReader(io.StringIO(_body(study, fmt, **kwargs).decode("utf-8"), newline="")))


def _text(candidate_id: int) -> str:
    return Candidate.objects.get(id=candidate_id).text


# --- streaming formats ----------------------------------------------------------------


def test_judgments_jsonl_has_every_judgment_with_its_answer_order_and_selection(studies: Studies):
    records = _jsonl(studies.pairwise, "judgments.jsonl")
    assert [r["judgment_id"] for r in records] == sorted(
        Judgment.objects.filter(study=studies.pairwise).values_list("id", flat=True)
    )
    assert [r["choice"] for r in records] == ["a", "b", "tie", "both_bad"]
    by_choice = {r["choice"]: r for r in records}
    a = by_choice["a"]
    given = studies.given[a["judgment_id"]]
    assert a["shown_order"] == given.shown
    assert [c["id"] for c in a["candidates"]] == given.shown
    assert [c["shown_position"] for c in a["candidates"]] == [0, 1]
    assert a["candidates"][0]["text"] == _text(given.shown[0])
    assert a["ranking"] == [[given.shown[0]], [given.shown[1]]]
    assert a["strength"] == "strong" and a["rationale"] == TRICKY_RATIONALE
    assert a["aspect_ratings"] == {str(given.shown[0]): {"helpfulness": 1}, str(given.shown[1]): {"helpfulness": 2}}
    assert a["annotator"] == "alice" and a["time_on_task_ms"] == 4200 and a["client_info"] == {"via": "test"}
    assert a["strategy"] == "random" and a["model_version"] is None and a["is_gold"] is False
    assert "propensity" in a and "score" in a
    assert datetime.fromisoformat(a["created_at"]).tzinfo is not None
    prompt = Prompt.objects.get(id=a["prompt_id"])
    assert a["prompt"] == prompt.text and a["prompt_format"] == "text"
    assert by_choice["tie"]["ranking"] == [studies.given[by_choice["tie"]["judgment_id"]].shown]
    assert by_choice["both_bad"]["annotator"] == "bob"
    listwise = _jsonl(studies.listwise, "judgments.jsonl")
    assert [len(r["ranking"]) for r in listwise] == [3, 2]
    assert all(r["choice"] == "ranked" and len(r["candidates"]) == 3 for r in listwise)


def test_judgments_csv_parses_with_the_csv_module_and_keeps_free_text_intact(studies: Studies):
    rows = _csv(studies.pairwise, "judgments.csv")
    assert tuple(rows[0].keys()) == exporting.CSV_COLUMNS["judgments"]
    assert [row["choice"] for row in rows] == ["a", "b", "tie", "both_bad"]
    assert rows[0]["rationale"] == TRICKY_RATIONALE
    assert json.loads(rows[0]["shown_order"]) == studies.given[int(rows[0]["judgment_id"])].shown
    assert [c["shown_position"] for c in json.loads(rows[0]["candidates"])] == [0, 1]
    assert rows[0]["is_gold"] == "false" and rows[0]["model_version"] == ""


def test_dpo_pairs_are_what_the_annotator_preferred_on_their_own_screen(studies: Studies):
    records = _jsonl(studies.pairwise, "dpo.jsonl")
    # A and B give a pair each; the tie and "both bad" give none.
    assert sorted(r["choice"] for r in records) == ["a", "b"]
    for record in records:
        given = studies.given[record["judgment_id"]]
        winner, loser = (given.shown[0], given.shown[1]) if given.choice == "a" else (given.shown[1], given.shown[0])
        assert (record["chosen_id"], record["rejected_id"]) == (winner, loser)
        assert record["chosen"] == _text(winner) and record["rejected"] == _text(loser)
        assert record["prompt"] == Prompt.objects.get(candidates__id=winner).text
        assert record["n_pairs_in_judgment"] == 1 and (record["chosen_rank"], record["rejected_rank"]) == (1, 2)
    flipped = next(r for r in records if r["choice"] == "a")
    queued = list(
        ComparisonItem.objects.filter(comparison_id=flipped["comparison_id"])
        .order_by("position")
        .values_list("candidate_id", flat=True)
    )
    assert flipped["chosen_id"] == queued[1], "A on a flipped screen is the item queued second"


def test_dpo_pairs_of_a_ranking_are_every_strict_pair_it_implies(studies: Studies):
    records = _jsonl(studies.listwise, "dpo.jsonl")
    strict_id, tied_id = sorted(studies.given)[-2:]
    strict, tied = studies.given[strict_id].shown, studies.given[tied_id].shown
    pairs = {(r["judgment_id"], r["chosen_id"], r["rejected_id"]) for r in records}
    assert pairs == {
        (strict_id, strict[2], strict[0]),
        (strict_id, strict[2], strict[1]),
        (strict_id, strict[0], strict[1]),
        (tied_id, tied[1], tied[0]),
        (tied_id, tied[2], tied[0]),
    }
    assert {r["judgment_id"]: r["n_pairs_in_judgment"] for r in records} == {strict_id: 3, tied_id: 2}
    assert all(r["chosen"] == _text(r["chosen_id"]) and r["rejected"] == _text(r["rejected_id"]) for r in records)
    rows = _csv(studies.listwise, "dpo.csv")
    assert [(int(r["chosen_id"]), int(r["rejected_id"])) for r in rows] == [
        (r["chosen_id"], r["rejected_id"]) for r in records
    ]


def test_rankings_list_responses_best_first_with_tied_responses_sharing_a_place(studies: Studies):
    records = _jsonl(studies.listwise, "rankings.jsonl")
    strict, tied = records
    shown = studies.given[strict["judgment_id"]].shown
    assert [[x["id"] for x in place] for place in strict["responses"]] == [[shown[2]], [shown[0]], [shown[1]]]
    assert strict["responses"][0][0]["text"] == _text(shown[2])
    shown = studies.given[tied["judgment_id"]].shown
    assert [[x["id"] for x in place] for place in tied["responses"]] == [[shown[1], shown[2]], [shown[0]]]
    pairs = {r["choice"]: r for r in _jsonl(studies.pairwise, "rankings.jsonl")}
    assert [len(place) for place in pairs["a"]["responses"]] == [1, 1]
    assert [len(place) for place in pairs["tie"]["responses"]] == [2]
    assert [len(place) for place in pairs["both_bad"]["responses"]] == [2]


def test_skips_are_their_own_export_with_reason_note_and_shown_candidates(studies: Studies):
    (skip,) = _jsonl(studies.pairwise, "skips.jsonl")
    assert (skip["annotator"], skip["skip_reason"], skip["skip_note"]) == ("bob", "broken", "B is empty")
    assert skip["shown_order"] == studies.skipped_shown
    assert [c["text"] for c in skip["candidates"]] == [_text(i) for i in studies.skipped_shown]
    assert skip["prompt"] == Prompt.objects.get(candidates__id=studies.skipped_shown[0]).text
    (row,) = _csv(studies.pairwise, "skips.csv")
    assert row["skip_reason"] == "broken" and json.loads(row["shown_order"]) == studies.skipped_shown
    assert _jsonl(studies.listwise, "skips.jsonl") == []
    assert _csv(studies.listwise, "skips.csv") == []  # the header alone


def test_unknown_formats_are_refused_by_name():
    with pytest.raises(ExportError, match=r"judgments\.jsonl"):
        export_stream(study=Study(), fmt="judgments.xml")


# --- pseudonyms --------------------------------------------------------------------


def test_pseudonyms_are_stable_in_a_study_unlinkable_across_studies_and_hide_usernames(studies: Studies, settings):
    pairwise = _jsonl(studies.pairwise, "judgments.jsonl", pseudonymise=True)
    listwise = _jsonl(studies.listwise, "judgments.jsonl", pseudonymise=True)
    alice_here = {r["annotator"] for r in pairwise if r["choice"] in ("a", "b", "tie")}
    assert len(alice_here) == 1
    (alice_here,) = alice_here
    (bob_here,) = {r["annotator"] for r in pairwise if r["choice"] == "both_bad"}
    (alice_there,) = {r["annotator"] for r in listwise}
    assert len({alice_here, bob_here, alice_there}) == 3
    assert "alice" not in alice_here and "bob" not in bob_here
    assert {r["annotator"] for r in _jsonl(studies.pairwise, "dpo.jsonl", pseudonymise=True)} <= {alice_here}
    (skip,) = _jsonl(studies.pairwise, "skips.jsonl", pseudonymise=True)
    assert skip["annotator"] == bob_here
    for fmt in STREAMING:
        for study in (studies.pairwise, studies.listwise):
            body = _body(study, fmt, pseudonymise=True)
            assert b"alice" not in body and b"bob" not in body, fmt
    assert b"alice" in _body(studies.pairwise, "judgments.csv")
    settings.SECRET_KEY = "another-secret-key-for-this-test-0123456789abcdefghijklmnop"
    assert _jsonl(studies.listwise, "judgments.jsonl", pseudonymise=True)[0]["annotator"] != alice_there


# --- Hugging Face datasets -----------------------------------------------------------


def test_hf_parquet_and_save_to_disk_load_back_with_the_dpo_columns(studies: Studies, tmp_path: Path):
    import datasets

    for study, n_pairs, n_judgments in ((studies.pairwise, 2, 4), (studies.listwise, 5, 2)):
        out = tmp_path / study.slug
        parquet = export_hf_dataset(study=study, kind="dpo", layout="parquet", dest=out)
        loaded = datasets.load_dataset(
            "parquet", data_files=str(parquet), split="train", cache_dir=str(tmp_path / "cache")
        )
        folder = export_hf_dataset(study=study, kind="dpo", layout="save_to_disk", dest=out, pseudonymise=True)
        on_disk = datasets.load_from_disk(str(folder))
        for dataset in (loaded, on_disk):
            assert dataset.num_rows == n_pairs
            for column in ("prompt", "chosen", "rejected"):
                assert dataset.features[column] == datasets.Value("string"), column
        assert loaded["chosen"] == [r["chosen"] for r in _jsonl(study, "dpo.jsonl")]
        assert "alice" not in set(on_disk["annotator"]) and on_disk["chosen"] == loaded["chosen"]

        judgments = export_hf_dataset(study=study, kind="judgments", layout="save_to_disk", dest=out)
        table = datasets.load_from_disk(str(judgments))
        assert table.num_rows == n_judgments
        assert table["ranking"] == [r["ranking"] for r in _jsonl(study, "judgments.jsonl")]
        assert [len(c) for c in table["candidates"]] == [len(r["candidates"]) for r in _jsonl(study, "judgments.jsonl")]
        assert sorted(p.name for p in out.iterdir()) == sorted([parquet.name, folder.name, judgments.name]), (
            "the private cache is gone"
        )


def test_parquet_streams_a_row_group_at_a_time_and_matches_the_file(
    studies: Studies, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import pyarrow.parquet as pq

    monkeypatch.setattr(exporting, "PARQUET_ROWS_PER_GROUP", 2)
    study = studies.listwise  # 5 preference pairs: row groups of 2, 2 and 1
    blocks = exporting.parquet_stream(study=study, kind="dpo", pseudonymise=True)
    first = next(blocks)
    assert first.startswith(b"PAR1"), "the download starts with the first row group"
    streamed = pq.ParquetFile(io.BytesIO(first + b"".join(blocks)))
    assert streamed.metadata.num_row_groups == 3

    on_disk = pq.read_table(
        export_hf_dataset(study=study, kind="dpo", layout="parquet", dest=tmp_path, pseudonymise=True)
    )
    assert streamed.read().equals(on_disk)
    empty = study_with_queue(n_prompts=1, n_candidates=2)
    table = pq.read_table(io.BytesIO(b"".join(exporting.parquet_stream(study=empty, kind="judgments"))))
    assert table.num_rows == 0 and "ranking" in table.column_names


def test_hf_export_of_an_empty_study_is_a_parquet_file_with_the_columns_or_a_clear_refusal(tmp_path: Path):
    import pyarrow.parquet as pq

    study = study_with_queue(n_prompts=1, n_candidates=2)
    table = pq.read_table(export_hf_dataset(study=study, kind="dpo", layout="parquet", dest=tmp_path))
    assert table.num_rows == 0 and {"prompt", "chosen", "rejected"} <= set(table.column_names)
    with pytest.raises(ExportError, match="no judgments yet"):
        export_hf_dataset(study=study, kind="judgments", layout="save_to_disk", dest=tmp_path)
    assert [p.suffix for p in tmp_path.iterdir()] == [".parquet"], "nothing half-written is left"
    with pytest.raises(ExportError, match="layout"):
        export_hf_dataset(study=study, kind="dpo", layout="feather", dest=tmp_path)  # type: ignore[arg-type]


# --- views -----------------------------------------------------------------------------


def _export_url(study: Study, fmt: str) -> str:
    return reverse("study_export", args=[study.slug, fmt])


@pytest.mark.parametrize("fmt", STREAMING)
def test_researchers_download_every_streaming_format(studies: Studies, client_for, fmt: str):
    client = client_for(studies.researcher)
    response = client.get(_export_url(studies.pairwise, fmt), {"pseudonymise": "1"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == EXPORT_FORMATS[fmt].content_type
    name = f"{studies.pairwise.slug}-{fmt.split('.')[0]}-pseudonymised.{fmt.split('.')[1]}"
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
    body = b"".join(response.streaming_content)
    assert body == _body(studies.pairwise, fmt, pseudonymise=True)
    assert b"alice" not in body
    plain = client.get(_export_url(studies.pairwise, fmt))
    assert "pseudonymised" not in plain["Content-Disposition"]


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
    assert response["Content-Disposition"] == f'attachment; filename="{studies.listwise.slug}-dpo.parquet"'
    parquet = tmp_path / "download.parquet"
    parquet.write_bytes(b"".join(response.streaming_content))  # the test client closes it at the end
    dataset = datasets.load_dataset("parquet", data_files=str(parquet), split="train", cache_dir=str(tmp_path / "c"))
    assert dataset.num_rows == 5 and dataset.features["prompt"] == datasets.Value("string")

    response = client.get(_export_url(studies.pairwise, "dpo-dataset.zip"))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    archive.extractall(tmp_path / "unzipped")
    (folder,) = (tmp_path / "unzipped").iterdir()
    assert datasets.load_from_disk(str(folder))["chosen"] == [
        r["chosen"] for r in _jsonl(studies.pairwise, "dpo.jsonl")
    ]
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


@pytest.fixture
def checkpoint(studies: Studies, settings, tmp_path: Path) -> RewardModelVersion:
    import numpy as np
    from safetensors.numpy import save_file

    settings.PREFLOOP_CHECKPOINT_DIR = tmp_path / "checkpoints"
    folder = settings.PREFLOOP_CHECKPOINT_DIR / f"study-{studies.pairwise.id}" / "v00001-abcdef12"
    folder.mkdir(parents=True)
    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"format": "prefloop-reward", "input_dim": 3}')
    return RewardModelVersion.objects.create(
        study=studies.pairwise,
        version=1,
        model_type="mlp",
        embedder_key="test",
        n_judgments=4,
        checkpoint_path=str(folder),
    )


def test_checkpoint_download_is_a_zip_of_the_model_folder(studies: Studies, checkpoint, client_for):
    from safetensors.numpy import load

    client = client_for(studies.researcher)
    url = reverse("model_checkpoint", args=[studies.pairwise.slug, 1])
    page = client.get(reverse("study_detail", args=[studies.pairwise.slug]))
    assert url in page.content.decode()
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="{studies.pairwise.slug}-model-v1.zip"'
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["model-v1/config.json", "model-v1/model.safetensors"]
    assert json.loads(archive.read("model-v1/config.json"))["input_dim"] == 3
    assert load(archive.read("model-v1/model.safetensors"))["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert client.get(reverse("model_checkpoint", args=[studies.pairwise.slug, 2])).status_code == 404


def test_checkpoints_outside_the_checkpoint_folder_or_gone_are_not_served(
    studies: Studies, checkpoint, client_for, tmp_path: Path
):
    client = client_for(studies.researcher)
    url = reverse("model_checkpoint", args=[studies.pairwise.slug, 1])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_text("not a model")
    RewardModelVersion.objects.filter(id=checkpoint.id).update(checkpoint_path=str(outside))
    assert client.get(url).status_code == 404
    RewardModelVersion.objects.filter(id=checkpoint.id).update(checkpoint_path=checkpoint.checkpoint_path + "-gone")
    assert client.get(url).status_code == 404


def test_the_study_page_links_every_export_format(studies: Studies, client_for):
    html = client_for(studies.researcher).get(reverse("study_detail", args=[studies.pairwise.slug])).content.decode()
    for fmt in EXPORT_FORMATS:
        assert f'href="{_export_url(studies.pairwise, fmt)}"' in html, fmt
        assert f'href="{_export_url(studies.pairwise, fmt)}?pseudonymise=1"' in html, fmt


def test_annotators_and_strangers_get_404_from_every_export_url(studies: Studies, checkpoint, client_for, outsider):
    urls = [_export_url(studies.pairwise, fmt) for fmt in EXPORT_FORMATS]
    urls += [
        _export_url(studies.pairwise, "nonsense.txt"),
        reverse("model_checkpoint", args=[studies.pairwise.slug, 1]),
    ]
    for user in (studies.alice, outsider):
        client = client_for(user)
        for url in urls:
            assert client.get(url).status_code == 404, (user.username, url)
            assert client.get(url + "?pseudonymise=1").status_code == 404, (user.username, url)
    assert Client().get(urls[0]).status_code == 302  # anonymous: to the login page


# --- bounded work ----------------------------------------------------------------------


def _bulk_judgments(study: Study, n: int, *, prefix: str) -> None:
    """``n`` judgments of the study's queued pairs by fresh annotators, written in bulk."""
    pairs: dict[int, list[int]] = {}
    for comparison_id, candidate_id in (
        ComparisonItem.objects.filter(comparison__study=study)
        .order_by("comparison_id", "position")
        .values_list("comparison_id", "candidate_id")
    ):
        pairs.setdefault(comparison_id, []).append(candidate_id)
    rows = []
    for k in range(math.ceil(n / len(pairs))):
        user = UserFactory(username=f"{prefix}{k}")
        for comparison_id, items in pairs.items():
            if len(rows) < n:
                rows.append(
                    Judgment(
                        study=study,
                        comparison_id=comparison_id,
                        annotator=user,
                        choice="b",
                        ranking=items[::-1],
                        shown_order=items,
                        time_on_task_ms=1000 + k,
                        created_at=timezone.now(),
                    )
                )
    Judgment.objects.bulk_create(rows)


def _queries(study: Study, fmt: str) -> tuple[int, bytes]:
    with CaptureQueriesContext(connection) as captured:
        body = _body(study, fmt)
    return len(captured), body


@pytest.mark.parametrize("fmt", ["judgments.jsonl", "dpo.csv", "rankings.jsonl"])
def test_export_queries_do_not_grow_with_the_number_of_judgments(fmt: str, django_assert_max_num_queries):
    study = study_with_queue(n_prompts=3, n_candidates=3)
    _bulk_judgments(study, 10, prefix="few")
    with django_assert_max_num_queries(3):
        few, _ = _queries(study, fmt)
    _bulk_judgments(study, 190, prefix="many")
    with django_assert_max_num_queries(3):
        many, body = _queries(study, fmt)
    assert few == many
    assert body.count(b"\n") >= 200


def test_chunks_cover_every_judgment_once_in_order(monkeypatch):
    study = study_with_queue(n_prompts=3, n_candidates=3)
    _bulk_judgments(study, 200, prefix="chunked")
    monkeypatch.setattr(exporting, "CHUNK_SIZE", 7)
    queries, body = _queries(study, "judgments.jsonl")
    ids = [json.loads(line)["judgment_id"] for line in body.decode().splitlines()]
    assert ids == sorted(Judgment.objects.filter(study=study).values_list("id", flat=True))
    assert queries == 3 * math.ceil(200 / 7)  # judgments, candidates and prompts per chunk
