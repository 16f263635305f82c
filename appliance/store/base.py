"""The Storage protocol every backend implements, and its typed errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from appliance.errors import AlreadyExists, ConflictError, NotFound
from appliance.store.models import (
    AuthCode,
    AuthRequest,
    Client,
    Connector,
    DeviceRequest,
    DeviceToken,
    Keys,
    OfflineSession,
    Password,
    RefreshToken,
)

__all__ = ["AlreadyExists", "Collection", "ConflictError", "GCResult", "NotFound", "Storage"]

T = TypeVar("T")


class Collection(Protocol[T]):
    """One kind of stored object, addressed by its key."""

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


@dataclass(frozen=True)
class GCResult:
    auth_requests: int = 0
    auth_codes: int = 0
    device_requests: int = 0
    device_tokens: int = 0


class Storage(Protocol):
    clients: Collection[Client]
    passwords: Collection[Password]  # key: email, lowercased
    connectors: Collection[Connector]
    auth_requests: Collection[AuthRequest]
    auth_codes: Collection[AuthCode]
    refresh_tokens: Collection[RefreshToken]
    offline_sessions: Collection[OfflineSession]  # key: offline_session_key(user_id, conn_id)
    device_requests: Collection[DeviceRequest]  # key: user_code
    device_tokens: Collection[DeviceToken]  # key: device_code

    async def get_keys(self) -> Keys:
        """The key set; an empty Keys() when none was ever stored."""
        ...

    async def update_keys(self, updater: Callable[[Keys], Keys]) -> Keys:
        """Compare-and-swap on the key set (created when missing); exactly one concurrent updater wins
        each round, the others re-run `updater` on the winner's value. An exception from `updater`
        aborts and propagates (that is how a replica decides someone else already rotated)."""
        ...

    async def garbage_collect(self, now: datetime) -> GCResult:
        """Delete auth requests, auth codes, device requests and device tokens expired before `now`."""
        ...

    async def ping(self) -> None:
        """A cheap round trip to the database (health checks); raises when it does not answer."""
        ...

    async def close(self) -> None: ...
