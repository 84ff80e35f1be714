"""Throwaway PostgreSQL databases for the benchmarks that need a real server."""

from __future__ import annotations

import psycopg


def libpq_url(url: str) -> str:
    """A ``postgres://`` URL (Django's spelling) as libpq wants it."""
    return url.replace("postgres://", "postgresql://", 1)


def recreate_database(admin_url: str, name: str) -> None:
    """Drop ``name`` if it exists (closing its connections) and create it empty."""
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    """Drop ``name`` if it exists, closing its connections."""
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
