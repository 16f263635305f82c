"""Migration 6 on a database written before it: the refresh tokens get their offline-session, client and
last-use columns from their data, and the offline sessions lose the token list they used to carry; on
SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest
from pgutil import create_test_database, drop_test_database

from appliance.config.schema import StorageConfig
from appliance.store import codec
from appliance.store.migrations import MIGRATIONS, apply_pending
from appliance.store.models import Claims, OfflineSession, RefreshToken, offline_session_key
from appliance.store.open import open_storage
from appliance.store.postgres import to_dollar_params
from appliance.store.sql import SQLStorage, epoch_micros

Run = Callable[..., Awaitable[Sequence[Sequence[Any]]]]
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SESSION = offline_session_key("u1", "ldap")


def _token(token_id: str, client_id: str, last_used: datetime) -> RefreshToken:
    return RefreshToken(
        id=token_id, token="h1$$digest", client_id=client_id, connector_id="ldap",
        claims=Claims(user_id="u1", email="u1@example.com"), scopes=("openid", "offline_access"),
        created_at=T0, last_used=last_used, expiry=T0 + timedelta(days=30),
    )


OLD_TOKENS = (
    _token("rt-a", "app", T0 + timedelta(minutes=5)),
    _token("rt-b", "app", T0 + timedelta(minutes=1)),  # the app's least recently used
    _token("rt-c", "cli", T0),
)


def _old_session_json() -> str:
    # As versions before migration 6 wrote it: the tokens listed on the session.
    refs = {t.id: {"id": t.id, "client_id": t.client_id, "created_at": t.created_at.isoformat(),
                   "last_used": t.last_used.isoformat()} for t in OLD_TOKENS}
    return json.dumps({"user_id": "u1", "conn_id": "ldap", "refresh": refs, "connector_data": "Y2Q="})


async def _seed(run: Run, dialect: str) -> None:
    await apply_pending(run, dialect, MIGRATIONS[:5])
    for token in OLD_TOKENS:
        await run("INSERT INTO refresh_tokens (id, data, expiry, version) VALUES (?, ?, ?, 1)",
                  token.id, codec.dumps(token), epoch_micros(token.expiry))
    await run("INSERT INTO offline_sessions (id, data, expiry, version) VALUES (?, ?, NULL, 1)",
              SESSION, _old_session_json())


async def _check_migrated(storage: SQLStorage) -> None:
    rows = await storage.db.fetch("SELECT max(version) FROM schema_migrations")
    assert int(rows[0][0]) == MIGRATIONS[-1].version
    session_rows = await storage.db.fetch("SELECT data FROM offline_sessions WHERE id = ?", SESSION)
    assert "refresh" not in json.loads(session_rows[0][0])
    assert await storage.offline_sessions.get(SESSION) == OfflineSession("u1", "ldap", b"cd")
    tokens = storage.refresh_tokens
    assert await storage.run(tokens.steps.held(SESSION))
    assert not await storage.run(tokens.steps.held(offline_session_key("u2", "ldap")))
    # The columns came from each token's data: keeping one of the app's, the least recently used goes;
    # the other client's token is not the app's to evict.
    evicted = await storage.run(tokens.steps.evict(SESSION, "app", keep=1, now=T0), write=True)
    assert evicted == ["rt-b"]
    assert {t.id for t in await tokens.list()} == {"rt-a", "rt-c"}


async def test_sqlite_database_of_version_5_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "portico.db"
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        async def run(sql: str, *args: Any) -> Sequence[Sequence[Any]]:
            return list(await conn.execute_fetchall(sql, args))

        await _seed(run, "sqlite")
    finally:
        await conn.close()
    storage = await open_storage(StorageConfig("sqlite3", {"file": str(path)}), base_dir=str(tmp_path))
    try:
        assert isinstance(storage, SQLStorage)
        await _check_migrated(storage)
    finally:
        await storage.close()


@pytest.mark.postgres
async def test_postgres_database_of_version_5_is_migrated(
    pg_config: dict[str, object],  # fails or skips as the suite does when the server is away
) -> None:
    cfg = await create_test_database()
    try:
        conn = await asyncpg.connect(host=cfg["host"], port=cfg["port"], user=cfg["user"],
                                     database=cfg["database"], ssl=False)
        try:
            async def run(sql: str, *args: Any) -> Sequence[Sequence[Any]]:
                rows: Sequence[Sequence[Any]] = await conn.fetch(to_dollar_params(sql), *args)
                return rows

            await _seed(run, "postgres")
        finally:
            await conn.close()
        storage = await open_storage(StorageConfig("postgres", cfg), base_dir=".")
        try:
            assert isinstance(storage, SQLStorage)
            await _check_migrated(storage)
        finally:
            await storage.close()
    finally:
        await drop_test_database(str(cfg["database"]))
