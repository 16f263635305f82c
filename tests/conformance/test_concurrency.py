"""Conformance: compare-and-swap under concurrency (tasks, connections, instances, processes)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import AlreadyExists, ConflictError
from appliance.store import models as m
from appliance.store import sql
from appliance.store.base import Storage

from .conftest import Backend
from .samples import T0, device_token, keys

REPO_ROOT = Path(__file__).resolve().parents[2]
CONCURRENT = 20


def _bump(token: m.DeviceToken) -> m.DeviceToken:
    return dataclasses.replace(token, poll_interval=token.poll_interval + 1)


async def test_concurrent_updates_are_never_lost(backend: Backend) -> None:
    # Two instances (two connections or pools on the same data, except for memory), ten tasks each.
    first, second = backend.storage, await backend.open()
    start = dataclasses.replace(device_token(1), poll_interval=0)
    await first.device_tokens.create(start)
    calls = 0

    def bump(token: m.DeviceToken) -> m.DeviceToken:
        nonlocal calls
        calls += 1
        return _bump(token)

    results = await asyncio.gather(
        *(
            (first if i % 2 else second).device_tokens.update(start.device_code, bump)
            for i in range(CONCURRENT)
        )
    )
    assert (await first.device_tokens.get(start.device_code)).poll_interval == CONCURRENT
    assert (await second.device_tokens.get(start.device_code)).poll_interval == CONCURRENT
    # Each update returned the value it wrote: together they are 1..20, each once.
    assert sorted(r.poll_interval for r in results) == list(range(1, CONCURRENT + 1))
    assert calls >= CONCURRENT


async def test_lost_races_beyond_the_bound_raise_conflict_and_lose_nothing(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a single attempt allowed, racing writers either win or get ConflictError; whatever the
    # split, the stored counter equals the number of winners (no write was silently dropped).
    monkeypatch.setattr(sql, "MAX_ATTEMPTS", 1)
    first, second = backend.storage, await backend.open()
    start = dataclasses.replace(device_token(1), poll_interval=0)
    await first.device_tokens.create(start)
    results = await asyncio.gather(
        *(
            (first if i % 2 else second).device_tokens.update(start.device_code, _bump)
            for i in range(CONCURRENT)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, m.DeviceToken)]
    lost = [r for r in results if isinstance(r, ConflictError)]
    assert len(won) + len(lost) == CONCURRENT
    assert won
    assert (await first.device_tokens.get(start.device_code)).poll_interval == len(won)


async def test_concurrent_creates_have_exactly_one_winner(backend: Backend) -> None:
    first, second = backend.storage, await backend.open()
    results = await asyncio.gather(
        *(
            (first if i % 2 else second).clients.create(m.Client(id="same", name=f"writer {i}"))
            for i in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, AlreadyExists) for r in results) == 9
    assert len(await first.clients.list()) == 1


class AlreadyRotated(Exception):
    pass


def _rotation(instance: str, now: Any) -> Any:
    """The updater a replica runs: rotate unless someone already did for this period."""

    def rotate(old: m.Keys) -> m.Keys:
        if old.next_rotation is not None and old.next_rotation > now:
            raise AlreadyRotated
        return dataclasses.replace(
            keys(),
            signing_key={"kid": f"{instance}@{now.isoformat()}"},
            next_rotation=now + timedelta(hours=6),
        )

    return rotate


async def _race(stores: list[Storage], now: Any) -> list[Any]:
    return await asyncio.gather(
        *(s.update_keys(_rotation(f"replica-{i}", now)) for i, s in enumerate(stores)),
        return_exceptions=True,
    )


async def test_key_rotation_race_has_exactly_one_winner(backend: Backend) -> None:
    stores = [backend.storage, await backend.open(), await backend.open()]
    # Round 1 races on creating the singleton; round 2 on updating it.
    for now in (T0, T0 + timedelta(hours=7)):
        results = await _race(stores, now)
        winners = [r for r in results if isinstance(r, m.Keys)]
        assert len(winners) == 1, results
        assert sum(isinstance(r, AlreadyRotated) for r in results) == len(stores) - 1
        for store in stores:
            assert await store.get_keys() == winners[0]
            assert (await store.get_keys()).next_rotation == now + timedelta(hours=6)


_WORKER = """
import asyncio, dataclasses, json, sys
from appliance.config.schema import StorageConfig
from appliance.store.open import open_storage

async def main():
    cfg = StorageConfig(**json.loads(sys.argv[1]))
    store = await open_storage(cfg, base_dir=sys.argv[2])
    try:
        print("ready", flush=True)
        sys.stdin.readline()  # all writers start together
        for _ in range(int(sys.argv[3])):
            await store.device_tokens.update(
                "dev-1", lambda t: dataclasses.replace(t, poll_interval=t.poll_interval + 1)
            )
    finally:
        await store.close()

asyncio.run(main())
"""
PER_PROCESS = 40


# An in-memory database lives in one connection and cannot be shared with another process.
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_updates_from_separate_processes_are_never_lost(backend: Backend) -> None:
    await backend.storage.device_tokens.create(dataclasses.replace(device_token(1), poll_interval=0))
    cfg = json.dumps({"type": backend.config.type, "config": backend.config.config})
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            cfg,
            backend.base_dir,
            str(PER_PROCESS),
            env={**os.environ, "PYTHONPATH": path},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
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
    # Meanwhile this process writes too.
    for _ in range(PER_PROCESS // 2):
        await backend.storage.device_tokens.update("dev-1", _bump)
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
    expected = 2 * PER_PROCESS + PER_PROCESS // 2
    assert (await backend.storage.device_tokens.get("dev-1")).poll_interval == expected
