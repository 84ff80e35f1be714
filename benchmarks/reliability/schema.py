"""Hostile input: schemathesis over the whole REST API, as three roles.

The app as deployed (PostgreSQL, DEBUG off, gunicorn; see :mod:`.stack`) with
one seeded study: prompts and candidates, judgments, an import job with a
skipped row and two model versions. schemathesis reads the API's own OpenAPI
document (``/api/schema/``) and generates requests for every operation from
it, sent with the API token of each role in turn: the study's annotator, its
researcher, and a stranger (a researcher of another study). Each operation is
run with every path parameter generated, and again with the study's slug (and
the seeded job, judge and versions) filled in, so most requests reach real data
rather than a 404. Cases are drawn from the schema (positive) and from what
the schema forbids (negative: wrong types, missing fields, out-of-range
numbers) in the query and body; negative cases keep the address valid, since
one that matches no route gets Django's HTML 404 page, not the API's.

Every response is checked for a server error (5xx) and against the schema:
the status code is documented for the operation, the content type is one it
documents, and the body validates against the documented schema. The figures
are the cases sent, server errors and schema mismatches, per role, and up to
10 examples (one per operation, status and kind of failure). Requests change the study as they go (settings,
pausing it, imports): that is part of the test, in a throwaway database.

    python -m benchmarks.reliability --sections schemathesis
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from benchmarks.reliability.stack import Stack

BROKER_URL = "redis://127.0.0.1:6379/10"
ROLES = ("annotator", "researcher", "stranger")
EXAMPLES_KEPT = 10
# Cases per operation, per role, per way of filling its path (generated or the
# seeded study's), per mode (positive, negative). The short form is CI's.
MAX_EXAMPLES = {True: 3, False: 50}


@dataclass
class Tally:
    """Cases sent and failures seen, for one role."""

    cases: int = 0
    server_errors: int = 0
    schema_mismatches: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)
    seen: set[tuple] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "server_errors": self.server_errors,
            "schema_mismatches": self.schema_mismatches,
            "status_codes": {str(code): n for code, n in sorted(self.statuses.items())},
            "distinct_failures": len(self.seen),
        }


def run(*, short: bool) -> dict[str, Any]:
    # The short form's database has a name of its own: CI's run never drops a full run's.
    with Stack("schema_short" if short else "schema", broker=BROKER_URL) as stack:
        seeded = _seed()
        base_url = stack.web()
        seeded["job_id"] = _seed_import_job(base_url, seeded)
        started = time.monotonic()
        tallies = {role: Tally() for role in ROLES}
        schema = _load_schema(base_url)
        operations = [result.ok() for result in schema.get_all_operations()]
        for role in ROLES:
            for operation in operations:
                _exercise(operation, base_url, seeded["tokens"][role], seeded, tallies[role], MAX_EXAMPLES[short])
            print(json.dumps({role: tallies[role].as_dict()}), flush=True)
        seconds = time.monotonic() - started
    # One example per operation, status and kind of failure, the roles taking turns.
    failures = [f for group in zip_longest(*(tallies[r].failures for r in ROLES)) for f in group if f]
    return {
        "cases": sum(t.cases for t in tallies.values()),
        "server_errors": sum(t.server_errors for t in tallies.values()),
        "schema_mismatches": sum(t.schema_mismatches for t in tallies.values()),
        "operations": len(operations),
        "roles": {role: tallies[role].as_dict() for role in ROLES},
        "max_examples_per_operation_role_path_and_mode": MAX_EXAMPLES[short],
        "modes": ["positive", "negative"],
        "checks": [check.__name__ for check in _checks()],
        "examples": failures[:EXAMPLES_KEPT],
        "runs_without_cases": sorted({run for role in ROLES for run in tallies[role].unsatisfiable}),
        "seconds_sending": round(seconds, 1),
        "schemathesis": _version(),
    }


def _version() -> str:
    import schemathesis  # noqa: PLC0415

    return schemathesis.__version__


def _checks() -> list:
    from schemathesis.checks import not_a_server_error  # noqa: PLC0415
    from schemathesis.specs.openapi.checks import (  # noqa: PLC0415
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _load_schema(base_url: str) -> Any:
    import schemathesis  # noqa: PLC0415

    schema = schemathesis.openapi.from_url(f"{base_url}/api/schema/?format=json", wait_for_schema=30)
    schema.config.update(base_url=base_url)
    return schema


def _exercise(operation: Any, base_url: str, token: str, seeded: dict, tally: Tally, max_examples: int) -> None:
    """Send up to ``max_examples`` cases of each kind for ``operation`` as the token's user."""
    for mode, filling in _runs(operation, seeded):
        _send_cases(operation, mode, filling, base_url, token, tally, max_examples)


def _send_cases(
    operation: Any, mode: Any, filling: dict, base_url: str, token: str, tally: Tally, max_examples: int
) -> None:
    from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: PLC0415
    from hypothesis.errors import Unsatisfiable  # noqa: PLC0415

    checks = _checks()
    label = f"{operation.method.upper()} {operation.path}"
    headers = {"Authorization": f"Token {token}"}

    @seed(zlib.crc32(f"{label} {mode.value} {sorted(filling)} {token}".encode()))
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every case is sent and counted once
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=filling or None))
    def send(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        tally.cases += 1
        tally.statuses[response.status_code] += 1
        _check(case, response, checks, headers, tally, label, mode.value)

    try:
        send()
    except Unsatisfiable:  # schemathesis found no case of this kind to send
        tally.unsatisfiable.append(f"{label} ({mode.value}, {', '.join(sorted(filling)) or 'all generated'})")


def _runs(operation: Any, seeded: dict) -> list[tuple[Any, dict]]:
    """Generation mode and fixed path parameters of each run of ``operation``.

    Positive cases run with every path parameter generated (mostly a 404),
    then with the seeded study's (its job, judge, version, review item, judgment,
    prompt and annotator's username; the export format is
    left to schemathesis). Negative cases keep the address valid: one that
    matches no route gets Django's 404 page, which is not the API's; so they
    run only where a query or body is left to break."""
    from schemathesis import GenerationMode  # noqa: PLC0415

    names = {parameter.name for parameter in operation.path_parameters}
    keys = ("slug", "job_id", "judge_id", "webhook_id", "version", "fmt", "item_id", "judgment_id", "prompt_id")
    keys += ("username",)
    seeded_path = {k: seeded[k] for k in keys if k in names}
    runs = [(GenerationMode.POSITIVE, {})]
    if seeded_path:
        runs.append((GenerationMode.POSITIVE, {k: v for k, v in seeded_path.items() if k != "fmt"}))
    if operation.body or operation.query:
        runs.append((GenerationMode.NEGATIVE, seeded_path))
    return runs


def _check(case: Any, response: Any, checks: list, headers: dict, tally: Tally, label: str, mode: str) -> None:
    """Run the checks on one response, counting failures and keeping one example of each kind."""
    from schemathesis.core.failures import FailureGroup, ServerError  # noqa: PLC0415

    try:
        case.validate_response(response, checks=checks, headers=headers)
    except FailureGroup as group:
        for failure in group.exceptions:
            server = isinstance(failure, ServerError)
            if server:
                tally.server_errors += 1
            else:
                tally.schema_mismatches += 1
            signature = (label, response.status_code, failure.title, failure.message.split("\n")[0])
            if signature in tally.seen:
                continue
            tally.seen.add(signature)
            print("failure:", json.dumps(signature), flush=True)
            tally.failures.append(
                {
                    "operation": label,
                    "mode": mode,
                    "status": response.status_code,
                    "kind": "server error" if server else failure.title,
                    "message": failure.message[:500],
                    "request": f"{case.method} {response.request.url}"[:300],
                    "body": response.text[:300],
                }
            )


def _seed() -> dict[str, Any]:
    """The study, its members' tokens, judgments and model versions; a stranger elsewhere."""
    from django.contrib.auth import get_user_model  # noqa: PLC0415
    from django.utils import timezone  # noqa: PLC0415
    from rest_framework.authtoken.models import Token  # noqa: PLC0415

    from annotation.imports.records import CandidateRecord, PromptRecord  # noqa: PLC0415
    from annotation.imports.writer import study_import_records  # noqa: PLC0415
    from annotation.models import (  # noqa: PLC0415
        GenerationSource,
        Judgment,
        Membership,
        ReviewItem,
        RewardModelVersion,
    )
    from annotation.organisations.services import (  # noqa: PLC0415
        organisation_create,
        organisation_join,
        study_organisation_set,
    )
    from annotation.services import assignment_lease_or_refill, judgment_submit, study_create  # noqa: PLC0415
    from annotation.services.judging import ai_judge_create  # noqa: PLC0415
    from annotation.services.webhooks import webhook_create  # noqa: PLC0415

    users = get_user_model().objects
    study = study_create(name="Schema", budget=100_000)
    other = study_create(name="Elsewhere")
    records = [
        PromptRecord(
            external_id=str(k),
            text=f"Question {k}: how do I keep a plant alive?",
            format="text",
            metadata={"k": k},
            candidates=tuple(
                CandidateRecord(
                    text=f"Answer {i} to {k}: water it {'weekly' if i else 'daily'}.", source=f"m{i}", metadata={}
                )
                for i in range(3)
            ),
            line=k + 1,
        )
        for k in range(30)
    ]
    study_import_records(study=study, records=records)
    tokens = {}
    for role, where, membership in (
        ("annotator", study, Membership.Role.ANNOTATOR),
        ("researcher", study, Membership.Role.RESEARCHER),
        ("stranger", other, Membership.Role.RESEARCHER),
    ):
        user = users.create_user(f"schema-{role}", password="unused-in-this-benchmark")
        Membership.objects.create(user=user, study=where, role=membership)
        tokens[role] = Token.objects.create(user=user).key
    annotator = users.get(username="schema-annotator")
    for k in range(8):
        lease = assignment_lease_or_refill(study=study, annotator=annotator)
        if lease is None:
            break
        judgment_submit(
            study=study, annotator=annotator, comparison_id=lease.assignment.comparison_id, choice="ab"[k % 2]
        )
    for version, pruned in ((1, True), (2, False)):
        RewardModelVersion.objects.create(
            study=study,
            version=version,
            model_type="linear",
            embedder_key="hash",
            n_judgments=8,
            pruned_at=timezone.now() if pruned else None,
            checkpoint_path=f"/nonexistent/schema-benchmark/v{version}",
        )
    source = GenerationSource.objects.create(study=study, name="nowhere", base_url="http://127.0.0.1:9/v1", model="m")
    judge = ai_judge_create(study=study, source_id=source.id, name="schema judge")
    hook = webhook_create(study=study, url="http://127.0.0.1:9/hook", events=["model.published"])
    first = Judgment.objects.filter(study=study).order_by("id").first()
    item = ReviewItem.objects.create(study=study, comparison_id=first.comparison_id, reasons=[])
    # An organisation under the study's slug, so the organisation endpoints' {slug} reaches it:
    # the researcher owns it (and the study is in it), the annotator is a member.
    organisation = organisation_create(name=study.name, created_by=users.get(username="schema-researcher"))
    organisation_join(organisation=organisation, user=annotator)
    study_organisation_set(study=study, organisation=organisation)
    return {
        "slug": study.slug, "version": 2, "fmt": "judgments.csv", "judge_id": judge.pk, "webhook_id": hook.pk,
        "item_id": item.pk, "judgment_id": first.pk, "prompt_id": first.comparison.prompt_id,
        "username": "schema-annotator", "tokens": tokens,
    }  # fmt: skip


def _seed_import_job(base_url: str, seeded: dict) -> int:
    """An import through the API that skips an invalid row, which leaves a finished job."""
    import requests  # noqa: PLC0415

    response = requests.post(
        f"{base_url}/api/v1/studies/{seeded['slug']}/imports/",
        json={"records": [{"prompt": "p", "candidates": ["a", "b"]}, {"prompt": ""}], "skip_invalid": True},
        headers={"Authorization": f"Token {seeded['tokens']['researcher']}"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["job"]["id"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="reliability section: schemathesis over the REST API")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.json_out.write_text(json.dumps(run(short=args.short), indent=2) + "\n")


if __name__ == "__main__":
    main()
