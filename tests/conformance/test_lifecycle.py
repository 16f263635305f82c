"""Conformance: garbage collection, migrations, ping/close and the GC loop, on every backend."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from pgutil import create_test_database, drop_test_database

from appliance.clock import FrozenClock
from appliance.config.schema import StorageConfig
from appliance.errors import NotFound
from appliance.store.base import GCResult, Storage
from appliance.store.migrations import MIGRATIONS
from appliance.store.open import open_storage, run_gc_forever
from appliance.store.sql import SQLStorage

from .conftest import Backend
from .samples import T0, auth_code, auth_request, client, device_request, device_token, refresh_token


async def _seed(storage: Storage) -> None:
    """Per kind: one expired a second ago, one expiring exactly now, one alive for an hour."""
    for n, expiry in ((1, T0 - timedelta(seconds=1)), (2, T0), (3, T0 + timedelta(hours=1))):
        await storage.auth_requests.create(auth_request(n, expiry))
        await storage.auth_codes.create(auth_code(n, expiry))
        await storage.device_requests.create(device_request(n, expiry))
        await storage.device_tokens.create(device_token(n, expiry))
    await storage.refresh_tokens.create(refresh_token(1))
    await storage.clients.create(client(1))


async def test_garbage_collect_deletes_only_expired_state(storage: Storage) -> None:
    await _seed(storage)
    assert await storage.garbage_collect(T0) == GCResult(1, 1, 1, 1)
    assert await storage.garbage_collect(T0) == GCResult()
    with pytest.raises(NotFound):
        await storage.auth_requests.get("areq-1")
    with pytest.raises(NotFound):
        await storage.device_tokens.get("dev-1")
    # Expiring exactly now is not expired yet (as Dex: expiry < now).
    assert (await storage.auth_codes.get("code-2")).expiry == T0
    assert await storage.device_requests.get("BCDF-GH03") == device_request(3, T0 + timedelta(hours=1))
    later = await storage.garbage_collect(T0 + timedelta(days=1))
    assert later == GCResult(2, 2, 2, 2)
    # Refresh tokens and clients are never collected.
    assert await storage.refresh_tokens.get("rt-1") == refresh_token(1)
    assert await storage.clients.get("client-1") == client(1)


async def test_updating_the_expiry_moves_the_gc_deadline(storage: Storage) -> None:
    await storage.auth_requests.create(auth_request(1, T0))
    await storage.auth_requests.update(
        "areq-1", lambda r: dataclasses.replace(r, expiry=T0 + timedelta(hours=2))
    )
    assert await storage.garbage_collect(T0 + timedelta(hours=1)) == GCResult()
    assert await storage.garbage_collect(T0 + timedelta(hours=3)) == GCResult(auth_requests=1)


async def _migrations(storage: Storage) -> list[tuple[int, str]]:
    assert isinstance(storage, SQLStorage)
    rows = await storage.db.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    return [(int(r[0]), str(r[1])) for r in rows]


async def test_migrations_are_recorded_once_and_reopening_keeps_data(backend: Backend) -> None:
    expected = [(mig.version, mig.name) for mig in MIGRATIONS]
    assert await _migrations(backend.storage) == expected
    await backend.storage.clients.create(client(1))
    again = await backend.open()
    assert await _migrations(again) == expected
    assert await again.clients.get("client-1") == client(1)


def test_migration_versions_ascend() -> None:
    versions = [mig.version for mig in MIGRATIONS]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


async def _open_concurrently(cfg: StorageConfig, base_dir: str) -> None:
    stores = await asyncio.gather(*(open_storage(cfg, base_dir=base_dir) for _ in range(3)))
    try:
        expected = [(mig.version, mig.name) for mig in MIGRATIONS]
        for store in stores:
            assert await _migrations(store) == expected
        await stores[0].clients.create(client(1))
        assert await stores[2].clients.get("client-1") == client(1)
    finally:
        for store in stores:
            await store.close()


async def test_sqlite_fresh_file_opened_concurrently_migrates_once(tmp_path: Path) -> None:
    await _open_concurrently(StorageConfig("sqlite3", {"file": "new/portico.db"}), str(tmp_path))


@pytest.mark.postgres
async def test_postgres_fresh_database_opened_concurrently_migrates_once(
    pg_config: dict[str, object],  # fails or skips as the suite does when the server is away
) -> None:
    cfg = await create_test_database()
    try:
        await _open_concurrently(StorageConfig("postgres", cfg), ".")
    finally:
        await drop_test_database(str(cfg["database"]))


async def test_ping_answers_until_closed(backend: Backend) -> None:
    await backend.storage.ping()
    other = await backend.open()
    await other.ping()
    if backend.shared_data:
        await other.close()
        with pytest.raises(Exception):  # noqa: B017 - each driver has its own "closed" error
            await other.ping()


async def test_gc_loop_collects_and_survives_failures(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("test.gc")
    clock = FrozenClock(T0)
    await backend.storage.auth_codes.create(auth_code(1, T0 - timedelta(seconds=1)))
    with caplog.at_level(logging.DEBUG, logger="test.gc"):
        task = asyncio.create_task(run_gc_forever(backend.storage, clock, 0.01, log))
        try:
            # The loop logs after the whole round: wait for the log line, then check the store.
            for _ in range(500):
                if any("1 auth codes" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.01)
            assert any("1 auth codes" in r.getMessage() for r in caplog.records)
            assert await backend.storage.auth_codes.list() == []
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # A store that fails (closed) draws warnings, and the loop keeps going.
    broken = await open_storage(StorageConfig("memory"))
    await broken.close()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="test.gc"):
        task = asyncio.create_task(run_gc_forever(broken, clock, 0.01, log))
        for _ in range(500):
            if len([r for r in caplog.records if r.levelno == logging.WARNING]) >= 3:
                break
            await asyncio.sleep(0.01)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) >= 3
    assert "garbage collection failed" in warnings[0].getMessage()
