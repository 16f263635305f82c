"""The Storage protocol every backend implements, and its typed errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from appliance.errors import AlreadyExists, ConflictError, NotFound
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
)
from appliance.store.steps import Steps, Versioned

__all__ = [
    "AlreadyExists", "AuditLog", "Collection", "CollectionSteps", "ConflictError", "GCResult", "NotFound",
    "RefreshTokenCollection", "RefreshTokenSteps", "Steps", "Storage", "Versioned",
]

T = TypeVar("T")
R = TypeVar("R")


class CollectionSteps(Protocol[T]):
    """A collection's operations as steps for `Storage.run`, to be combined with `yield from`: several
    operations, on several collections, cost one trip to the database (and, in a write run, make one
    transaction). They raise the typed errors the async operations raise; a caller that catches one
    goes on with the transaction, nothing having been written by the failed step."""

    def find(self, key: str, *, lock: bool = False) -> Steps[Versioned[T] | None]:
        """The object and its version (for a later `update(known=...)`), or None. With `lock`, in a write
        run, the row stays locked until the commit (PostgreSQL; SQLite's write run locks everything), so
        that work on what hangs off it is done by one transaction at a time."""
        ...

    def present(self, keys: Sequence[str]) -> Steps[set[str]]:
        """Which of `keys` are stored, in one statement."""
        ...

    def create(self, obj: T) -> Steps[None]:
        """Store a new object; AlreadyExists if its key is taken."""
        ...

    def update(self, key: str, updater: Callable[[T], T], *, known: Versioned[T] | None = None) -> Steps[T]:
        """Compare-and-swap `updater` on the object. With `known` (read earlier) the first write expects
        that version and reads nothing; when another writer got there first, or without `known`, it reads
        the current object and applies `updater` to it. In a write run that read holds the row until the
        commit, so the second write wins. NotFound if the key does not exist; an exception from `updater`
        propagates. Returns the stored new value."""
        ...

    def delete(self, key: str) -> Steps[None]:
        """Remove the object; NotFound if none."""
        ...


class Collection(Protocol[T]):
    """One kind of stored object, addressed by its key."""

    steps: CollectionSteps[T]

    async def create(self, obj: T) -> None:
        """Store a new object; AlreadyExists if its key is taken."""
        ...

    async def get(self, key: str) -> T:
        """The object with that key; NotFound if none."""
        ...

    async def list(self) -> list[T]:
        """Every object of this kind."""
        ...

    async def update(self, key: str, updater: Callable[[T], T]) -> T:
        """Compare-and-swap: read, apply `updater`, write only if unchanged since the read, else retry.

        NotFound if the key does not exist. An exception from `updater` aborts and propagates.
        Returns the stored new value.
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; NotFound if none."""
        ...


class RefreshTokenSteps(CollectionSteps[RefreshToken], Protocol):
    """The refresh tokens' own queries, on the columns their table indexes: the offline session a token
    belongs to (offline_session_key of its user and connector), its client, its last use."""

    def evict(self, session: str, client_id: str, *, keep: int, now: datetime,
              spare: str = "") -> Steps[list[str]]:
        """Delete the unexpired tokens of `session` and `client_id` but the `keep` most recently used;
        their ids. `spare` (a token just made) is never deleted and counts as one of the `keep`: with
        equal last uses, the order among the others is by id. Expired ones are left to garbage
        collection."""
        ...

    def held(self, session: str) -> Steps[bool]:
        """Is any token (expired or not) of the offline session `session` stored?"""
        ...


class RefreshTokenCollection(Collection[RefreshToken], Protocol):
    steps: RefreshTokenSteps


class AuditLog(Protocol):
    """The admin audit log: append-only, read in id (= time) order."""

    async def append(self, event: AuditEvent) -> None: ...

    async def tail(self, after: str = "", limit: int = 200) -> list[AuditEvent]:
        """Events with an id greater than `after` (all when ""), oldest first, at most the newest `limit`."""
        ...

    async def prune(self, before: datetime) -> int:
        """Delete the events older than `before` (the retention, enforced by the GC loop); how many."""
        ...


@dataclass(frozen=True)
class GCResult:
    auth_requests: int = 0
    auth_codes: int = 0
    device_requests: int = 0
    device_tokens: int = 0
    refresh_tokens: int = 0
    browser_sessions: int = 0
    revoked_tokens: int = 0
    login_throttles: int = 0


class Storage(Protocol):
    clients: Collection[Client]
    passwords: Collection[Password]  # key: email, lowercased
    connectors: Collection[Connector]
    auth_requests: Collection[AuthRequest]
    auth_codes: Collection[AuthCode]
    refresh_tokens: RefreshTokenCollection
    offline_sessions: Collection[OfflineSession]  # key: offline_session_key(user_id, conn_id)
    device_requests: Collection[DeviceRequest]  # key: user_code
    device_tokens: Collection[DeviceToken]  # key: device_code
    browser_sessions: Collection[BrowserSession]
    consents: Collection[Consent]  # key: consent_key(user_id, connector_id, client_id)
    revoked_tokens: Collection[RevokedToken]  # key: an access token's jti or a grant id
    user_mfa: Collection[UserMFA]  # key: mfa_key(user_id, connector_id)
    login_throttles: Collection[LoginThrottle]  # key: appliance.security.throttle.account_key / ip_key
    audit: AuditLog

    async def run(self, steps: Steps[R], *, write: bool = False) -> R:
        """Run `steps` (built from the collections' `steps`) in one trip to the database: for SQLite
        one hop to its thread, for PostgreSQL one pooled connection. With `write`, in one transaction
        that takes the write lock first: committed when `steps` returns, rolled back (nothing written)
        when anything raises. Without it, each statement stands alone (reads)."""
        ...

    async def get_keys(self) -> Keys:
        """The key set; an empty Keys() when none was ever stored."""
        ...

    async def update_keys(self, updater: Callable[[Keys], Keys]) -> Keys:
        """Compare-and-swap on the key set (created when missing); exactly one concurrent updater wins
        each round, the others re-run `updater` on the winner's value. An exception from `updater`
        aborts and propagates (that is how a replica decides someone else already rotated)."""
        ...

    async def garbage_collect(self, now: datetime) -> GCResult:
        """Delete auth requests, auth codes, device requests and tokens, refresh tokens, browser sessions,
        revocation records and login throttles expired before `now`."""
        ...

    async def ping(self) -> None:
        """A cheap round trip to the database (health checks); raises when it does not answer."""
        ...

    async def close(self) -> None: ...
