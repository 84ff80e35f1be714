"""The OpenAPI schema tells the truth: real answers of the API, as each role gets
them, validate against it (status code documented, content type, body), and
every operation documents the refusals it shares with the rest.

The API is called in-process through its WSGI application, with schemathesis
checking each answer against the schema the app serves at ``/api/schema/``.
``tests/benchmarks/test_reliability_schema.py`` sends generated requests to a
deployed stack instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from annotation.models import ImportJob
from tests.annotation.test_api import api_as

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@contextmanager
def in_process() -> Iterator[None]:
    """Each WSGI request would close the test's database connection as it
    starts and ends; the test client avoids that the same way (and reconnects
    the handler after each of its own requests, so this wraps every call)."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


@pytest.fixture
def schema(db) -> Any:
    """The served schema, its operations calling the app in-process."""
    with in_process():
        return schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


def _token(user) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def call(schema, method: str, path: str, user=None, **kwargs: Any) -> Any:
    """Call one operation and check its answer against the schema; the answer."""
    if "body" in kwargs:
        kwargs.setdefault("media_type", "application/json")
    case = schema[path][method].Case(headers=_token(user) if user is not None else {}, **kwargs)
    with in_process():
        response = case.call()
    case.validate_response(response, checks=CHECKS)
    return response


def test_every_operation_documents_the_refusals_it_shares(schema):
    raw = schema.raw_schema
    for path, operations in raw["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            where = f"{method.upper()} {path}"
            if path in ("/api/v1/", "/api/v1/auth/token/"):
                assert "429" in codes and "401" not in codes, where
            else:
                assert "401" in codes, where
            if "{slug}" in path:
                assert "404" in codes, where
            if method in ("post", "patch"):
                assert {"400", "415"} <= codes, where
            for code in codes - {"200", "201", "202", "204"}:
                body = operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert body.rsplit("/", 1)[1] in ("ErrorOutput", "BadRequestOutput"), (where, code)


def test_the_judgments_list_is_documented_as_the_page_it_is(schema, study, researcher, annotator):
    client = api_as(annotator)
    shown = client.get(f"/api/v1/studies/{study.slug}/next/").json()
    client.post(
        f"/api/v1/studies/{study.slug}/judgments/",
        {"comparison_id": shown["comparison_id"], "choice": "a"},
        format="json",
    )
    path = "/api/v1/studies/{slug}/judgments/"
    page = call(schema, "GET", path, researcher, path_parameters={"slug": study.slug}, query={"page_size": 1})
    body = page.json()
    assert len(body["results"]) == 1 and body["next"] is None and body["previous"] is None
    documented = schema.raw_schema["components"]["schemas"]["JudgmentPage"]
    assert set(documented["required"]) == {"next", "previous", "results"}
    bad_cursor = call(schema, "GET", path, researcher, path_parameters={"slug": study.slug}, query={"cursor": "x"})
    assert bad_cursor.status_code == 404


def test_each_role_gets_answers_the_schema_describes(schema, study, researcher, annotator, outsider):
    slug = {"slug": study.slug}
    assert call(schema, "GET", "/api/v1/studies/", annotator).json()[0]["role"] == "annotator"
    assert call(schema, "GET", "/api/v1/studies/", researcher).json()[0]["role"] == "researcher"
    assert "budget" in call(schema, "GET", "/api/v1/studies/{slug}/", researcher, path_parameters=slug).json()
    assert call(schema, "GET", "/api/v1/studies/{slug}/", annotator, path_parameters=slug).json()["role"] == (
        "annotator"
    )
    assert call(schema, "GET", "/api/v1/studies/{slug}/", outsider, path_parameters=slug).status_code == 404
    assert call(schema, "GET", "/api/v1/studies/{slug}/", None, path_parameters=slug).status_code == 401
    refused = call(schema, "POST", "/api/v1/studies/", annotator, body={"name": "Mine"})
    assert refused.status_code == 403
    shown = call(schema, "GET", "/api/v1/studies/{slug}/next/", annotator, path_parameters=slug).json()
    assert shown["comparison_id"] is not None
    assert call(schema, "GET", "/api/v1/studies/{slug}/leaderboard/", researcher, path_parameters=slug).json()[
        "reward_model"
    ] == {"version": None, "recommendation": {}}
    assert (
        call(schema, "GET", "/api/v1/studies/{slug}/model-versions/", researcher, path_parameters=slug).json()[
            "results"
        ]
        == []
    )


def test_refusals_have_the_documented_bodies(schema, study, researcher, annotator):
    slug = {"slug": study.slug}
    judgments = "/api/v1/studies/{slug}/judgments/"
    field_error = call(
        schema, "POST", judgments, annotator, path_parameters=slug, body={"comparison_id": 1, "choice": "maybe"}
    )
    assert field_error.status_code == 400 and "choice" in field_error.json()
    refusal = call(
        schema, "POST", judgments, annotator, path_parameters=slug, body={"comparison_id": 10**9, "choice": "a"}
    )
    assert refusal.status_code == 400 and "comparison" in refusal.json()["detail"]
    settings = call(
        schema,
        "PATCH",
        "/api/v1/studies/{slug}/",
        researcher,
        path_parameters=slug,
        body={"settings": {"gold_rate": 2}},
    )
    assert settings.status_code == 400 and "gold_rate" in settings.json()["fields"]
    study.status = study.Status.PAUSED
    study.save(update_fields=["status"])
    paused = call(schema, "GET", "/api/v1/studies/{slug}/next/", annotator, path_parameters=slug)
    assert paused.status_code == 409


def test_downloads_are_documented_with_their_content_types(schema, study, researcher):
    response = api_as(researcher).post(
        f"/api/v1/studies/{study.slug}/imports/",
        {"records": [{"prompt": "p", "candidates": ["a", "b"]}, {"prompt": ""}], "skip_invalid": True},
        format="json",
    )
    assert response.status_code == 201, response.content
    job = ImportJob.objects.get(study=study)
    skipped = "/api/v1/studies/{slug}/imports/{job_id}/skipped/"
    where = {"slug": study.slug, "job_id": job.pk}
    as_csv = call(schema, "GET", skipped, researcher, path_parameters=where, query={"as": "csv"})
    assert {name.lower(): value for name, value in as_csv.headers.items()}["content-type"] == [
        "text/csv; charset=utf-8"
    ]
    assert call(schema, "GET", skipped, researcher, path_parameters=where).status_code == 200
    exports = "/api/v1/studies/{slug}/exports/{fmt}/"
    for fmt in ("judgments.csv", "judgments.jsonl", "dpo.parquet"):
        assert (
            call(schema, "GET", exports, researcher, path_parameters={"slug": study.slug, "fmt": fmt}).status_code
            == 200
        )
