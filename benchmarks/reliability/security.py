"""Security: guessing throttled over HTTP, the permission matrix, ``check --deploy``.

The app as deployed (SQLite, DEBUG off, gunicorn with docker's 3 workers × 4
threads, a Redis cache shared by them as docker/compose.yaml configures it;
see :mod:`.stack`) on 127.0.0.1, twice: one gunicorn faces the clients itself
(no trusted proxy, so ``X-Forwarded-For`` is nobody's word), the other trusts
127.0.0.1 as its proxy (``PREFLOOP_TRUSTED_PROXIES``), so each request's
``X-Forwarded-For`` is the client's address, as behind docker's Caddy. Every
request opens a connection of its own, so requests land on gunicorn's workers
as a guessing client's would, and a limit counted per process would show.

- ``login``: wrong passwords in a row through ``/accounts/login/`` (the form's
  CSRF token read from the page, as a browser posts it), then the right one:
  from one address; from one address claiming a new ``X-Forwarded-For`` on
  every request; from a new address every time behind the trusted proxy (the
  account's own lockout); and one address trying a different account every
  time (the address's lockout). The limit is ``PREFLOOP_LOGIN_FAILURE_LIMIT``
  (django-axes): the limit-th wrong password is answered with the lockout page
  itself, and nothing after it is checked, the right password included.
- ``token``: the same for ``POST /api/v1/auth/token/``; and its rate limit
  (``PREFLOOP_API_ANON_RATE``, 20 a minute per client address) with requests
  that carry no password, which axes does not count.
- ``crowd_entry``: new participant accounts one client makes through a study's
  invite link (a new Prolific id each time) before it is refused
  (``PREFLOOP_CROWD_ENTRY_LIMIT`` per window), with and without a claimed
  ``X-Forwarded-For``.
- ``permission_matrix``: ``tests/annotation/test_permissions.py`` run by pytest
  in a process of its own (SQLite, a folder of its own), its results read from
  the JUnit XML: every role × route, the staff researcher of another study
  (``other_staff_researcher``) among the roles.
- ``check_deploy``: ``manage.py check --deploy --fail-level WARNING`` under the
  environment docker gives the web service (docker/Dockerfile's ``ENV`` and
  the ``web`` service's ``environment`` in docker/compose.yaml, every
  ``${NAME:-default}`` at its default, random secrets where it requires them),
  after collectstatic as the image runs it.

Lockouts and rate-limit counts are cleared between scenarios (``axes.utils.reset``
and the cache), each scenario with an account of its own. The whole section
takes about a minute; ``--short`` is the same run (it is already short enough
for CI).

    python -m benchmarks.reliability --sections security
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.reliability.stack import ROOT, Stack

# The environment before the stack sets its own: the matrix and check --deploy
# run with theirs, not the benchmark's.
ORIGINAL_ENV = dict(os.environ)
# Redis db 4: the cache the web processes share (docker's is its Redis, db 1).
CACHE_URL = "redis://127.0.0.1:6379/4"
PASSWORD = "a-correct-password-for-the-benchmark-7"
ATTEMPTS = 12  # wrong passwords per scenario, well past the limit
THROTTLE_REQUESTS = 40  # token requests without a password, twice the rate limit
CROWD_ATTEMPTS = 25
WEB_WORKERS, WEB_THREADS = 3, 4  # docker/compose.yaml's gunicorn
# Addresses a client claims or a proxy forwards: 198.18.0.0/15, for benchmarks (RFC 2544).
FIRST_ADDRESS = ipaddress.ip_address("198.18.0.1")
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
MATRIX = "tests/annotation/test_permissions.py"
CROSS_STUDY_STAFF = "other_staff_researcher"


def address(k: int) -> str:
    return str(FIRST_ADDRESS + k)


def run(*, short: bool) -> dict[str, Any]:
    del short  # the same run (see the module docstring)
    started = time.monotonic()
    with Stack("security", database="sqlite", broker="filesystem://", settings={"CACHE_URL": CACHE_URL}) as stack:
        direct = stack.web(WEB_WORKERS, WEB_THREADS)
        with _environ(PREFLOOP_TRUSTED_PROXIES="127.0.0.1"):
            proxied = stack.web(WEB_WORKERS, WEB_THREADS)
        from django.conf import settings  # noqa: PLC0415 - configured by the stack

        figures: dict[str, Any] = {
            "web": {"workers": WEB_WORKERS, "threads": WEB_THREADS, "cache": settings.CACHES["default"]["BACKEND"]},
            "login": _login_section(direct, proxied),
            "token": _token_section(direct, proxied),
            "crowd_entry": _crowd_section(direct),
        }
        figures["limits"] = {
            "login_failure_limit": settings.AXES_FAILURE_LIMIT,
            "login_cooloff_seconds": int(settings.AXES_COOLOFF_TIME.total_seconds()),
            "api_anon_rate": settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["anon"],
            "crowd_entry_limit": settings.PREFLOOP_CROWD_ENTRY_LIMIT,
            "crowd_entry_window_seconds": settings.PREFLOOP_CROWD_ENTRY_WINDOW_SECONDS,
        }
        figures["permission_matrix"] = _permission_matrix()
    figures["check_deploy"] = _check_deploy()
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """``values`` in this process's environment while the block runs (a process started in it keeps them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _start_over() -> None:
    """No lockout and no rate-limit count left from the scenario before."""
    from axes.utils import reset  # noqa: PLC0415
    from django.core.cache import cache  # noqa: PLC0415

    reset()
    cache.clear()


def _account(username: str) -> None:
    from django.contrib.auth import get_user_model  # noqa: PLC0415

    get_user_model().objects.create_user(username, password=PASSWORD)


def _addresses_counted(username: str | None = None) -> int:
    """Distinct client addresses django-axes has counted failures from (for ``username``)."""
    from axes.models import AccessAttempt  # noqa: PLC0415

    attempts = AccessAttempt.objects.all()
    if username is not None:
        attempts = attempts.filter(username=username)
    return attempts.values("ip_address").distinct().count()


def _guessing(
    attempt: Callable[[str, str, str | None], str],
    *,
    usernames: Callable[[int], str],
    forwarded: Callable[[int], str | None],
    right_username: str,
) -> dict[str, Any]:
    """``ATTEMPTS`` wrong passwords, then the right one for ``right_username``;
    ``attempt(username, password, forwarded_for)`` sends one and names its outcome."""
    _start_over()
    outcomes = [attempt(usernames(k), f"wrong-guess-{k}", forwarded(k)) for k in range(ATTEMPTS)]
    right = attempt(right_username, PASSWORD, forwarded(ATTEMPTS))
    locked_at = next((k + 1 for k, outcome in enumerate(outcomes) if outcome == "locked_out"), None)
    return {
        "attempts": ATTEMPTS,
        # The limit-th wrong password is checked and answered with the lockout itself.
        "attempts_allowed_before_lockout": locked_at if locked_at is not None else ATTEMPTS,
        "lockout_at_attempt": locked_at,
        "wrong_password_answers": outcomes.count("wrong_password"),
        "answered_after_lockout": sum(o != "locked_out" for o in outcomes[locked_at or ATTEMPTS :]),
        "outcomes": dict(Counter(outcomes)),
        "correct_password_outcome": right,
        "correct_password_refused_while_locked": right != "signed_in",
        "addresses_counted": _addresses_counted(),
    }


def _scenarios(attempt: Callable[..., str], direct: str, proxied: str, prefix: str) -> dict:
    """The four guessing scenarios through ``attempt`` (login form or token endpoint)."""
    results = {}
    for name, base_url, per_attempt_user, forwarded in (
        ("same_address", direct, False, lambda k: None),
        ("rotating_forwarded_for_untrusted", direct, False, address),
        ("trusted_proxy_new_address_each_time", proxied, False, address),
        ("one_address_many_accounts", direct, True, lambda k: None),
    ):
        username = f"{prefix}-{name}"
        _account(username)
        results[name] = _guessing(
            lambda u, p, f, base_url=base_url: attempt(base_url, u, p, f),
            usernames=_usernames(username, per_attempt_user),
            forwarded=forwarded,
            right_username=username,
        )
    same, rotating = results["same_address"], results["rotating_forwarded_for_untrusted"]
    results["rotating_forwarded_for_helps"] = (
        rotating["lockout_at_attempt"] is None
        or rotating["lockout_at_attempt"] > same["lockout_at_attempt"]
        or not rotating["correct_password_refused_while_locked"]
    )
    return results


def _usernames(username: str, different_each_time: bool) -> Callable[[int], str]:
    """The account each guess is for: ``username`` every time, or a different (unknown) one."""
    return (lambda k: f"{username}-nobody-{k}") if different_each_time else (lambda k: username)


# --- the login form -----------------------------------------------------------------

_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _login_attempt(base_url: str, username: str, password: str, forwarded: str | None) -> str:
    """One sign-in as a browser makes it (the page, then the form with its CSRF
    token), on fresh connections; its outcome."""
    import requests  # noqa: PLC0415

    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with requests.Session() as browser:
        page = browser.get(f"{base_url}/accounts/login/", headers=headers, timeout=30)
        token = _CSRF_FIELD.search(page.text)
        if page.status_code != 200 or token is None:
            return f"login_page_{page.status_code}"
        response = browser.post(
            f"{base_url}/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
            headers={**headers, "Referer": f"{base_url}/accounts/login/"},
            allow_redirects=False,
            timeout=30,
        )
    if response.status_code == 302 and "/accounts/login/" not in response.headers.get("Location", ""):
        return "signed_in"
    if response.status_code == 429 and "Too many sign-in attempts" in response.text:
        return "locked_out"
    if response.status_code == 200 and 'name="password"' in response.text:
        return "wrong_password"
    return f"status_{response.status_code}"


def _login_section(direct: str, proxied: str) -> dict[str, Any]:
    return _scenarios(_login_attempt, direct, proxied, "login")


# --- the token endpoint ---------------------------------------------------------------


def _token_attempt(base_url: str, username: str, password: str | None, forwarded: str | None) -> str:
    import requests  # noqa: PLC0415

    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    body = {"username": username} if password is None else {"username": username, "password": password}
    response = requests.post(f"{base_url}/api/v1/auth/token/", json=body, headers=headers, timeout=30)
    detail = response.json().get("detail", "") if "json" in response.headers.get("Content-Type", "") else ""
    if response.status_code == 200 and "token" in response.json():
        return "signed_in"
    if response.status_code == 429:
        return "locked_out" if "failed sign-ins" in detail else "throttled"
    if response.status_code == 400:
        return "wrong_password" if password is not None else "refused_400"
    return f"status_{response.status_code}"


def _token_section(direct: str, proxied: str) -> dict[str, Any]:
    results = _scenarios(_token_attempt, direct, proxied, "token")
    results["rate_limit"] = {name: _token_rate(direct, forwarded) for name, forwarded in (
        ("same_address", lambda k: None), ("rotating_forwarded_for_untrusted", address)
    )}  # fmt: skip
    return results


def _token_rate(base_url: str, forwarded: Callable[[int], str | None]) -> dict[str, Any]:
    """``THROTTLE_REQUESTS`` token requests without a password (not a failed
    sign-in: only the rate limit counts them) as fast as they go."""
    _start_over()
    started = time.monotonic()
    outcomes = [_token_attempt(base_url, "rate-probe", None, forwarded(k)) for k in range(THROTTLE_REQUESTS)]
    first = next((k for k, outcome in enumerate(outcomes) if outcome == "throttled"), None)
    return {
        "requests": THROTTLE_REQUESTS,
        "answered_before_throttled": first if first is not None else THROTTLE_REQUESTS,
        "answered_in_window": sum(outcome != "throttled" for outcome in outcomes),
        "throttled": outcomes.count("throttled"),
        "seconds": round(time.monotonic() - started, 1),
    }


# --- crowd entry ------------------------------------------------------------------------


def _crowd_section(direct: str) -> dict[str, Any]:
    from annotation.services import study_create  # noqa: PLC0415

    study = study_create(name="Crowd entry")
    results = {}
    for k, (name, forwarded) in enumerate(
        (("same_address", lambda n: None), ("rotating_forwarded_for_untrusted", address))
    ):
        results[name] = _crowd_entries(direct, study, forwarded, f"r{k}")
    rotating, same = results["rotating_forwarded_for_untrusted"], results["same_address"]
    results["rotating_forwarded_for_helps"] = rotating["accounts_created"] > same["accounts_created"]
    return results


def _crowd_entries(base_url: str, study: Any, forwarded: Callable[[int], str | None], run_id: str) -> dict:
    import requests  # noqa: PLC0415
    from django.contrib.auth import get_user_model  # noqa: PLC0415

    from annotation.services.crowd import participant_username  # noqa: PLC0415

    _start_over()
    outcomes = []
    for n in range(CROWD_ATTEMPTS):
        pid = f"{run_id}{secrets.token_hex(11)}"
        params = {"PROLIFIC_PID": pid, "STUDY_ID": "benchmark", "SESSION_ID": secrets.token_hex(8)}
        headers = {"X-Forwarded-For": forwarded(n)} if forwarded(n) else {}
        response = requests.get(
            f"{base_url}/join/{study.invite_token}/", params=params, headers=headers, allow_redirects=False, timeout=30
        )
        if response.status_code == 302 and f"/s/{study.slug}/annotate/" in response.headers.get("Location", ""):
            outcomes.append("account_created")
        elif response.status_code == 429:
            outcomes.append("refused_429")
        else:
            outcomes.append(f"status_{response.status_code}")
    prefix = participant_username(study=study, external_id=run_id)
    first_refused = next((n + 1 for n, o in enumerate(outcomes) if o == "refused_429"), None)
    return {
        "attempts": CROWD_ATTEMPTS,
        "accounts_created": outcomes.count("account_created"),
        "refused_429": outcomes.count("refused_429"),
        "first_refused_at_attempt": first_refused,
        "outcomes": dict(Counter(outcomes)),
        "accounts_in_database": get_user_model().objects.filter(username__startswith=prefix).count(),
    }


# --- the permission matrix -------------------------------------------------------------


def _clean_env(folder: Path) -> dict[str, str]:
    """The environment from before the stack, without settings of the app's own,
    and no .env file: what runs in it gets only the settings it is given."""
    prefixes = ("DEBUG", "SECRET_KEY", "PREFLOOP_", "SECURE_", "DATABASE_URL", "CELERY_", "CACHE_URL", "ALLOWED_HOSTS",
                "CSRF_", "MEDIA_ROOT", "STATIC_ROOT", "DJANGO_SETTINGS_MODULE", "AWS_")  # fmt: skip
    env = {name: value for name, value in ORIGINAL_ENV.items() if not name.startswith(prefixes)}
    env.update(PREFLOOP_ENV_FILE=str(folder / "no.env"), PREFLOOP_VAR_DIR=str(folder / "var"))
    return env


def _permission_matrix() -> dict[str, Any]:
    """The matrix test on SQLite in a folder of its own (a test database of its
    own: CI's pytest may be running this), its cases read from JUnit XML."""
    with tempfile.TemporaryDirectory(prefix="prefloop-matrix-") as tmp:
        folder = Path(tmp)
        report = folder / "matrix.xml"
        env = {**_clean_env(folder), "DEBUG": "true", "SECRET_KEY": "test-only-secret-key"}
        command = [sys.executable, "-m", "pytest", MATRIX, "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
        started = time.monotonic()
        finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        seconds = time.monotonic() - started
        cases = _junit_cases(report) if report.exists() else []
    by_role: dict[str, Counter] = {}
    failures = []
    for name, outcome in cases:
        match = re.fullmatch(r"test_permission_matrix\[(?P<route>.+)-(?P<role>\w+)\]", name)
        if match is None:
            continue
        by_role.setdefault(match["role"], Counter())[outcome] += 1
        if outcome != "passed":
            failures.append(name)
    audience = _audience()
    roles = {
        role: {
            "cases": sum(tally.values()),
            "passed": tally["passed"],
            "failed": sum(n for outcome, n in tally.items() if outcome != "passed"),
            **audience.get(role, {}),
        }
        for role, tally in by_role.items()
    }
    return {
        "test": MATRIX,
        "roles": len(roles),
        "routes": len({name.split("[")[1].rsplit("-", 1)[0] for name, _ in cases if "[" in name}),
        "cases": sum(r["cases"] for r in roles.values()),
        "passed": sum(r["passed"] for r in roles.values()),
        "failed": sum(r["failed"] for r in roles.values()),
        "by_role": roles,
        "includes_cross_study_staff": CROSS_STUDY_STAFF in roles,
        "other_tests": {name: outcome for name, outcome in cases if not name.startswith("test_permission_matrix[")},
        "failures": failures[:20],
        "pytest_exit_status": finished.returncode,
        "pytest_summary": (finished.stdout.strip().splitlines() or [""])[-1],
        "seconds": round(seconds, 1),
    }


def _junit_cases(report: Path) -> list[tuple[str, str]]:
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
        cases.append((case.get("name", ""), outcome))
    return cases


def _audience() -> dict[str, dict[str, int]]:
    """Routes each role may use and routes it must be refused, from the matrix's own table."""
    try:
        from tests.annotation.test_permissions import AUDIENCE, ROLES, ROUTES  # noqa: PLC0415
    except ImportError as exc:  # the matrix's data is a nicety; the pass/fail counts stand without it
        print(f"the matrix's table could not be read: {exc}", file=sys.stderr)
        return {}
    return {
        role: {
            "routes_allowed": sum(role in AUDIENCE[route.audience] for route in ROUTES),
            "routes_refused": sum(role not in AUDIENCE[route.audience] for route in ROUTES),
        }
        for role in ROLES
    }


# --- check --deploy under docker's settings ---------------------------------------------

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[-?])(?P<arg>[^}]*))?\}")
_CHECK_ID = re.compile(r"\((?P<id>[\w.]+\.[WEC]\d+)\)")


def docker_web_env() -> dict[str, str]:
    """The web service's environment under docker: the Dockerfile's ``ENV`` and the
    ``web`` service's ``environment`` in compose.yaml, each ``${NAME:-default}``
    at its default and each ``${NAME:?}`` it requires a random value (as the
    compose file's header makes SECRET_KEY: 50 random characters)."""
    import yaml  # noqa: PLC0415 - PyYAML comes with the dev and bench requirements

    env = _dockerfile_env()
    given: dict[str, str] = {}

    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if op == "?":
            return given.setdefault(name, secrets.token_urlsafe(50))
        if op == "-" or name not in ORIGINAL_ENV:
            return arg or ""
        return ORIGINAL_ENV[name]

    environment = yaml.safe_load(COMPOSE.read_text())["services"]["web"]["environment"]
    env.update({name: _VARIABLE.sub(substitute, str(value)) for name, value in environment.items()})
    return env


def _dockerfile_env() -> dict[str, str]:
    """``ENV NAME=value`` pairs of the Dockerfile's final stage (continued lines joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    final = text[text.rfind("\nFROM ") :]
    env = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in line[4:].split()))
    return env


def _check_deploy() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="prefloop-deploy-") as tmp:
        folder = Path(tmp)
        docker = docker_web_env()
        env = {**_clean_env(folder), **docker, "STATIC_ROOT": str(folder / "static")}
        collected = subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        check = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    output = check.stdout + check.stderr
    secret_names = ("SECRET_KEY", "PASSWORD", "AWS_SECRET_ACCESS_KEY")
    return {
        "command": "python manage.py check --deploy --fail-level WARNING",
        "environment_from": ["docker/Dockerfile ENV", "docker/compose.yaml services.web.environment"],
        "environment": {k: "<random>" if k.endswith(secret_names) else v for k, v in sorted(docker.items())},
        "collectstatic_exit_status": collected.returncode,
        "exit_status": check.returncode,
        "warnings": sorted({m["id"] for m in _CHECK_ID.finditer(output)}),
        "messages": [line for line in output.splitlines() if _CHECK_ID.search(line)][:20],
        "summary": next((line for line in output.splitlines() if line.startswith("System check")), output[-500:]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="reliability section: security")
    parser.add_argument("--short", action="store_true", help="the same run (see the module docstring)")
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.json_out.write_text(json.dumps(run(short=args.short), indent=2) + "\n")


if __name__ == "__main__":
    main()
