"""The PostgreSQL backend (asyncpg pool), configured with Dex's `storage.config` keys for postgres."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from appliance.errors import PorticoError
from appliance.store.migrations import apply_pending
from appliance.store.sql import SQLStorage
from appliance.store.steps import Rows, Steps, drive_async

__all__ = ["PostgresDatabase", "PostgresSettings", "open_postgres", "parse_postgres_config", "ssl_context"]

SSL_MODES = ("disable", "require", "verify-ca", "verify-full")
# The advisory lock that serialises migrations across processes: "portico" in ASCII.
_MIGRATION_LOCK = 0x706F727469636F
# Dex's defaults for database/sql's pool.
_DEFAULT_MAX_OPEN = 5
_DEFAULT_IDLE_LIFETIME = 300.0

R = TypeVar("R")


@dataclass(frozen=True)
class PostgresSettings:
    """Dex's postgres keys, parsed and defaulted."""

    host: str = "localhost"  # a name, an address, or a Unix socket folder (starts with "/")
    port: int = 5432
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""
    connection_timeout: float = 0.0  # seconds; 0: asyncpg's default (60 s)
    # database/sql's pool knobs mapped onto asyncpg's: maxOpenConns is the pool's max_size;
    # maxIdleConns its min_size (connections kept open while idle; asyncpg opens them eagerly,
    # hence a default of 1 rather than Go's lazily-filled 5); connMaxLifetime becomes the idle
    # lifetime (asyncpg has no absolute lifetime).
    max_open_conns: int = _DEFAULT_MAX_OPEN
    max_idle_conns: int = 1
    conn_max_lifetime: float = 0.0  # seconds; 0: idle connections close after 300 s
    ssl_mode: str = "verify-full"
    ssl_ca_file: str = ""
    ssl_key_file: str = ""
    ssl_cert_file: str = ""

    def where(self) -> str:
        """host:port/database, for messages (no user, no password)."""
        host = self.host if self.host.startswith("/") else f"{self.host}:{self.port}"
        return f"{host}/{self.database or self.user or '?'}"


class PostgresDatabase:
    dialect = "postgres"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._converted: dict[str, str] = {}

    def _pg(self, sql: str) -> str:
        pg_sql = self._converted.get(sql)
        if pg_sql is None:
            pg_sql = self._converted[sql] = to_dollar_params(sql)
        return pg_sql

    async def fetch(self, sql: str, *args: Any) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await self._pool.fetch(self._pg(sql), *args)
        return rows

    async def run(self, steps: Steps[R], *, write: bool) -> R:
        # One connection throughout: a network round trip per statement, but no pool traffic between
        # them, and the transaction's row locks (FOR UPDATE, UPDATE) held until its commit.
        async with self._pool.acquire() as conn:

            async def execute(sql: str, args: tuple[Any, ...]) -> Rows:
                rows: Rows = await conn.fetch(self._pg(sql), *args)
                return rows

            if not write:
                return await drive_async(execute, steps)
            async with conn.transaction():
                return await drive_async(execute, steps)

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def close(self) -> None:
        await self._pool.close()


def to_dollar_params(sql: str) -> str:
    """`?` placeholders to PostgreSQL's `$1, $2, ...` (the store's SQL has no `?` inside literals)."""
    parts = sql.split("?")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(f"${i}{part}")
    return "".join(out)


def parse_postgres_config(cfg: Mapping[str, Any]) -> PostgresSettings:
    """Dex's postgres `storage.config` (keys matched case-insensitively, as Go's JSON decoding does)."""
    keys = {str(k).lower(): v for k, v in cfg.items()}
    ssl_cfg = keys.get("ssl") or {}
    if not isinstance(ssl_cfg, Mapping):
        raise PorticoError("storage.config.ssl must be a mapping")
    ssl_keys = {str(k).lower(): v for k, v in ssl_cfg.items()}
    mode = str(ssl_keys.get("mode") or "verify-full")  # Dex assumes the strictest mode
    if mode not in SSL_MODES:
        raise PorticoError(f"storage.config.ssl.mode {mode!r} is not one of {', '.join(SSL_MODES)}")

    host = str(keys.get("host") or "localhost")
    port = _int(keys, "port", 5432)
    host, port = _split_host_port(host, port)
    max_open = _int(keys, "maxopenconns", 0) or _DEFAULT_MAX_OPEN
    return PostgresSettings(
        host=host,
        port=port,
        user=str(keys.get("user") or ""),
        password=str(keys.get("password") or ""),
        database=str(keys.get("database") or ""),
        connection_timeout=float(_int(keys, "connectiontimeout", 0)),
        max_open_conns=max_open,
        max_idle_conns=min(_int(keys, "maxidleconns", 1), max_open),
        conn_max_lifetime=float(_int(keys, "connmaxlifetime", 0)),
        ssl_mode=mode,
        ssl_ca_file=str(ssl_keys.get("cafile") or ""),
        ssl_key_file=str(ssl_keys.get("keyfile") or ""),
        ssl_cert_file=str(ssl_keys.get("certfile") or ""),
    )


def _int(keys: Mapping[str, Any], key: str, default: int) -> int:
    value = keys.get(key)
    if value is None or value == "":
        return default
    try:
        number = int(value)  # after $VAR expansion a number may arrive as a string
    except (TypeError, ValueError):
        raise PorticoError(f"storage.config.{key}: {value!r} is not a whole number") from None
    if number < 0:
        raise PorticoError(f"storage.config.{key}: {number} must not be negative")
    return number


def _split_host_port(host: str, port: int) -> tuple[str, int]:
    # As Dex: a "host:port" in `host` wins over `port` (older configs put the port there).
    if host.startswith("/"):
        return host, port
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if sep and rest.startswith(":") and rest[1:].isdigit():
            return name, int(rest[1:])
        return name if sep else host, port
    if host.count(":") == 1:
        name, _, maybe_port = host.partition(":")
        if maybe_port.isdigit():
            return name, int(maybe_port)
    return host, port


def ssl_context(settings: PostgresSettings) -> ssl.SSLContext | bool:
    """asyncpg's `ssl` argument for libpq's sslmode (reads certificate files: call off the loop)."""
    if settings.ssl_mode == "disable":
        return False
    try:
        ctx = ssl.create_default_context(cafile=settings.ssl_ca_file or None)
        if settings.ssl_mode == "require" and not settings.ssl_ca_file:
            # libpq: "require" encrypts without verifying, unless a root CA is given.
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif settings.ssl_mode in ("require", "verify-ca"):
            ctx.check_hostname = False
        if settings.ssl_cert_file:
            ctx.load_cert_chain(settings.ssl_cert_file, settings.ssl_key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise PorticoError(f"storage.config.ssl: cannot load the certificates: {exc}") from exc
    return ctx


async def open_postgres(cfg: Mapping[str, Any]) -> SQLStorage:
    """Connect a pool with Dex's postgres keys, apply pending migrations, return the store."""
    settings = parse_postgres_config(cfg)
    ssl_arg = await asyncio.to_thread(ssl_context, settings)
    connect_args: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user or None,
        "password": settings.password or None,
        "database": settings.database or None,
        "ssl": ssl_arg,
        "min_size": settings.max_idle_conns,
        "max_size": settings.max_open_conns,
        "max_inactive_connection_lifetime": settings.conn_max_lifetime or _DEFAULT_IDLE_LIFETIME,
        "server_settings": {"application_name": "portico"},
    }
    if settings.connection_timeout:
        connect_args["timeout"] = settings.connection_timeout
    try:
        pool = await asyncpg.create_pool(**connect_args)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ssl.SSLError) as exc:
        raise PorticoError(
            f"cannot connect to PostgreSQL at {settings.where()}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        await _migrate(pool)
    except BaseException:
        await pool.close()
        raise
    return SQLStorage(PostgresDatabase(pool))


async def _migrate(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:

        async def run(sql: str, *args: Any) -> Sequence[Sequence[Any]]:
            rows: Sequence[Sequence[Any]] = await conn.fetch(to_dollar_params(sql), *args)
            return rows

        async with conn.transaction():
            # Held until commit: a second process starting at once waits, then finds nothing to do.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await apply_pending(run, "postgres")
