"""Opening storage from its config: backend choice, the SQLite file, Dex's postgres keys and TLS modes."""

from __future__ import annotations

import os
import re
import ssl
import stat
from pathlib import Path
from typing import Any

import pytest
from pgutil import postgres_unavailable

from appliance.config.schema import StorageConfig
from appliance.errors import PorticoError
from appliance.store.open import open_storage
from appliance.store.postgres import (
    PostgresSettings,
    parse_postgres_config,
    ssl_context,
    to_dollar_params,
)

from .samples import client


@pytest.mark.parametrize("kind", ["mysql", "etcd", "kubernetes"])
async def test_known_but_unsupported_types_say_so(kind: str) -> None:
    with pytest.raises(PorticoError, match=f"'{kind}' is not supported yet"):
        await open_storage(StorageConfig(kind, {}))


async def test_unknown_type_is_an_error() -> None:
    with pytest.raises(PorticoError, match="'sqlite' is unknown"):
        await open_storage(StorageConfig("sqlite", {}))


async def test_sqlite_needs_a_file() -> None:
    with pytest.raises(PorticoError, match=r"storage\.config\.file"):
        await open_storage(StorageConfig("sqlite3", {}))


async def test_sqlite_file_is_relative_to_base_dir_and_private(tmp_path: Path) -> None:
    store = await open_storage(StorageConfig("sqlite3", {"file": "a/b/portico.db"}), base_dir=str(tmp_path))
    try:
        await store.clients.create(client(1))
    finally:
        await store.close()
    db = tmp_path / "a" / "b" / "portico.db"
    assert db.is_file()
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(db).st_mode) & 0o077 == 0
    # The data is in that file: a second open sees it.
    store = await open_storage(StorageConfig("sqlite3", {"file": str(db)}), base_dir="/nonexistent")
    try:
        assert await store.clients.get("client-1") == client(1)
        assert isinstance(store, object)
    finally:
        await store.close()


async def test_sqlite_in_a_folder_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(PorticoError, match="cannot create the storage folder"):
        await open_storage(StorageConfig("sqlite3", {"file": "file/sub/portico.db"}), base_dir=str(tmp_path))


async def test_memory_storages_are_separate() -> None:
    a = await open_storage(StorageConfig("memory"))
    b = await open_storage(StorageConfig("sqlite3", {"file": ":memory:"}))
    try:
        await a.clients.create(client(1))
        assert await b.clients.list() == []
    finally:
        await a.close()
        await b.close()


# ---------------------------------------------------------------- Dex's postgres keys


def test_postgres_defaults_follow_dex() -> None:
    s = parse_postgres_config({})
    assert (s.host, s.port, s.ssl_mode, s.max_open_conns) == ("localhost", 5432, "verify-full", 5)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("db.example.com", None, ("db.example.com", 5432)),
        ("db.example.com", 6543, ("db.example.com", 6543)),
        ("db.example.com:7000", 6543, ("db.example.com", 7000)),  # host:port wins, as in Dex
        ("[::1]:7001", None, ("::1", 7001)),
        ("[::1]", 7002, ("::1", 7002)),
        ("::1", None, ("::1", 5432)),
        ("/var/run/postgresql", 5433, ("/var/run/postgresql", 5433)),
    ],
)
def test_postgres_host_and_port(host: str, port: int | None, expected: tuple[str, int]) -> None:
    cfg: dict[str, Any] = {"host": host}
    if port is not None:
        cfg["port"] = port
    s = parse_postgres_config(cfg)
    assert (s.host, s.port) == expected


def test_postgres_keys_are_case_insensitive_and_numbers_may_be_strings() -> None:
    s = parse_postgres_config(
        {
            "Database": "dex",
            "USER": "u",
            "password": "pw",
            "Port": "6000",
            "connectionTimeout": "7",
            "maxOpenConns": 12,
            "maxIdleConns": 20,
            "connMaxLifetime": 90,
            "SSL": {"Mode": "require"},
        }
    )
    assert (s.database, s.user, s.port, s.connection_timeout) == ("dex", "u", 6000, 7.0)
    assert (s.max_open_conns, s.max_idle_conns, s.conn_max_lifetime) == (12, 12, 90.0)
    assert s.ssl_mode == "require"
    assert "pw" not in repr(s)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"ssl": {"mode": "prefer"}}, "ssl.mode 'prefer'"),
        ({"port": "five"}, "port"),
        ({"maxOpenConns": -1}, "maxopenconns"),
        ({"ssl": "disable"}, "ssl must be a mapping"),
    ],
)
def test_postgres_bad_values_are_named(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(PorticoError, match=message):
        parse_postgres_config(cfg)


def test_ssl_modes_map_to_libpq_semantics() -> None:
    assert ssl_context(PostgresSettings(ssl_mode="disable")) is False
    require = ssl_context(PostgresSettings(ssl_mode="require"))
    assert isinstance(require, ssl.SSLContext)
    assert (require.verify_mode, require.check_hostname) == (ssl.CERT_NONE, False)
    verify_ca = ssl_context(PostgresSettings(ssl_mode="verify-ca"))
    assert isinstance(verify_ca, ssl.SSLContext)
    assert (verify_ca.verify_mode, verify_ca.check_hostname) == (ssl.CERT_REQUIRED, False)
    full = ssl_context(PostgresSettings(ssl_mode="verify-full"))
    assert isinstance(full, ssl.SSLContext)
    assert (full.verify_mode, full.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_ssl_with_a_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PorticoError, match="cannot load the certificates"):
        ssl_context(PostgresSettings(ssl_mode="verify-full", ssl_ca_file=str(tmp_path / "nope.pem")))


def test_placeholders_become_numbered() -> None:
    assert (
        to_dollar_params("UPDATE t SET a = ?, b = ? WHERE id = ?")
        == "UPDATE t SET a = $1, b = $2 WHERE id = $3"
    )
    assert to_dollar_params("SELECT 1") == "SELECT 1"


@pytest.mark.postgres
async def test_postgres_over_the_unix_socket(pg_config: dict[str, Any]) -> None:
    if not Path("/var/run/postgresql/.s.PGSQL.5432").exists():  # noqa: ASYNC240 - a test's one stat
        postgres_unavailable("no PostgreSQL socket in /var/run/postgresql")
    # No ssl key: Dex's default verify-full, which does not apply to a local socket.
    cfg = {"host": "/var/run/postgresql", "user": "postgres", "database": pg_config["database"]}
    store = await open_storage(StorageConfig("postgres", cfg))
    try:
        await store.ping()
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_connection_errors_are_clear_and_keep_the_password_out(
    pg_config: dict[str, Any],
) -> None:
    closed_port = {**pg_config, "port": 1, "password": "hunter2-secret", "connectionTimeout": 3}
    with pytest.raises(PorticoError, match=re.escape("cannot connect to PostgreSQL at 127.0.0.1:1/")) as err:
        await open_storage(StorageConfig("postgres", closed_port))
    assert "hunter2-secret" not in str(err.value)
    # The test server speaks no TLS: Dex's default mode refuses to go on without it.
    tls = {**pg_config, "ssl": {}}
    with pytest.raises(PorticoError, match="cannot connect to PostgreSQL"):
        await open_storage(StorageConfig("postgres", tls))


async def test_sqlite_file_key_matches_case_insensitively(tmp_path: Path) -> None:
    store = await open_storage(StorageConfig("sqlite3", {"File": "x.db"}), base_dir=str(tmp_path))
    await store.close()
    assert (tmp_path / "x.db").is_file()
