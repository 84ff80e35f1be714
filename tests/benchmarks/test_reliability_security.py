"""The reliability benchmark's security section in its short form (issue 15),
over HTTP against gunicorn with DEBUG off: the sign-in form and the API token
endpoint lock out at the failure limit and then refuse the right password too,
a claimed ``X-Forwarded-For`` does not help a client that is not a trusted
proxy, an account locks across addresses behind a trusted proxy, the token
endpoint's rate limit and the crowd entry limit hold across gunicorn's
processes; the permission matrix (the cross-study staff role among its roles)
passes; and ``check --deploy`` is clean under docker's settings.

The section needs no PostgreSQL (SQLite) but the Redis server the web
processes share a cache on (db 4), as docker's share theirs; it is skipped
where there is none.
"""

from __future__ import annotations

import socket

import pytest

from tests.annotation.test_permissions import ROLES
from tests.benchmarks.sections import run_short


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _redis_answers(), reason="the security section's web processes share a cache on Redis at 127.0.0.1:6379"
)


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_short("security", tmp_path_factory.mktemp("security") / "security.json")


@pytest.mark.parametrize("endpoint", ["login", "token"])
def test_guessing_locks_out_at_the_limit_and_then_refuses_the_right_password(figures: dict, endpoint: str) -> None:
    limit = figures["limits"]["login_failure_limit"]
    for scenario in (
        "same_address",
        "rotating_forwarded_for_untrusted",
        "trusted_proxy_new_address_each_time",
        "one_address_many_accounts",
    ):
        run = figures[endpoint][scenario]
        assert run["attempts"] > limit
        assert run["lockout_at_attempt"] == limit, (scenario, run)
        assert run["wrong_password_answers"] == limit - 1, (scenario, run)
        assert run["answered_after_lockout"] == 0, (scenario, run)
        assert run["correct_password_refused_while_locked"], (scenario, run)
        assert run["correct_password_outcome"] == "locked_out", (scenario, run)
    assert figures[endpoint]["rotating_forwarded_for_helps"] is False
    # A claimed address is no one's word; a trusted proxy's addresses are each counted, and the account locks.
    assert figures[endpoint]["rotating_forwarded_for_untrusted"]["addresses_counted"] == 1
    assert figures[endpoint]["trusted_proxy_new_address_each_time"]["addresses_counted"] > limit


def test_the_token_rate_limit_holds_across_processes_and_claimed_addresses(figures: dict) -> None:
    allowed = int(figures["limits"]["api_anon_rate"].split("/")[0])
    for scenario in ("same_address", "rotating_forwarded_for_untrusted"):
        run = figures["token"]["rate_limit"][scenario]
        assert run["requests"] > allowed
        assert run["answered_before_throttled"] == allowed, (scenario, run)
        assert run["answered_in_window"] == allowed, (scenario, run)


def test_an_invite_link_makes_at_most_the_limit_of_accounts_per_client(figures: dict) -> None:
    limit = figures["limits"]["crowd_entry_limit"]
    assert figures["web"]["workers"] > 1, "the limit is counted across gunicorn's processes"
    for scenario in ("same_address", "rotating_forwarded_for_untrusted"):
        run = figures["crowd_entry"][scenario]
        assert run["attempts"] > limit
        assert run["accounts_created"] == run["accounts_in_database"] == limit, (scenario, run)
        assert run["first_refused_at_attempt"] == limit + 1, (scenario, run)
    assert figures["crowd_entry"]["rotating_forwarded_for_helps"] is False


def test_the_permission_matrix_passes_with_cross_study_staff(figures: dict) -> None:
    matrix = figures["permission_matrix"]
    assert matrix["pytest_exit_status"] == 0, matrix["failures"]
    assert matrix["failed"] == 0, matrix["failures"]
    assert matrix["roles"] == len(ROLES) and matrix["includes_cross_study_staff"]  # every role of the matrix
    assert matrix["cases"] == matrix["passed"] == matrix["roles"] * matrix["routes"]
    staff = matrix["by_role"]["other_staff_researcher"]
    assert staff["cases"] == matrix["routes"] and staff["passed"] == staff["cases"]
    assert staff["routes_refused"] > 0, "a staff researcher of another study is refused this study's routes"


def test_check_deploy_is_clean_under_the_docker_settings(figures: dict) -> None:
    check = figures["check_deploy"]
    assert check["collectstatic_exit_status"] == 0
    assert check["warnings"] == [], check["messages"]
    assert check["exit_status"] == 0, check["summary"]
    assert check["environment"]["DEBUG"] == "false"
