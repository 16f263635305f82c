"""Throw-away PostgreSQL databases for tests: create one with a random name, drop it afterwards.

Used by the storage conformance suite and the end-to-end tests. The server is the machine's own
(127.0.0.1:5432, user postgres, trust auth). `create_test_database` raises PostgresUnavailable
when the server does not answer; `postgres_unavailable` then skips, or fails under CI=true.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import Any

import asyncpg
import pytest

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
CONNECT_TIMEOUT_S = 5.0
_NAME = re.compile(r"^portico_test_[a-z0-9_]+$")


class PostgresUnavailable(Exception):
    """The test server did not answer (the message says why)."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def postgres_unavailable(reason: str) -> None:
    """Skip, or fail under CI=true, where a missing real component must never pass silently."""
    if in_ci():
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def storage_config(database: str) -> dict[str, Any]:
    """The Dex-style `storage.config` of a postgres storage for `database` on the test server."""
    return {
        "host": PG_HOST,
        "port": PG_PORT,
        "user": PG_USER,
        "password": "",
        "database": database,
        "ssl": {"mode": "disable"},
    }


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(
            host=PG_HOST,
            port=PG_PORT,
            user=PG_USER,
            database="postgres",
            ssl=False,
            timeout=CONNECT_TIMEOUT_S,
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise PostgresUnavailable(
            f"PostgreSQL at {PG_HOST}:{PG_PORT} (user {PG_USER}) does not answer: {type(exc).__name__}: {exc}"
        ) from exc


async def create_test_database() -> dict[str, Any]:
    """Create `portico_test_<random>` and return its Dex-style config (its name under "database")."""
    name = f"portico_test_{secrets.token_hex(6)}"
    conn = await _admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        # Tests need no durability across a crash of the server; skipping the WAL flush per commit
        # makes a write-heavy suite several times faster on a busy disk. Semantics are unchanged.
        await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await conn.close()
    return storage_config(name)


async def drop_test_database(name: str) -> None:
    """Drop a database made by create_test_database (closing any connection still open to it)."""
    if not _NAME.match(name):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
