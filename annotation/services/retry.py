"""Transactions the database asks to run again.

Under many annotators at once a transaction can fail through no fault of its
own: PostgreSQL picks it as a deadlock's victim or a serialization failure,
SQLite gives up waiting for its one writer (``database is locked``), or the
server dropped the connection (a restart, an operator's
``pg_terminate_backend``). Nothing was written, so running the whole
transaction again is safe, and every write retried this way is idempotent
(a second submit of an answer returns the first judgment). :func:`retry_transaction`
does that, a few times with a short random back-off, for the outermost
transaction only: inside a caller's transaction the caller's work is lost too,
so the error goes to the caller.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

ATTEMPTS = 4
BACKOFF_SECONDS = 0.05  # the first wait's upper bound; it doubles with each attempt

# deadlock_detected, serialization_failure: run again on the same connection.
_CONFLICT_SQLSTATES = {"40P01", "40001"}
# The server ended the session (admin_shutdown, crash_shutdown, cannot_connect_now)
# or the connection failed: run again on a new connection.
_DROPPED_SQLSTATES = {"57P01", "57P02", "57P03", "08000", "08003", "08006"}
# What a driver says when the server went away without a word (no SQLSTATE).
_DROPPED_MESSAGES = (
    "server closed the connection",
    "connection is closed",
    "consuming input failed",
    "connection lost",
)


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def connection_dropped(exc: BaseException) -> bool:
    """Whether ``exc`` says the database connection is gone (the server ended
    the session or the socket closed): only a new connection helps."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    if _sqlstate(exc) in _DROPPED_SQLSTATES or isinstance(exc, InterfaceError):
        return True
    message = str(exc).lower()
    return _sqlstate(exc) is None and any(words in message for words in _DROPPED_MESSAGES)


def transaction_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` means "run the transaction again": a deadlock or
    serialization failure, SQLite's ``database is locked``, or a connection the
    server dropped."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    if _sqlstate(exc) in _CONFLICT_SQLSTATES or "database is locked" in str(exc):
        return True
    return connection_dropped(exc)


def retry_transaction(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` (itself ``@transaction.atomic``) again, up to ``ATTEMPTS``
    times in all, when the database asks for it (:func:`transaction_retryable`);
    only when no transaction of the caller's is open. After a dropped
    connection the next attempt connects afresh: the driver may not have
    noticed yet that the socket is dead."""

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        attempt = 1
        while True:
            try:
                return func(*args, **kwargs)
            except DatabaseError as exc:
                if attempt >= ATTEMPTS or connection.in_atomic_block or not transaction_retryable(exc):
                    raise
                logger.warning("%s: %s; running it again (attempt %d)", func.__name__, exc, attempt + 1)
                if connection_dropped(exc):
                    connection.close()
                time.sleep(random.uniform(0, BACKOFF_SECONDS * 2 ** (attempt - 1)))
                attempt += 1

    return run


def reconnecting_reads(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    """A database execute wrapper (:func:`install_reconnecting_reads`): a
    ``SELECT`` outside any transaction whose connection the server dropped runs
    once more on a new connection, so a request that was reading (signing in
    with a token, checking access, the page's counts) when the database
    restarted or an operator ended its session does not fail; writes and work
    inside transactions are left to :func:`retry_transaction`."""
    try:
        return execute(sql, params, many, context)
    except DatabaseError as exc:
        db = context["connection"]
        if db.in_atomic_block or not db.get_autocommit() or not _is_read(sql) or not connection_dropped(exc):
            raise
        logger.warning("a read lost its database connection (%s); reading again on a new one", exc)
        db.close()
        db.ensure_connection()
        context["cursor"].cursor = db.create_cursor()
        return execute(sql, params, many, context)


def _is_read(sql: str) -> bool:
    return sql.lstrip().lower().startswith("select")


def install_reconnecting_reads(*, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: every new connection gets :func:`reconnecting_reads`."""
    if reconnecting_reads not in connection.execute_wrappers:
        connection.execute_wrappers.append(reconnecting_reads)
