"""Transactions the database asks to run again (issue 15's load benchmark): a
deadlock victim, SQLite's ``database is locked`` or a dropped connection costs
the annotator one retry inside the request, not a server error, and the answer
is stored once. The failures are injected into the real services'
transactions; ``transaction=True`` so no test transaction is wrapped around
them, as in a request."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection, transaction

from activelearn import refill
from annotation import services
from annotation.models import Assignment, Comparison, Judgment
from annotation.services import answers, leasing, retry
from tests.factories import MembershipFactory, UserFactory, study_with_queue

pytestmark = pytest.mark.django_db(transaction=True)


class _SqlError(Exception):
    """What a driver raises: a SQLSTATE, as psycopg's errors carry one."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _django_error(message: str, sqlstate: str | None = None) -> OperationalError:
    """An ``OperationalError`` as Django raises it: the driver's error as its cause."""
    error = OperationalError(message)
    error.__cause__ = _SqlError(message, sqlstate)
    return error


DEADLOCK = ("deadlock detected", "40P01")
SERIALIZATION = ("could not serialize access due to concurrent update", "40001")
LOCKED = ("database is locked", None)
TERMINATED = ("terminating connection due to administrator command", "57P01")


@pytest.mark.parametrize("message,sqlstate", [DEADLOCK, SERIALIZATION, LOCKED, TERMINATED])
def test_the_errors_the_database_asks_to_retry_are_retryable(message, sqlstate):
    assert retry.transaction_retryable(_django_error(message, sqlstate))


@pytest.mark.parametrize(
    "error",
    [
        _django_error("canceling statement due to statement timeout", "57014"),
        _django_error("value too long for type character varying(40)", "22001"),
        ValueError("not a database error"),
    ],
)
def test_other_errors_on_a_live_connection_are_not(error):
    Judgment.objects.exists()  # a live connection
    assert not retry.transaction_retryable(error)


def _failing_once(monkeypatch, module, name: str, error: Exception) -> list[int]:
    """Make ``module.name`` raise ``error`` on its first call (inside the service's
    transaction, after its first writes), then behave; the list counts calls."""
    real = getattr(module, name)
    calls: list[int] = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return calls


@pytest.fixture
def leased():
    study = study_with_queue(n_prompts=2, n_candidates=3)
    user = UserFactory()
    MembershipFactory(user=user, study=study, role="annotator")
    lease = services.assignment_lease_next(study=study, annotator=user)
    return study, user, lease.assignment.comparison_id


@pytest.mark.parametrize("message,sqlstate", [DEADLOCK, LOCKED, TERMINATED])
def test_an_answer_whose_transaction_failed_is_run_again_and_stored_once(monkeypatch, leased, message, sqlstate):
    study, user, comparison_id = leased
    calls = _failing_once(monkeypatch, answers, "comparison_status_refresh", _django_error(message, sqlstate))
    submission = services.judgment_submit(study=study, annotator=user, comparison_id=comparison_id, choice="a")
    assert submission.created and len(calls) == 2
    judgment = Judgment.objects.get()  # the first attempt's row was rolled back with it
    assert judgment.id == submission.judgment.id
    assert Assignment.objects.get(comparison_id=comparison_id, annotator=user).status == Assignment.Status.SUBMITTED
    assert Comparison.objects.get(id=comparison_id).status == Comparison.Status.DONE


def test_a_lease_whose_transaction_deadlocked_is_run_again(monkeypatch):
    study = study_with_queue(n_prompts=2, n_candidates=3)
    user = UserFactory()
    MembershipFactory(user=user, study=study, role="annotator")
    calls = _failing_once(monkeypatch, leasing, "comparison_status_refresh", _django_error(*DEADLOCK))
    lease = services.assignment_lease_next(study=study, annotator=user)
    assert lease is not None and lease.created and len(calls) == 2
    assert Assignment.objects.filter(annotator=user, status=Assignment.Status.ACTIVE).count() == 1
    assert Comparison.objects.get(id=lease.assignment.comparison_id).status == Comparison.Status.LEASED


def test_a_refill_whose_transaction_deadlocked_is_run_again(monkeypatch):
    study = study_with_queue(n_prompts=3, n_candidates=4, fill=False, queue_target=6)
    calls = _failing_once(monkeypatch, refill, "_comparisons_create", _django_error(*DEADLOCK))
    assert refill.queue_refill(study_id=study.id, use_model=False, seed=0) == 6
    assert len(calls) == 2 and Comparison.objects.filter(study=study).count() == 6


def test_a_failure_that_is_not_retryable_reaches_the_caller_at_once(monkeypatch, leased):
    study, user, comparison_id = leased
    error = _django_error("value too long for type character varying(40)", "22001")
    calls = _failing_once(monkeypatch, answers, "comparison_status_refresh", error)
    with pytest.raises(OperationalError):
        services.judgment_submit(study=study, annotator=user, comparison_id=comparison_id, choice="a")
    assert len(calls) == 1 and not Judgment.objects.exists()


def test_inside_a_callers_transaction_the_error_goes_to_the_caller(monkeypatch, leased):
    """Retrying the inner block alone would not redo the caller's work."""
    study, user, comparison_id = leased
    calls = _failing_once(monkeypatch, answers, "comparison_status_refresh", _django_error(*DEADLOCK))
    with pytest.raises(OperationalError), transaction.atomic():
        services.judgment_submit(study=study, annotator=user, comparison_id=comparison_id, choice="a")
    assert len(calls) == 1 and not Judgment.objects.exists()


def test_a_failure_that_persists_is_raised_after_the_last_attempt(monkeypatch, leased):
    study, user, comparison_id = leased
    monkeypatch.setattr(retry, "BACKOFF_SECONDS", 0.0)
    calls: list[int] = []

    def always(*args, **kwargs):
        calls.append(1)
        raise _django_error(*DEADLOCK)

    monkeypatch.setattr(answers, "comparison_status_refresh", always)
    with pytest.raises(OperationalError):
        services.judgment_submit(study=study, annotator=user, comparison_id=comparison_id, choice="a")
    assert len(calls) == retry.ATTEMPTS and not Judgment.objects.exists()


def test_a_connection_closed_without_a_word_is_retryable():
    """psycopg's message when the server's socket closed under a query: no SQLSTATE."""
    error = _django_error("consuming input failed: server closed the connection unexpectedly", None)
    assert retry.connection_dropped(error) and retry.transaction_retryable(error)


# --- a real dropped connection (PostgreSQL: pg_terminate_backend) ------------------------


def _terminate_own_backend() -> None:
    """End this test's database session from a second connection, as an operator
    or a database restart would."""
    import psycopg

    pid = connection.cursor().connection.info.backend_pid
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


on_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend")


@on_postgres
def test_a_read_whose_connection_was_dropped_reads_again_on_a_new_one(leased):
    study, _, _ = leased
    _terminate_own_backend()
    assert Judgment.objects.filter(study=study).count() == 0  # no OperationalError


@on_postgres
def test_an_answer_whose_connection_was_dropped_is_stored_once(monkeypatch, leased):
    study, user, comparison_id = leased
    real = answers.comparison_status_refresh
    calls: list[int] = []

    def dropped_once(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            _terminate_own_backend()
        return real(**kwargs)

    monkeypatch.setattr(answers, "comparison_status_refresh", dropped_once)
    submission = services.judgment_submit(study=study, annotator=user, comparison_id=comparison_id, choice="b")
    assert submission.created and len(calls) == 2
    assert list(Judgment.objects.values_list("id", flat=True)) == [submission.judgment.id]
