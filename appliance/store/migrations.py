"""The versioned database schema: an ordered list of migrations shared by the SQL backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = [
    "EXPIRING_TABLES",
    "KIND_TABLES",
    "MIGRATIONS",
    "Migration",
    "apply_pending",
    "statements_for",
]

# The table of each kind; also the list the tests truncate. `signing_keys`, not `keys`: KEYS is
# reserved in MySQL, and a Dex database has a `keys` table of its own.
KIND_TABLES = (
    "clients",
    "passwords",
    "connectors",
    "auth_requests",
    "auth_codes",
    "refresh_tokens",
    "offline_sessions",
    "device_requests",
    "device_tokens",
    "signing_keys",
    "browser_sessions",
    "consents",
    "revoked_tokens",
    "audit_events",
    "user_mfa",
    "login_throttles",
)
EXPIRING_TABLES = (
    "auth_requests",
    "auth_codes",
    "device_requests",
    "device_tokens",
    "refresh_tokens",
    "browser_sessions",
    "revoked_tokens",
    "login_throttles",
)


# Runs one statement with `?` placeholders and returns its rows.
Run: TypeAlias = Callable[..., Awaitable[Sequence[Sequence[Any]]]]


@dataclass(frozen=True)
class Migration:
    """One schema step. `common` runs on every dialect, then the dialect's own statements, then
    `rewrite`: Python that brings the rows written before the step to its shape (in the same
    transaction)."""

    version: int
    name: str
    common: tuple[str, ...] = ()
    sqlite: tuple[str, ...] = ()
    postgres: tuple[str, ...] = ()
    rewrite: Callable[[Run], Awaitable[None]] | None = None


async def _index_refresh_tokens(run: Run) -> None:
    """Migration 6's rows: each refresh token's new columns from its data, and the offline sessions
    without the list of tokens they used to carry."""
    # Imported here: the store imports this module, and the columns must be the ones it writes.
    from appliance.store import codec
    from appliance.store.models import OfflineSession, RefreshToken
    from appliance.store.sql import refresh_token_columns

    for token_id, data in await run("SELECT id, data FROM refresh_tokens"):
        columns = refresh_token_columns(codec.loads(RefreshToken, data))
        await run(
            "UPDATE refresh_tokens SET offline_session = ?, client_id = ?, last_used = ? WHERE id = ?",
            *columns, token_id,
        )
    for key, data in await run("SELECT id, data FROM offline_sessions"):
        await run("UPDATE offline_sessions SET data = ? WHERE id = ?",
                  codec.dumps(codec.loads(OfflineSession, data)), key)


def _kind_table(table: str) -> str:
    # data: the codec's JSON as TEXT (not JSONB: JSONB rejects \u0000 and reorders keys);
    # expiry: epoch microseconds, so that garbage collection is one indexed range delete;
    # version: the compare-and-swap counter.
    return (
        f"CREATE TABLE {table} (id TEXT PRIMARY KEY, data TEXT NOT NULL, expiry BIGINT, "
        "version BIGINT NOT NULL DEFAULT 1)"
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        name="one table per kind",
        common=(
            # Version 1's tables as they were: later kinds come with their own migration.
            *(_kind_table(t) for t in KIND_TABLES[:10]),
            *(f"CREATE INDEX {t}_expiry ON {t} (expiry)" for t in EXPIRING_TABLES[:4]),
        ),
    ),
    Migration(
        version=2,
        name="browser sessions, consents, revocations; refresh token expiry",
        common=(
            *(_kind_table(t) for t in ("browser_sessions", "consents", "revoked_tokens")),
            *(f"CREATE INDEX {t}_expiry ON {t} (expiry)"
              for t in ("refresh_tokens", "browser_sessions", "revoked_tokens")),
        ),
    ),
    Migration(
        version=3,
        name="admin audit log",
        # id sorts by time (see appliance.admin.audit), so the primary key serves the tail query.
        common=(_kind_table("audit_events"),),
    ),
    Migration(
        version=4,
        name="second factors (TOTP) per user and connector",
        common=(_kind_table("user_mfa"),),
    ),
    Migration(
        version=5,
        name="login throttles (brute-force protection)",
        common=(
            _kind_table("login_throttles"),
            "CREATE INDEX login_throttles_expiry ON login_throttles (expiry)",
        ),
    ),
    Migration(
        version=6,
        name="refresh tokens indexed by offline session, client and last use",
        # A user's tokens for one client were a list on the offline session, read and rewritten whole on
        # every code exchange and refresh; they are found through this index instead.
        common=(
            "ALTER TABLE refresh_tokens ADD COLUMN offline_session TEXT",
            "ALTER TABLE refresh_tokens ADD COLUMN client_id TEXT",
            "ALTER TABLE refresh_tokens ADD COLUMN last_used BIGINT",
            "CREATE INDEX refresh_tokens_offline_session "
            "ON refresh_tokens (offline_session, client_id, last_used)",
        ),
        rewrite=_index_refresh_tokens,
    ),
)


def statements_for(migration: Migration, dialect: str) -> tuple[str, ...]:
    if dialect == "sqlite":
        return migration.common + migration.sqlite
    if dialect == "postgres":
        return migration.common + migration.postgres
    raise ValueError(f"unknown SQL dialect {dialect!r}")


# The bookkeeping table; applied_at comes from the database's clock, it is only for operators.
CREATE_SCHEMA_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
)


async def apply_pending(
    run: Run,
    dialect: str,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> list[int]:
    """Apply the migrations not yet recorded; returns the versions applied now.

    The caller holds the backend's lock and transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
    advisory lock), so two processes starting at once apply each migration exactly once.
    `run(sql, *args)` executes one statement with `?` placeholders.
    """
    await run(CREATE_SCHEMA_MIGRATIONS)
    applied = {int(row[0]) for row in await run("SELECT version FROM schema_migrations")}
    done: list[int] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        for statement in statements_for(migration, dialect):
            await run(statement)
        if migration.rewrite is not None:
            await migration.rewrite(run)
        await run(
            "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", migration.version, migration.name
        )
        done.append(migration.version)
    return done
