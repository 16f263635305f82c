"""Storage fixtures: every conformance test runs once per backend (memory, SQLite file, PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pgutil import PostgresUnavailable, create_test_database, drop_test_database, postgres_unavailable

from appliance.config.schema import StorageConfig
from appliance.store.base import Storage
from appliance.store.migrations import KIND_TABLES
from appliance.store.open import open_storage
from appliance.store.sql import SQLStorage

T = TypeVar("T")


def run_in_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code that may itself be inside a running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, make()).result()


@pytest.fixture(scope="session")
def pg_config() -> Iterator[dict[str, Any]]:
    """A fresh database for this test session (per xdist worker), dropped at the end."""
    try:
        cfg = run_in_own_loop(create_test_database)
    except PostgresUnavailable as exc:
        postgres_unavailable(str(exc))
    yield cfg
    run_in_own_loop(lambda: drop_test_database(cfg["database"]))


async def _empty_tables(store: Storage) -> None:
    # DELETE, not TRUNCATE: on a few rows it is far cheaper (no new files, no exclusive lock).
    assert isinstance(store, SQLStorage)
    for table in KIND_TABLES:
        await store.db.fetch(f"DELETE FROM {table}")


@dataclass
class Backend:
    """The storage under test, and a way to open more instances on the same data.

    `shared_data` is False for memory: its data lives in one connection, so `open()` hands back
    the same instance (concurrency there is between tasks, not connections).
    """

    name: str
    config: StorageConfig
    base_dir: str
    storage: Storage
    shared_data: bool
    _opened: list[Storage] = field(default_factory=list)

    async def open(self) -> Storage:
        if not self.shared_data:
            return self.storage
        other = await open_storage(self.config, base_dir=self.base_dir)
        self._opened.append(other)
        return other

    async def close_all(self) -> None:
        for store in [*self._opened, self.storage]:
            await store.close()


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    name: str = request.param
    if name == "memory":
        cfg = StorageConfig(type="memory")
    elif name == "sqlite":
        # A folder that does not exist yet: open_storage creates it.
        cfg = StorageConfig(type="sqlite3", config={"file": "state/portico.db"})
    else:
        pg: dict[str, Any] = request.getfixturevalue("pg_config")
        cfg = StorageConfig(type="postgres", config=pg)
    store = await open_storage(cfg, base_dir=str(tmp_path))
    if name == "postgres":
        # One database per session; each test starts from empty tables.
        await _empty_tables(store)
    b = Backend(name, cfg, str(tmp_path), store, shared_data=name != "memory")
    yield b
    await b.close_all()


@pytest.fixture
def storage(backend: Backend) -> Storage:
    return backend.storage
