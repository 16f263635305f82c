"""Login throttles on every backend (memory, SQLite, PostgreSQL): stored exactly, counted exactly under
concurrency from several connections, never more attempts than the limit, expired by garbage collection."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from conformance.conftest import Backend

from appliance.clock import FrozenClock
from appliance.config.schema import BruteForceConfig, ThrottleLimit
from appliance.errors import AlreadyExists, NotFound
from appliance.security import throttle as th
from appliance.store.base import Storage
from appliance.store.models import LoginThrottle

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
UNLIMITED = BruteForceConfig(account=ThrottleLimit(0, timedelta(minutes=5)))
LIMITED = BruteForceConfig(account=ThrottleLimit(4, timedelta(minutes=5)))


async def test_a_record_round_trips(storage: Storage) -> None:
    record = LoginThrottle(
        id="account:local:jane@example.com", kind=th.ACCOUNT, expiry=T0 + timedelta(minutes=15),
        connector_id="local", subject="jane@example.com", failures=3, window_start=T0,
        last_attempt=T0 + timedelta(seconds=7, microseconds=5), locked_until=T0 + timedelta(minutes=15),
        lockouts=2,
    )
    await storage.login_throttles.create(record)
    assert await storage.login_throttles.get(record.id) == record
    with pytest.raises(AlreadyExists):
        await storage.login_throttles.create(record)
    bare = LoginThrottle(id="ip:192.0.2.1", kind=th.IP, expiry=T0)
    await storage.login_throttles.create(bare)
    assert await storage.login_throttles.get(bare.id) == bare  # None datetimes survive
    assert [r.id for r in await storage.login_throttles.list()] == [record.id, bare.id]
    await storage.login_throttles.delete(record.id)
    with pytest.raises(NotFound):
        await storage.login_throttles.get(record.id)


async def _reserve_all(stores: list[Storage], config: BruteForceConfig, n: int) -> list[bool]:
    """n concurrent reservations of one account, spread over the stores (separate connections)."""
    clock = FrozenClock(T0)
    throttles = [th.Throttle(store, clock) for store in stores]
    key = th.account_key("local", "jane")

    async def one(i: int) -> bool:
        try:
            await throttles[i % len(throttles)].reserve(key, "jane", "local", config)
        except th.Denied:
            return False
        return True

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _stores(backend: Backend) -> list[Storage]:
    return [backend.storage, await backend.open(), await backend.open()]


async def test_concurrent_failures_from_several_connections_are_all_counted(backend: Backend) -> None:
    stores = await _stores(backend)
    granted = await _reserve_all(stores, UNLIMITED, 30)
    assert all(granted)
    record = await backend.storage.login_throttles.get(th.account_key("local", "jane"))
    assert record.failures == 30


async def test_concurrent_attempts_never_exceed_the_limit(backend: Backend) -> None:
    stores = await _stores(backend)
    granted = await _reserve_all(stores, LIMITED, 25)
    assert granted.count(True) == 4
    record = await backend.storage.login_throttles.get(th.account_key("local", "jane"))
    assert record.failures == 4


async def test_concurrent_address_failures_lock_exactly_once(backend: Backend) -> None:
    stores = await _stores(backend)
    clock = FrozenClock(T0)
    config = replace(LIMITED, client_ip=ThrottleLimit(10, timedelta(minutes=5)))
    throttles = [th.Throttle(store, clock) for store in stores]
    outcomes = await asyncio.gather(*(throttles[i % 3].count_ip("192.0.2.9", config) for i in range(24)))
    assert sum(o.locked_now for o in outcomes) == 1  # one lockout started, one audit event, one metric
    record = await backend.storage.login_throttles.get(th.ip_key("192.0.2.9"))
    assert record.failures == 10 and record.locked_until == T0 + timedelta(minutes=5)


async def test_garbage_collection_deletes_expired_records_only(storage: Storage) -> None:
    throttle = th.Throttle(storage, FrozenClock(T0))
    await throttle.reserve(th.account_key("local", "a"), "a", "local", LIMITED)
    await throttle.count_ip("192.0.2.1", LIMITED)
    assert len(await storage.login_throttles.list()) == 2
    assert (await storage.garbage_collect(T0 + LIMITED.window - timedelta(seconds=1))).login_throttles == 0
    assert (await storage.garbage_collect(T0 + LIMITED.window + timedelta(seconds=1))).login_throttles == 2
    assert await storage.login_throttles.list() == []
