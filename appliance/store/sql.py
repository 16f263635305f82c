"""The generic SQL implementation of the Storage protocol, shared by the SQLite and PostgreSQL backends."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import random
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from appliance.errors import AlreadyExists, ConflictError, NotFound
from appliance.store import codec
from appliance.store.base import (
    AuditLog,
    Collection,
    CollectionSteps,
    GCResult,
    RefreshTokenCollection,
    RefreshTokenSteps,
)
from appliance.store.migrations import EXPIRING_TABLES
from appliance.store.models import (
    AuditEvent,
    AuthCode,
    AuthRequest,
    BrowserSession,
    Client,
    Connector,
    Consent,
    DeviceRequest,
    DeviceToken,
    Keys,
    LoginThrottle,
    OfflineSession,
    Password,
    RefreshToken,
    RevokedToken,
    UserMFA,
    consent_key,
    mfa_key,
    offline_session_key,
)
from appliance.store.steps import Steps, Versioned

__all__ = ["MAX_ATTEMPTS", "Database", "SQLAuditLog", "SQLCollection", "SQLStorage", "epoch_micros"]

T = TypeVar("T")
R = TypeVar("R")

# How often one update re-reads after losing a compare-and-swap. Each round has a winner, so this
# only runs out when more than this many writers hammer one row at once.
MAX_ATTEMPTS = 100

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_KEYS_ID = "keys"
_PRUNE_BATCH = 1000  # audit events deleted per statement


class Database(Protocol):
    """The little a backend provides: run one statement (with `?` placeholders) and return its rows.

    Every write the store issues carries RETURNING, so the row count is the length of the result
    and one round trip (one thread hop for SQLite) does it.
    """

    dialect: str

    async def fetch(self, sql: str, *args: Any) -> Sequence[Sequence[Any]]: ...

    async def run(self, steps: Steps[R], *, write: bool) -> R:
        """Run every statement `steps` yields on one connection, in one transaction taking the write lock
        first when `write` (see Storage.run)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def epoch_micros(when: datetime) -> int:
    """The `expiry` column's value: microseconds since the epoch (exact, and ordered as numbers)."""
    if when.tzinfo is None:
        raise ValueError("the store keeps timezone-aware datetimes only")
    return (when - _EPOCH) // _ONE_MICROSECOND


def audit_id(when: datetime) -> str:
    """An audit event's id: sorts by time (hex microseconds, fixed width), then a random tail for events
    in the same µs; pruning by age is one range on it."""
    return f"{epoch_micros(when):014x}{secrets.token_hex(4)}"


async def _backoff(attempt: int) -> None:
    # Jitter (not a secret) so that writers in several processes do not collide in lockstep.
    await asyncio.sleep(random.random() * min(0.0005 * (2**attempt), 0.02))  # noqa: S311


class SQLCollection(Generic[T]):
    """One kind of object in its own table (id, data, expiry, version)."""

    def __init__(
        self,
        db: Database,
        table: str,
        cls: type[T],
        key_of: Callable[[T], str],
        *,
        normalize: Callable[[str], str] | None = None,
        show_keys: bool = False,
        columns: tuple[str, ...] = (),
        values: Callable[[T], tuple[Any, ...]] | None = None,
    ) -> None:
        # `table` is one of the schema's constant names, never input: the f-strings below are safe.
        self._db = db
        self._table = table
        self._cls = cls
        self._key_of = key_of
        self._normalize = normalize
        # Codes and tokens are their own keys; they must never reach an error message or a log.
        self._show_keys = show_keys
        self._has_expiry = any(f.name == "expiry" for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        # Columns of the table's own beside data, expiry and version (indexed: what queries other than
        # by id select on), written with every insert and compare-and-swap from `values` of the object.
        self._values = values
        names = "".join(f", {column}" for column in columns)
        marks = ", ?" * len(columns)
        sets = "".join(f", {column} = ?" for column in columns)
        self._sql_insert = (
            f"INSERT INTO {table} (id, data, expiry, version{names}) VALUES (?, ?, ?, 1{marks}) "  # noqa: S608
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        self._sql_get = f"SELECT data FROM {table} WHERE id = ?"  # noqa: S608
        self._sql_get_versioned = f"SELECT data, version FROM {table} WHERE id = ?"  # noqa: S608
        self._sql_list = f"SELECT data FROM {table} ORDER BY id"  # noqa: S608
        self._sql_cas = (
            f"UPDATE {table} SET data = ?, expiry = ?{sets}, version = version + 1 "  # noqa: S608
            "WHERE id = ? AND version = ? RETURNING id"
        )
        self._sql_delete = f"DELETE FROM {table} WHERE id = ? RETURNING id"  # noqa: S608
        # SQLite locks the whole database for a write transaction; PostgreSQL needs the row locked.
        lock = " FOR UPDATE" if db.dialect == "postgres" else ""
        self._sql_get_locked = self._sql_get_versioned + lock
        self.steps: CollectionSteps[T] = SQLSteps(self)

    def _key(self, key: str) -> str:
        return key if self._normalize is None else self._normalize(key)

    def _expiry(self, obj: T) -> int | None:
        return epoch_micros(obj.expiry) if self._has_expiry else None  # type: ignore[attr-defined]

    def _row(self, obj: T) -> tuple[Any, ...]:
        """What an insert or compare-and-swap writes for `obj` after its key: data, expiry, own columns."""
        row = (codec.dumps(obj), self._expiry(obj))
        return row if self._values is None else row + self._values(obj)

    def _name(self, key: str) -> str:
        return f"{self._table} {key!r}" if self._show_keys else f"an object in {self._table}"

    def _decode(self, data: str) -> T:
        return codec.from_dict(self._cls, json.loads(data))

    async def create(self, obj: T) -> None:
        key = self._key(self._key_of(obj))
        rows = await self._db.fetch(self._sql_insert, key, *self._row(obj))
        if not rows:
            raise AlreadyExists(f"{self._name(key)} exists already")

    async def get(self, key: str) -> T:
        key = self._key(key)
        rows = await self._db.fetch(self._sql_get, key)
        if not rows:
            raise NotFound(f"{self._name(key)} does not exist")
        return self._decode(rows[0][0])

    async def list(self) -> builtins.list[T]:
        rows = await self._db.fetch(self._sql_list)
        cls = self._cls
        return [codec.from_dict(cls, json.loads(row[0])) for row in rows]

    async def update(self, key: str, updater: Callable[[T], T]) -> T:
        return await self.update_or_create(key, updater, missing=None)

    async def update_or_create(
        self, key: str, updater: Callable[[T], T], *, missing: Callable[[], T] | None
    ) -> T:
        """Compare-and-swap `updater` on the object; when it does not exist, NotFound, or (with
        `missing`) create it from `updater(missing())`, turning into an update if another writer
        created it first."""
        key = self._key(key)
        for attempt in range(MAX_ATTEMPTS):
            rows = await self._db.fetch(self._sql_get_versioned, key)
            if not rows:
                if missing is None:
                    raise NotFound(f"{self._name(key)} does not exist")
                new = self._checked(key, updater(missing()))
                if await self._db.fetch(self._sql_insert, key, *self._row(new)):
                    return new
            else:
                data, version = rows[0]
                new = self._checked(key, updater(self._decode(data)))
                written = await self._db.fetch(self._sql_cas, *self._row(new), key, version)
                if written:
                    return new
            await _backoff(attempt)
        raise ConflictError(f"{self._name(key)}: gave up after {MAX_ATTEMPTS} conflicting updates")

    def _checked(self, key: str, new: T) -> T:
        if self._key(self._key_of(new)) != key:
            raise ValueError(f"an update must not change the key of {self._name(key)}")
        return new

    async def delete(self, key: str) -> None:
        key = self._key(key)
        if not await self._db.fetch(self._sql_delete, key):
            raise NotFound(f"{self._name(key)} does not exist")


class SQLSteps(Generic[T]):
    """A SQLCollection's operations as steps for `Storage.run` (see CollectionSteps)."""

    def __init__(self, collection: SQLCollection[T]) -> None:
        self._c = collection
        self._sql_present: dict[int, str] = {}

    def find(self, key: str, *, lock: bool = False) -> Steps[Versioned[T] | None]:
        c = self._c
        rows = yield c._sql_get_locked if lock else c._sql_get_versioned, (c._key(key),)
        if not rows:
            return None
        data, version = rows[0]
        return Versioned(c._decode(data), version)

    def present(self, keys: Sequence[str]) -> Steps[set[str]]:
        wanted = tuple(self._c._key(key) for key in keys)
        if not wanted:
            return set()
        rows = yield self._present_sql(len(wanted)), wanted
        return {row[0] for row in rows}

    def _present_sql(self, count: int) -> str:
        sql = self._sql_present.get(count)
        if sql is None:
            marks = ", ".join("?" * count)
            sql = self._sql_present[count] = f"SELECT id FROM {self._c._table} WHERE id IN ({marks})"  # noqa: S608
        return sql

    def create(self, obj: T) -> Steps[None]:
        c = self._c
        key = c._key(c._key_of(obj))
        if not (yield c._sql_insert, (key, *c._row(obj))):
            raise AlreadyExists(f"{c._name(key)} exists already")

    def update(self, key: str, updater: Callable[[T], T], *, known: Versioned[T] | None = None) -> Steps[T]:
        c = self._c
        key = c._key(key)
        current = known
        for _ in range(MAX_ATTEMPTS):
            if current is None:
                rows = yield c._sql_get_locked, (key,)
                if not rows:
                    raise NotFound(f"{c._name(key)} does not exist")
                current = Versioned(c._decode(rows[0][0]), rows[0][1])
            new = c._checked(key, updater(current.value))
            if (yield c._sql_cas, (*c._row(new), key, current.version)):
                return new
            current = None  # another writer got there first: read its value, apply again
        raise ConflictError(f"{c._name(key)}: gave up after {MAX_ATTEMPTS} conflicting updates")

    def delete(self, key: str) -> Steps[None]:
        c = self._c
        key = c._key(key)
        if not (yield c._sql_delete, (key,)):
            raise NotFound(f"{c._name(key)} does not exist")


def refresh_token_columns(token: RefreshToken) -> tuple[str, str, int]:
    """The refresh_tokens table's own columns for `token` (migration 6): its offline session, its client,
    its last use in epoch microseconds."""
    return (
        offline_session_key(token.claims.user_id, token.connector_id), token.client_id,
        epoch_micros(token.last_used),
    )


# A user's tokens for one client, newest use first, past the ones kept: a range of the index on
# (offline_session, client_id, last_used). The LIMIT is only there because SQL wants one before OFFSET.
_SQL_EVICT = (
    "DELETE FROM refresh_tokens WHERE id IN (SELECT id FROM refresh_tokens "
    "WHERE offline_session = ? AND client_id = ? AND expiry > ? AND id <> ? "
    "ORDER BY last_used DESC, id DESC LIMIT 1000000000 OFFSET ?) RETURNING id"
)
_SQL_HELD = "SELECT 1 FROM refresh_tokens WHERE offline_session = ? LIMIT 1"


class SQLRefreshTokenSteps(SQLSteps[RefreshToken]):
    """The refresh tokens' steps, with their queries on the offline-session index."""

    def evict(self, session: str, client_id: str, *, keep: int, now: datetime,
              spare: str = "") -> Steps[builtins.list[str]]:
        others = max(0, keep - 1) if spare else max(0, keep)
        rows = yield _SQL_EVICT, (session, client_id, epoch_micros(now), spare, others)
        return [row[0] for row in rows]

    def held(self, session: str) -> Steps[bool]:
        return bool((yield _SQL_HELD, (session,)))


class SQLRefreshTokens(SQLCollection[RefreshToken]):
    """The refresh_tokens table: the generic collection plus the columns of refresh_token_columns."""

    steps: RefreshTokenSteps

    def __init__(self, db: Database) -> None:
        super().__init__(
            db, "refresh_tokens", RefreshToken, _id,
            columns=("offline_session", "client_id", "last_used"), values=refresh_token_columns,
        )
        self.steps = SQLRefreshTokenSteps(self)


class SQLAuditLog:
    """The audit log in its own table; the tail is one range scan on the primary key."""

    def __init__(self, db: Database) -> None:
        self._events = SQLCollection(db, "audit_events", AuditEvent, _id, show_keys=True)
        self._db = db

    async def append(self, event: AuditEvent) -> None:
        await self._events.create(event)

    async def tail(self, after: str = "", limit: int = 200) -> builtins.list[AuditEvent]:
        rows = await self._db.fetch(
            "SELECT data FROM audit_events WHERE id > ? ORDER BY id DESC LIMIT ?", after, max(1, limit)
        )
        return [codec.from_dict(AuditEvent, json.loads(row[0])) for row in reversed(rows)]

    async def prune(self, before: datetime) -> int:
        # An event's id starts with its time as 14 hex digits of epoch microseconds
        # (audit_id): "older than" is one range on the primary key. Deleted in
        # batches, so that a first prune of a long history does not hold the database for long.
        cutoff = f"{epoch_micros(before):014x}"
        deleted = 0
        while True:
            rows = await self._db.fetch(
                "DELETE FROM audit_events WHERE id IN "
                "(SELECT id FROM audit_events WHERE id < ? ORDER BY id LIMIT ?) RETURNING id",
                cutoff, _PRUNE_BATCH,
            )
            deleted += len(rows)
            if len(rows) < _PRUNE_BATCH:
                return deleted


class SQLStorage:
    """The Storage protocol over one Database; every backend is this class plus a driver."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clients: Collection[Client] = SQLCollection(db, "clients", Client, _id, show_keys=True)
        self.passwords: Collection[Password] = SQLCollection(
            db, "passwords", Password, _email, normalize=str.lower, show_keys=True
        )
        self.connectors: Collection[Connector] = SQLCollection(
            db, "connectors", Connector, _id, show_keys=True
        )
        self.auth_requests: Collection[AuthRequest] = SQLCollection(db, "auth_requests", AuthRequest, _id)
        self.auth_codes: Collection[AuthCode] = SQLCollection(db, "auth_codes", AuthCode, _id)
        self.refresh_tokens: RefreshTokenCollection = SQLRefreshTokens(db)
        self.offline_sessions: Collection[OfflineSession] = SQLCollection(
            db, "offline_sessions", OfflineSession, _offline_key, show_keys=True
        )
        self.device_requests: Collection[DeviceRequest] = SQLCollection(
            db, "device_requests", DeviceRequest, _user_code
        )
        self.device_tokens: Collection[DeviceToken] = SQLCollection(
            db, "device_tokens", DeviceToken, _device_code
        )
        self.browser_sessions: Collection[BrowserSession] = SQLCollection(
            db, "browser_sessions", BrowserSession, _id
        )
        self.consents: Collection[Consent] = SQLCollection(db, "consents", Consent, _consent_key)
        self.revoked_tokens: Collection[RevokedToken] = SQLCollection(db, "revoked_tokens", RevokedToken, _id)
        self.user_mfa: Collection[UserMFA] = SQLCollection(db, "user_mfa", UserMFA, _mfa_key)
        self.login_throttles: Collection[LoginThrottle] = SQLCollection(
            db, "login_throttles", LoginThrottle, _id, show_keys=True
        )
        self.audit: AuditLog = SQLAuditLog(db)
        self._keys = SQLCollection(db, "signing_keys", Keys, _keys_id, show_keys=True)
        self._gc_sql = tuple(
            f"DELETE FROM {t} WHERE expiry < ? RETURNING id"  # noqa: S608
            for t in EXPIRING_TABLES
        )

    async def run(self, steps: Steps[R], *, write: bool = False) -> R:
        return await self.db.run(steps, write=write)

    async def get_keys(self) -> Keys:
        try:
            return await self._keys.get(_KEYS_ID)
        except NotFound:
            return Keys()

    async def update_keys(self, updater: Callable[[Keys], Keys]) -> Keys:
        return await self._keys.update_or_create(_KEYS_ID, updater, missing=Keys)

    async def garbage_collect(self, now: datetime) -> GCResult:
        cutoff = epoch_micros(now)
        counts = [len(await self.db.fetch(sql, cutoff)) for sql in self._gc_sql]
        # The tables are named as GCResult's fields.
        return GCResult(**dict(zip(EXPIRING_TABLES, counts, strict=True)))

    async def ping(self) -> None:
        await self.db.ping()

    async def close(self) -> None:
        await self.db.close()


def _id(
    obj: Client | Connector | AuthRequest | AuthCode | RefreshToken | BrowserSession | RevokedToken
    | AuditEvent | LoginThrottle,
) -> str:
    return obj.id


def _consent_key(obj: Consent) -> str:
    return consent_key(obj.user_id, obj.connector_id, obj.client_id)


def _mfa_key(obj: UserMFA) -> str:
    return mfa_key(obj.user_id, obj.connector_id)


def _email(obj: Password) -> str:
    return obj.email


def _offline_key(obj: OfflineSession) -> str:
    return offline_session_key(obj.user_id, obj.conn_id)


def _user_code(obj: DeviceRequest) -> str:
    return obj.user_code


def _device_code(obj: DeviceToken) -> str:
    return obj.device_code


def _keys_id(obj: Keys) -> str:
    return _KEYS_ID
