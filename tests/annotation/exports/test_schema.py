"""One schema per record kind: the CSV header, the JSON-lines keys and the Arrow
schema of every kind the registry serves all come from it and agree."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from annotation.exports import registry, writers
from annotation.exports.schema import INT64, JSON, STRING, RecordKind, Schema, list_of, struct_of
from tests.annotation.exports.answered import Studies

pytestmark = pytest.mark.django_db

# Every record kind a download is made of (each form of a kind with forms),
# whatever writers the registry pairs it with.
KINDS = list(
    {
        (kind.name, kind.form): kind
        for export in registry.exports()
        for kind in (export.kind.choices or (export.kind,))
    }.values()
)


def _nested_keys_agree(value: Any, arrow_type: Any) -> bool:
    """Whether the objects inside a JSON-lines value have the fields of its Arrow type, in order."""
    import pyarrow as pa

    if value is None:
        return True
    if pa.types.is_struct(arrow_type):
        fields = [arrow_type.field(k) for k in range(arrow_type.num_fields)]
        return list(value) == [f.name for f in fields] and all(
            _nested_keys_agree(value[f.name], f.type) for f in fields
        )
    if pa.types.is_list(arrow_type):
        return all(_nested_keys_agree(item, arrow_type.value_type) for item in value)
    return True


@pytest.mark.parametrize("kind", KINDS, ids=[f"{kind.name}-{kind.form}" if kind.form else kind.name for kind in KINDS])
def test_csv_header_jsonl_keys_and_arrow_fields_all_are_the_kinds_schema(studies: Studies, kind: RecordKind):
    import pyarrow.parquet as pq

    study = studies.pairwise  # it has records of every kind: judgments, pairs and a skip
    header = next(csv.reader(io.StringIO(b"".join(writers.csv_stream(kind, study=study)).decode())))
    records = [json.loads(line) for line in b"".join(writers.jsonl_stream(kind, study=study)).splitlines()]
    arrow = pq.read_schema(io.BytesIO(b"".join(writers.parquet_stream(kind, study=study))))

    assert records, "the study has records of this kind"
    assert tuple(header) == kind.schema.names
    assert all(tuple(record) == kind.schema.names for record in records)
    assert tuple(arrow.names) == kind.schema.names
    assert arrow.remove_metadata().equals(kind.schema.arrow_schema())
    assert json.loads(arrow.metadata[b"prefloop"])["form"] == kind.form, "the file says which form it holds"
    for record in records:
        for name in kind.schema.names:
            assert _nested_keys_agree(record[name], arrow.field(name).type), (kind.name, name)


def test_records_that_stray_from_their_schema_are_refused_before_anything_is_written(study):
    def swapped(*, study, pseudonymise):
        yield [{"b": "x", "a": 1}]

    kind = RecordKind(
        name="swapped", title="Swapped", noun="rows", schema=Schema(("a", INT64), ("b", STRING)), read=swapped
    )
    for write in (writers.jsonl_stream, writers.csv_stream, writers.parquet_stream):
        with pytest.raises(ValueError, match="schema's columns"):
            b"".join(write(kind, study=study))


def test_free_form_objects_become_json_text_for_arrow_at_any_depth():
    schema = Schema(
        ("id", INT64),
        ("extra", JSON),
        ("items", list_of(struct_of(("id", INT64), ("metadata", JSON)))),
    )
    record = {"id": 1, "extra": {"é": [1, 2]}, "items": [{"id": 2, "metadata": {"k": None}}]}
    assert schema.arrow_row(record) == {"id": 1, "extra": '{"é":[1,2]}', "items": [{"id": 2, "metadata": '{"k":null}'}]}
    plain = Schema(("id", INT64), ("ids", list_of(INT64)))
    row = {"id": 1, "ids": [2]}
    assert plain.arrow_row(row) is row, "nothing to convert: the record itself"
    with pytest.raises(ValueError, match="once"):
        Schema(("id", INT64), ("id", STRING))
