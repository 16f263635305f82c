"""Conformance: Storage.run, several statements in one trip (and, for writes, one transaction)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiosqlite
import pytest

from appliance.errors import AlreadyExists, NotFound
from appliance.store import models as m
from appliance.store.base import Steps, Storage, Versioned
from appliance.store.sql import SQLStorage
from appliance.store.sqlite import SQLiteDatabase
from appliance.store.steps import Statement

from .conftest import Backend
from .samples import T0, client, device_token

R = TypeVar("R")
REPO_ROOT = Path(__file__).resolve().parents[2]
CONCURRENT = 20


def recorded(steps: Steps[R], into: list[Statement]) -> Steps[R]:
    """`steps`, with every statement it yields noted in `into`."""
    try:
        statement = next(steps)
        while True:
            into.append(statement)
            statement = steps.send((yield statement))
    except StopIteration as done:
        result: R = done.value
        return result


def _named(name: str) -> Callable[[m.Client], m.Client]:
    return lambda c: dataclasses.replace(c, name=name)


def _bump(token: m.DeviceToken) -> m.DeviceToken:
    return dataclasses.replace(token, poll_interval=token.poll_interval + 1)


async def test_a_read_run_answers_several_reads_in_one_trip(storage: Storage) -> None:
    await storage.clients.create(client(1))
    revoked_id = "grant-1.jti"
    await storage.revoked_tokens.create(m.RevokedToken(revoked_id, T0))

    def reads() -> Steps[tuple[Versioned[m.Client] | None, Versioned[m.Client] | None, set[str], set[str]]]:
        found = yield from storage.clients.steps.find("client-1")
        missing = yield from storage.clients.steps.find("client-9")
        present = yield from storage.revoked_tokens.steps.present([revoked_id, "nope", revoked_id])
        none = yield from storage.revoked_tokens.steps.present([])
        return found, missing, present, none

    statements: list[Statement] = []
    found, missing, present, none = await storage.run(recorded(reads(), statements))
    assert found == Versioned(client(1), 1) and missing is None
    assert present == {revoked_id} and none == set()
    assert len(statements) == 3  # no statement for an empty `present`


async def test_a_write_run_commits_everything_or_nothing(backend: Backend) -> None:
    first, second = backend.storage, await backend.open()
    await first.clients.create(client(1))

    def writes(fail: bool) -> Steps[None]:
        yield from first.clients.steps.create(client(2))
        yield from first.clients.steps.update("client-1", _named("changed"))
        if fail:
            raise RuntimeError("the caller changes its mind")

    with pytest.raises(RuntimeError):
        await first.run(writes(fail=True), write=True)
    for store in (first, second):
        assert [c.id for c in await store.clients.list()] == ["client-1"]
        assert (await store.clients.get("client-1")).name == client(1).name
    await first.run(writes(fail=False), write=True)
    for store in (first, second):
        assert [c.id for c in await store.clients.list()] == ["client-1", "client-2"]
        assert (await store.clients.get("client-1")).name == "changed"


async def test_a_failed_statement_rolls_back_and_the_connection_goes_on(backend: Backend) -> None:
    first, second = backend.storage, await backend.open()

    def broken() -> Steps[None]:
        yield from first.clients.steps.create(client(1))
        yield "SELECT * FROM no_such_table", ()

    with pytest.raises(Exception) as caught:
        await first.run(broken(), write=True)
    assert not isinstance(caught.value, (NotFound, AlreadyExists))
    assert await first.clients.list() == []
    # Not left inside a transaction: a plain write afterwards is committed and seen elsewhere at once.
    await first.clients.create(client(2))
    assert [c.id for c in await second.clients.list()] == ["client-2"]


async def test_typed_errors_inside_a_run_can_be_caught_and_it_commits(storage: Storage) -> None:
    await storage.clients.create(client(1))

    def tolerant() -> Steps[list[str]]:
        seen = []
        for step in (storage.clients.steps.create(client(1)), storage.clients.steps.delete("ghost"),
                     storage.clients.steps.update("ghost", _named("x"))):
            try:
                yield from step
            except (AlreadyExists, NotFound) as exc:
                seen.append(type(exc).__name__)
        yield from storage.clients.steps.create(client(2))
        return seen

    assert await storage.run(tolerant(), write=True) == ["AlreadyExists", "NotFound", "NotFound"]
    assert [c.id for c in await storage.clients.list()] == ["client-1", "client-2"]


async def test_update_with_the_known_version_writes_without_reading(storage: Storage) -> None:
    await storage.clients.create(client(1))
    known = await storage.run(storage.clients.steps.find("client-1"))
    assert known is not None
    statements: list[Statement] = []
    new = await storage.run(recorded(storage.clients.steps.update("client-1", _named("a"), known=known),
                                     statements), write=True)
    assert new.name == "a" and len(statements) == 1 and statements[0][0].startswith("UPDATE")

    # `known` is stale now: the write finds another version, reads the current object, applies again.
    statements.clear()
    seen: list[str] = []

    def rename(c: m.Client) -> m.Client:
        seen.append(c.name)
        return dataclasses.replace(c, name=c.name + "b")

    new = await storage.run(recorded(storage.clients.steps.update("client-1", rename, known=known),
                                     statements), write=True)
    assert seen == [client(1).name, "a"] and new.name == "ab"
    assert [sql.split()[0] for sql, _ in statements] == ["UPDATE", "SELECT", "UPDATE"]
    assert (await storage.clients.get("client-1")).name == "ab"


async def test_concurrent_write_runs_from_stale_versions_lose_nothing(backend: Backend) -> None:
    first, second = backend.storage, await backend.open()
    start = dataclasses.replace(device_token(1), poll_interval=0)
    await first.device_tokens.create(start)
    key = start.device_code

    async def bump(store: Storage) -> int:
        known = await store.run(store.device_tokens.steps.find(key))
        new = await store.run(store.device_tokens.steps.update(key, _bump, known=known), write=True)
        return new.poll_interval

    results = await asyncio.gather(*(bump(first if i % 2 else second) for i in range(CONCURRENT)))
    assert sorted(results) == list(range(1, CONCURRENT + 1))
    assert (await second.device_tokens.get(key)).poll_interval == CONCURRENT


_WORKER = """
import asyncio, dataclasses, json, sys
from appliance.config.schema import StorageConfig
from appliance.store.open import open_storage

def bump(t):
    return dataclasses.replace(t, poll_interval=t.poll_interval + 1)

async def main():
    store = await open_storage(StorageConfig(**json.loads(sys.argv[1])), base_dir=sys.argv[2])
    try:
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(int(sys.argv[3])):
            known = await store.run(store.device_tokens.steps.find("dev-1"))
            await store.run(store.device_tokens.steps.update("dev-1", bump, known=known), write=True)
    finally:
        await store.close()

asyncio.run(main())
"""
PER_PROCESS = 40


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_write_runs_from_separate_processes_are_never_lost(backend: Backend) -> None:
    await backend.storage.device_tokens.create(dataclasses.replace(device_token(1), poll_interval=0))
    cfg = json.dumps({"type": backend.config.type, "config": backend.config.config})
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WORKER, cfg, backend.base_dir, str(PER_PROCESS),
            env={**os.environ, "PYTHONPATH": path},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line == b"ready\n", (line, await proc.stderr.read() if proc.stderr else b"")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    for _ in range(PER_PROCESS // 2):
        await backend.storage.device_tokens.update("dev-1", _bump)
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
    expected = 2 * PER_PROCESS + PER_PROCESS // 2
    assert (await backend.storage.device_tokens.get("dev-1")).poll_interval == expected


@pytest.mark.parametrize("backend", ["memory", "sqlite"], indirect=True)
async def test_sqlite_runs_the_whole_work_on_its_worker_thread(backend: Backend) -> None:
    # SQLiteDatabase.run relies on aiosqlite's private Connection._execute to run a function on the
    # connection's thread; if aiosqlite drops or changes it, this fails first.
    assert callable(getattr(aiosqlite.Connection, "_execute", None)), "aiosqlite lost Connection._execute"
    store = backend.storage
    assert isinstance(store, SQLStorage) and isinstance(store.db, SQLiteDatabase)
    conn: aiosqlite.Connection = store.db._conn
    await conn.create_function("thread_id", 0, threading.get_ident)
    worker = (await store.db.fetch("SELECT thread_id()"))[0][0]
    assert worker != threading.get_ident()
    threads: list[int] = []

    def work() -> Steps[None]:
        for _ in range(3):
            threads.append(threading.get_ident())
            yield from store.clients.steps.find("client-1")
        yield from store.clients.steps.create(client(1))

    for write in (False, True):
        threads.clear()
        await store.run(work(), write=write)
        assert threads == [worker] * 3
        await store.clients.delete("client-1")
