"""Writers: Hugging Face datasets that load back with ``datasets``, parquet streamed a
row group at a time, and empty studies."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from annotation.exports import writers
from annotation.exports.errors import ExportError
from annotation.exports.kinds import dpo, judgments
from annotation.exports.writers import export_hf_dataset
from tests.annotation.exports.answered import Studies, jsonl
from tests.factories import study_with_queue

pytestmark = pytest.mark.django_db


def test_hf_parquet_and_save_to_disk_load_back_with_the_dpo_columns(studies: Studies, tmp_path: Path):
    import datasets

    for study, n_pairs, n_judgments in ((studies.pairwise, 2, 4), (studies.listwise, 5, 2)):
        out = tmp_path / study.slug
        parquet = export_hf_dataset(study=study, kind=dpo.KIND, layout="parquet", dest=out)
        loaded = datasets.load_dataset(
            "parquet", data_files=str(parquet), split="train", cache_dir=str(tmp_path / "cache")
        )
        folder = export_hf_dataset(study=study, kind=dpo.KIND, layout="save_to_disk", dest=out, pseudonymise=True)
        on_disk = datasets.load_from_disk(str(folder))
        for dataset in (loaded, on_disk):
            assert dataset.num_rows == n_pairs
            for column in ("prompt", "chosen", "rejected"):
                assert dataset.features[column] == datasets.Value("string"), column
        assert loaded["chosen"] == [r["chosen"] for r in jsonl(study, "dpo.jsonl")]
        assert "alice" not in set(on_disk["annotator"]) and on_disk["chosen"] == loaded["chosen"]

        folder_of_judgments = export_hf_dataset(study=study, kind=judgments.KIND, layout="save_to_disk", dest=out)
        table = datasets.load_from_disk(str(folder_of_judgments))
        assert table.num_rows == n_judgments
        assert table["ranking"] == [r["ranking"] for r in jsonl(study, "judgments.jsonl")]
        assert [len(c) for c in table["candidates"]] == [len(r["candidates"]) for r in jsonl(study, "judgments.jsonl")]
        assert sorted(p.name for p in out.iterdir()) == sorted([parquet.name, folder.name, folder_of_judgments.name]), (
            "the private cache is gone"
        )


def test_free_form_objects_are_json_text_in_parquet(studies: Studies, tmp_path: Path):
    import pyarrow.parquet as pq

    table = pq.read_table(
        export_hf_dataset(study=studies.pairwise, kind=judgments.KIND, layout="parquet", dest=tmp_path)
    )
    records = jsonl(studies.pairwise, "judgments.jsonl")
    assert [json.loads(text) for text in table["aspect_ratings"].to_pylist()] == [r["aspect_ratings"] for r in records]
    assert [json.loads(c["metadata"]) for c in table["candidates"].to_pylist()[0]] == [
        c["metadata"] for c in records[0]["candidates"]
    ]
    assert table["gold_answer"].to_pylist() == [None] * len(records)


def test_parquet_streams_a_row_group_at_a_time_and_matches_the_file(
    studies: Studies, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import pyarrow.parquet as pq

    monkeypatch.setattr(writers, "PARQUET_ROWS_PER_GROUP", 2)
    study = studies.listwise  # 5 preference pairs: row groups of 2, 2 and 1
    blocks = writers.parquet_stream(dpo.TEXT_KIND, study=study, pseudonymise=True)
    first = next(blocks)
    assert first.startswith(b"PAR1"), "the download starts with the first row group"
    streamed = pq.ParquetFile(io.BytesIO(first + b"".join(blocks)))
    assert streamed.metadata.num_row_groups == 3

    on_disk = pq.read_table(
        export_hf_dataset(study=study, kind=dpo.KIND, layout="parquet", dest=tmp_path, pseudonymise=True, form="text")
    )
    assert streamed.read().equals(on_disk)
    empty = study_with_queue(n_prompts=1, n_candidates=2)
    table = pq.read_table(io.BytesIO(b"".join(writers.parquet_stream(judgments.KIND, study=empty))))
    assert table.num_rows == 0 and "ranking" in table.column_names


def test_hf_export_of_an_empty_study_is_a_parquet_file_with_the_columns_or_a_clear_refusal(tmp_path: Path):
    import pyarrow.parquet as pq

    study = study_with_queue(n_prompts=1, n_candidates=2)
    table = pq.read_table(export_hf_dataset(study=study, kind=dpo.KIND, layout="parquet", dest=tmp_path))
    assert table.num_rows == 0 and {"prompt", "chosen", "rejected"} <= set(table.column_names)
    with pytest.raises(ExportError, match="no judgments yet"):
        export_hf_dataset(study=study, kind=judgments.KIND, layout="save_to_disk", dest=tmp_path)
    assert [p.suffix for p in tmp_path.iterdir()] == [".parquet"], "nothing half-written is left"
    with pytest.raises(ExportError, match="layout"):
        export_hf_dataset(study=study, kind=dpo.KIND, layout="feather", dest=tmp_path)  # type: ignore[arg-type]
