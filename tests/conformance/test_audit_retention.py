"""Conformance: the audit log's retention (admin.auditRetentionDays), on every backend, and the GC loop
that enforces it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import pytest

from appliance.admin.audit import audit_id
from appliance.clock import FrozenClock
from appliance.store import sql
from appliance.store.base import Storage
from appliance.store.models import AuditEvent
from appliance.store.open import run_gc_forever

from .conftest import Backend
from .samples import T0


def _event(age: timedelta, n: int = 0) -> AuditEvent:
    when = T0 - age
    return AuditEvent(id=audit_id(when), time=when, uid=1000 + n, pid=4242, action="clients.create",
                      target=f"c{n}", result="ok")


async def test_prune_deletes_exactly_the_events_older_than_the_cutoff(storage: Storage) -> None:
    old = [_event(timedelta(days=91, minutes=n), n) for n in range(3)]
    edge = _event(timedelta(days=90))  # exactly at the cutoff: kept
    young = [_event(timedelta(days=89), 7), _event(timedelta(seconds=1), 8)]
    for event in [*old, edge, *young]:
        await storage.audit.append(event)
    assert await storage.audit.prune(T0 - timedelta(days=90)) == 3
    kept = await storage.audit.tail("", 100)
    assert [e.id for e in kept] == sorted(e.id for e in [edge, *young])
    assert kept[-1] == young[-1]  # what stays is untouched
    assert await storage.audit.prune(T0 - timedelta(days=90)) == 0


async def test_prune_of_a_long_history_runs_in_batches(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "_PRUNE_BATCH", 4)
    for n in range(11):
        await storage.audit.append(_event(timedelta(days=200, seconds=n), n))
    await storage.audit.append(_event(timedelta(days=1), 99))
    assert await storage.audit.prune(T0 - timedelta(days=90)) == 11
    assert [e.target for e in await storage.audit.tail("", 100)] == ["c99"]


async def test_the_gc_loop_enforces_the_retention_it_reads_each_round(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    storage = backend.storage
    for days in (400, 100, 40, 10):
        await storage.audit.append(_event(timedelta(days=days), days))
    retention: list[timedelta | None] = [None]  # as admin.auditRetentionDays, changed by a reload
    log = logging.getLogger("test.gc.audit")

    async def targets() -> set[str]:
        return {e.target for e in await storage.audit.tail("", 100)}

    with caplog.at_level(logging.INFO, logger="test.gc.audit"):
        task = asyncio.create_task(run_gc_forever(storage, FrozenClock(T0), 0.01, log,
                                                  audit_retention=lambda: retention[0]))
        try:
            await asyncio.sleep(0.1)
            assert await targets() == {"c400", "c100", "c40", "c10"}  # 0 days: kept forever
            retention[0] = timedelta(days=90)
            for _ in range(300):
                if await targets() == {"c40", "c10"}:
                    break
                await asyncio.sleep(0.01)
            assert await targets() == {"c40", "c10"}
            retention[0] = timedelta(days=30)
            for _ in range(300):
                if await targets() == {"c10"}:
                    break
                await asyncio.sleep(0.01)
            assert await targets() == {"c10"}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    said = [r.getMessage() for r in caplog.records]
    assert "audit log: deleted 2 events older than 90 days" in said
    assert "audit log: deleted 1 events older than 30 days" in said
