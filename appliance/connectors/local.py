"""The `local` connector: logs in against the password database (static and stored passwords)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import bcrypt

from appliance.connectors.base import Identity, Scopes, UserRefusedError
from appliance.errors import ConnectorError
from appliance.store.models import Password

log = logging.getLogger("portico.connectors.local")

PasswordLookup = Callable[[str], Awaitable[Password | None]]
# The same lookup as steps of a database trip (appliance.store.steps), when the lookup offers it.
PasswordSteps = Callable[[str], Generator[Any, Any, Password | None]]

# Dex refuses hashes outside this bcrypt cost range: too cheap is weak, too dear is a denial of service.
MIN_COST = 10
MAX_COST = 16
# A bcrypt check at cost 16 takes seconds; anything longer means the thread pool is starved.
_CHECK_TIMEOUT = 30.0


def _cost(hashed: bytes) -> int:
    # "$2b$12$..." -> 12; anything unparsable is treated as out of range.
    parts = hashed.split(b"$")
    try:
        return int(parts[2])
    except (IndexError, ValueError):
        return -1


def _checkpw(password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed)
    except ValueError:
        return False


@functools.cache
def _dummy_hash() -> bytes:
    return bcrypt.hashpw(b"portico-no-such-user", bcrypt.gensalt(MIN_COST))


def _check_nobody(password: str) -> None:
    _checkpw(password, _dummy_hash())


def _identity(user: Password) -> Identity:
    return Identity(
        user_id=user.user_id,
        username=user.name or user.username,  # Dex: the display name when set, else the username
        preferred_username=user.preferred_username,
        email=user.email,
        email_verified=user.email_verified,
        groups=user.groups,
    )


class LocalConnector:
    """Password connector and refresh connector over a password lookup (emails case-insensitive)."""

    def __init__(self, lookup: PasswordLookup) -> None:
        self._lookup = lookup
        # PasswordDB (appliance.oidc.deps) also reads as steps: then a refresh runs whole inside the
        # database transaction that advances the token (refresh_steps), one trip instead of two.
        self._lookup_steps: PasswordSteps | None = getattr(lookup, "steps", None)

    @property
    def refreshes_in_store(self) -> bool:
        """Does refresh_steps work (the lookup reads only Portico's own store)?"""
        return self._lookup_steps is not None

    def prompt(self) -> str:
        return "Email Address"

    async def login(self, scopes: Scopes, username: str, password: str) -> Identity | None:
        user = await self._lookup(username.strip().lower())
        if user is None:
            # Spend the time a real check takes, so the answer time does not reveal who has an account.
            await asyncio.to_thread(_check_nobody, password)
            return None
        hashed = user.hash.encode()
        cost = _cost(hashed)
        if not MIN_COST <= cost <= MAX_COST:
            log.error("password hash of a local user has bcrypt cost %d, outside %d..%d", cost, MIN_COST,
                      MAX_COST)
            raise ConnectorError("the stored password hash is unusable")
        try:
            ok = await asyncio.wait_for(asyncio.to_thread(_checkpw, password, hashed), _CHECK_TIMEOUT)
        except TimeoutError as exc:
            raise ConnectorError("password check timed out") from exc
        return _identity(user) if ok else None

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        return _refreshed(await self._lookup(identity.email.lower()), identity)

    def refresh_steps(self, scopes: Scopes, identity: Identity) -> Generator[Any, Any, Identity]:
        """`refresh` as steps of a database trip (only when refreshes_in_store)."""
        if self._lookup_steps is None:
            raise TypeError("this password lookup cannot be read inside a database trip")
        return _refreshed((yield from self._lookup_steps(identity.email.lower())), identity)


def _refreshed(user: Password | None, identity: Identity) -> Identity:
    # A deleted user, or a new user who took over the email, must not inherit the old session.
    if user is None or user.user_id != identity.user_id:
        raise UserRefusedError("user not found")
    fresh = _identity(user)
    return Identity(
        user_id=identity.user_id,
        username=fresh.username,
        preferred_username=fresh.preferred_username,
        email=identity.email,
        email_verified=fresh.email_verified,
        groups=fresh.groups,
        connector_data=identity.connector_data,
    )
