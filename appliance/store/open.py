"""Opening the configured storage backend, and the garbage-collection loop that runs beside it."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from appliance.clock import Clock
from appliance.config.schema import StorageConfig
from appliance.errors import PorticoError
from appliance.store.base import Storage

__all__ = ["SUPPORTED_TYPES", "open_storage", "run_gc_forever"]

SUPPORTED_TYPES = ("memory", "sqlite3", "postgres")
_NOT_YET = ("mysql", "etcd", "kubernetes")


async def open_storage(cfg: StorageConfig, *, base_dir: str = ".") -> Storage:
    """Open the backend named by `cfg.type`, with its schema migrated. The caller closes it.

    sqlite3: `config.file`, relative to `base_dir`; a missing folder is created with mode 0700.
    postgres: Dex's keys (see appliance.store.postgres). memory: SQLite in memory, gone on close.
    """
    kind = cfg.type
    # Backends are imported on demand: a SQLite deployment never loads asyncpg.
    if kind == "memory":
        from appliance.store.sqlite import MEMORY, open_sqlite

        return await open_sqlite(MEMORY)
    if kind == "sqlite3":
        from appliance.store.sqlite import MEMORY, open_sqlite

        # Dex matches config keys case-insensitively.
        file = next((v for k, v in cfg.config.items() if str(k).lower() == "file"), None)
        if not isinstance(file, str) or not file:
            raise PorticoError("storage.config.file: the sqlite3 storage needs a file name")
        if file == MEMORY:
            return await open_sqlite(MEMORY)
        path = os.path.join(base_dir, file)
        await asyncio.to_thread(_make_private_dir, os.path.dirname(path))
        return await open_sqlite(path)
    if kind == "postgres":
        from appliance.store.postgres import open_postgres

        return await open_postgres(cfg.config)
    if kind in _NOT_YET:
        raise PorticoError(
            f"storage.type {kind!r} is not supported yet; use one of: {', '.join(SUPPORTED_TYPES)}"
        )
    raise PorticoError(f"storage.type {kind!r} is unknown; use one of: {', '.join(SUPPORTED_TYPES)}")


def _make_private_dir(path: str) -> None:
    if not path:
        return
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise PorticoError(f"cannot create the storage folder {path}: {exc.strerror}") from exc


async def run_gc_forever(
    storage: Storage, clock: Clock, interval: float, log: logging.Logger | logging.LoggerAdapter[Any],
    audit_retention: Callable[[], timedelta | None] | None = None,
) -> None:
    """Every `interval` seconds, delete expired state, and audit events older than `audit_retention()`
    (read each round, so a reload changes it; None keeps them). Never returns; cancel the task to stop it.

    A failed round is logged and the next one runs on schedule: a database outage must not kill
    the loop for the life of the process.
    """
    while True:
        await asyncio.sleep(interval)
        now = clock.now()
        retention = audit_retention() if audit_retention is not None else None
        if retention is not None:
            try:
                pruned = await storage.audit.prune(now - retention)
            except Exception as exc:
                log.warning("audit log retention failed: %s: %s", type(exc).__name__, exc)
            else:
                if pruned:
                    log.info("audit log: deleted %d events older than %d days", pruned, retention.days)
        try:
            result = await storage.garbage_collect(now)
        except Exception as exc:
            log.warning("garbage collection failed: %s: %s", type(exc).__name__, exc)
            continue
        log.debug(
            "garbage collection: deleted %d auth requests, %d auth codes, %d device requests, "
            "%d device tokens",
            result.auth_requests,
            result.auth_codes,
            result.device_requests,
            result.device_tokens,
        )
