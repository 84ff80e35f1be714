"""The reliability benchmark's schemathesis section in its short form (issue 15):
generated requests to every operation of the REST API as the study's annotator,
its researcher and a stranger, with no server error and no response that the
OpenAPI schema does not describe (status code, content type, body).

The section starts its own stack (a throwaway PostgreSQL database, Redis db 10,
gunicorn on 127.0.0.1), so it runs where the tests run against PostgreSQL (CI:
DATABASE_URL, see .ci/run) and is skipped elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.sections import needs_postgres, run_short

pytestmark = needs_postgres


def test_short_schemathesis_run_finds_no_server_error_and_no_schema_mismatch(tmp_path: Path) -> None:
    figures = run_short("schema", tmp_path / "schemathesis.json")
    assert figures["server_errors"] == 0, figures["examples"]
    assert figures["schema_mismatches"] == 0, figures["examples"]
    assert figures["cases"] >= 200, figures
    assert figures["operations"] >= 17, "every operation of the API is in the schema"
    for role in ("annotator", "researcher", "stranger"):
        by_role = figures["roles"][role]
        assert by_role["cases"] > 50, (role, by_role)
        assert sum(by_role["status_codes"].values()) == by_role["cases"]
    # The roles see different APIs: the study's researcher reaches its data,
    # the stranger mostly 404s, and the annotator is refused creating studies.
    assert figures["roles"]["researcher"]["status_codes"].get("200", 0) > figures["roles"]["stranger"][
        "status_codes"
    ].get("200", 0)
    assert figures["roles"]["annotator"]["status_codes"].get("403", 0) > 0
