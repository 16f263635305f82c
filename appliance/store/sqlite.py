"""The SQLite backend (aiosqlite): one database file in WAL mode, or one in-memory database."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import aiosqlite

from appliance.errors import PorticoError
from appliance.store.migrations import apply_pending
from appliance.store.sql import SQLStorage
from appliance.store.steps import Rows, Steps, drive

__all__ = ["MEMORY", "SQLiteDatabase", "open_sqlite"]

MEMORY = ":memory:"
# RETURNING, which every write of the store uses, arrived in SQLite 3.35.
_MIN_VERSION = (3, 35, 0)
# How long a writer waits for another process's write lock before "database is locked".
_BUSY_TIMEOUT_MS = 10_000

R = TypeVar("R")


class SQLiteDatabase:
    """One aiosqlite connection (one worker thread). Statements run in autocommit mode, so each
    compare-and-swap UPDATE is its own short transaction and other processes see it at once; `run`
    opens an explicit transaction when asked to."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        # aiosqlite runs anything on its worker thread through this private coroutine (its public
        # methods are one statement each), and keeps the sqlite3 connection in the private `_conn`.
        # They are the only way to run several statements, and the Python between them, in one hop
        # without a thread of our own; tests/conformance/test_batch.py fails if either goes away or
        # stops running on that thread.
        self._on_thread = cast(Callable[[Callable[[], Any]], Awaitable[Any]], conn._execute)

    async def fetch(self, sql: str, *args: Any) -> Sequence[Sequence[Any]]:
        # execute_fetchall runs the statement and drains its cursor in one hop to the worker thread.
        return list(await self._conn.execute_fetchall(sql, args))

    async def run(self, steps: Steps[R], *, write: bool) -> R:
        conn = self._conn

        def work() -> R:
            # On the worker thread: the only one that may use the sqlite3 connection.
            raw = conn._conn
            return _in_transaction(raw, steps) if write else drive(_executor(raw), steps)

        result: R = await self._on_thread(work)
        return result

    async def ping(self) -> None:
        await self._conn.execute_fetchall("SELECT 1")

    async def close(self) -> None:
        await self._conn.close()


def _executor(raw: sqlite3.Connection) -> Callable[[str, tuple[Any, ...]], Rows]:
    def execute(sql: str, args: tuple[Any, ...]) -> Rows:
        return raw.execute(sql, args).fetchall()

    return execute


def _in_transaction(raw: sqlite3.Connection, steps: Steps[R]) -> R:
    # IMMEDIATE takes the write lock before the first read, so that nothing another process commits
    # can slip in between a read and the write that depends on it; a process holding it makes this
    # one wait (busy_timeout), as a single write would.
    raw.execute("BEGIN IMMEDIATE")
    try:
        result = drive(_executor(raw), steps)
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return result


async def open_sqlite(path: str) -> SQLStorage:
    """Open (creating and migrating as needed) the database at `path`, or ":memory:".

    The file's folder must exist; a new file is created with mode 0600 (it holds secrets).
    """
    if sqlite3.sqlite_version_info < _MIN_VERSION:
        raise PorticoError(
            f"SQLite {sqlite3.sqlite_version} is too old: Portico needs "
            f"{'.'.join(map(str, _MIN_VERSION))} or newer"
        )
    memory = path == MEMORY
    if not memory:
        await asyncio.to_thread(_create_private, path)
    try:
        conn = await aiosqlite.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise PorticoError(f"cannot open the SQLite database {path}: {exc}") from exc
    try:
        await conn.execute_fetchall(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if not memory:
            await _enable_wal(conn)
            # With WAL, NORMAL loses at most the last commits on power loss, never consistency.
            await conn.execute_fetchall("PRAGMA synchronous = NORMAL")
        await _migrate(conn)
    except BaseException:
        await conn.close()
        raise
    return SQLStorage(SQLiteDatabase(conn))


def _create_private(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise PorticoError(f"cannot create the SQLite database {path}: {exc.strerror}") from exc
    os.close(fd)


async def _enable_wal(conn: aiosqlite.Connection) -> None:
    # Switching a new file to WAL needs a moment of exclusive access; a second process opening the
    # same new file at that moment may be told "locked" without the busy handler, so retry briefly.
    for _ in range(100):
        try:
            await conn.execute_fetchall("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            await asyncio.sleep(0.05)
    raise PorticoError("cannot switch the SQLite database to WAL mode: it stays locked")


async def _migrate(conn: aiosqlite.Connection) -> None:
    async def run(sql: str, *args: Any) -> Sequence[Sequence[Any]]:
        return list(await conn.execute_fetchall(sql, args))

    # BEGIN IMMEDIATE takes the write lock up front: a second process waits here (busy_timeout)
    # and then finds the migrations recorded, instead of applying them twice.
    await conn.execute_fetchall("BEGIN IMMEDIATE")
    try:
        await apply_pending(run, "sqlite")
    except BaseException:
        await conn.execute_fetchall("ROLLBACK")
        raise
    await conn.execute_fetchall("COMMIT")
