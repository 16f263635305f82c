"""Failed password logins counted per account and per client address, in storage (so replicas agree).

A record counts attempts in a fixed window that starts at the first one. An account's attempt is
counted *before* the connector checks the password (a compare-and-swap reservation), so concurrent
guesses can never exceed the limit; a success deletes the record, an upstream outage gives the
attempt back. A client address counts failures only. Reaching the limit locks the account or the
address for the lockout duration; the record then expires by itself (garbage collection).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol, cast
from urllib.parse import quote

from appliance.clock import Clock
from appliance.config.schema import BruteForceConfig, ThrottleLimit
from appliance.errors import NotFound
from appliance.store.base import Collection, Storage
from appliance.store.models import LoginThrottle

__all__ = [
    "ACCOUNT",
    "IP",
    "Denied",
    "Throttle",
    "account_key",
    "count_failure",
    "delay_for",
    "give_back",
    "ip_key",
    "ip_subject",
    "is_locked",
    "lock_if_due",
    "normalise_username",
    "reserve",
]

ACCOUNT = "account"
IP = "ip"
_MAX_SUBJECT = 256  # longer usernames are counted under a digest (bounded keys, same counter)


class Denied(Exception):
    """Raised by an updater to refuse an attempt without writing: locked, or no attempt left."""

    def __init__(self, record: LoginThrottle) -> None:
        super().__init__(record.id)
        self.record = record


class _Unchanged(Exception):
    """Raised by an updater when there is nothing to write."""


def normalise_username(username: str) -> str:
    """The name an account is counted under: "Jane@Example.com " and "jane@example.com" are one account."""
    name = username.strip().lower()
    if len(name) > _MAX_SUBJECT:
        name = f"{name[:64]}…{hashlib.sha256(name.encode()).hexdigest()[:32]}"
    return name


def account_key(connector_id: str, username: str) -> str:
    # The connector id is escaped so that no (connector, username) pair can collide with another.
    return f"{ACCOUNT}:{quote(connector_id, safe='')}:{normalise_username(username)}"


def ip_subject(address: str) -> str:
    """What a client address is counted under: the IPv4 address, or the IPv6 /64 (one subscriber
    gets a whole /64, so single IPv6 addresses would be free to rotate); "" when it is not an address."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def ip_key(subject: str) -> str:
    return f"{IP}:{subject}"


def is_locked(record: LoginThrottle | None, now: datetime) -> bool:
    return record is not None and record.locked_until is not None and now < record.locked_until


def delay_for(failures: int, config: BruteForceConfig) -> float:
    """Seconds to hold the answer to the `failures`-th failure: initial, doubling, at most max."""
    if failures <= 0 or config.delay_initial <= timedelta(0):
        return 0.0
    delay: timedelta = config.delay_initial * (2 ** min(failures - 1, 30))
    return float(min(delay, config.delay_max).total_seconds())


def _expiry(record: LoginThrottle, window: timedelta) -> datetime:
    end = (record.window_start or record.expiry) + window
    if record.locked_until is not None and record.locked_until > end:
        return record.locked_until
    return end


def _current(record: LoginThrottle, now: datetime, window: timedelta) -> LoginThrottle:
    """The record, or a fresh window when its window or its lockout is over."""
    start = record.window_start
    lock_over = record.locked_until is not None and now >= record.locked_until
    if start is None or now - start >= window or lock_over:
        return replace(record, failures=0, window_start=now, locked_until=None)
    return record


def new_record(key: str, kind: str, subject: str, connector_id: str, now: datetime) -> LoginThrottle:
    return LoginThrottle(id=key, kind=kind, expiry=now, connector_id=connector_id, subject=subject,
                         window_start=now)


def reserve(record: LoginThrottle, now: datetime, config: BruteForceConfig, limit: ThrottleLimit
            ) -> LoginThrottle:
    """Count one attempt on an account before it is checked; Denied when locked or none is left."""
    if is_locked(record, now):
        raise Denied(record)
    record = _current(record, now, config.window)
    if limit.max_failures and record.failures >= limit.max_failures:
        raise Denied(record)  # the remaining attempts are in flight: wait for their verdicts
    counted = replace(record, failures=record.failures + 1, last_attempt=now)
    return replace(counted, expiry=_expiry(counted, config.window))


def lock_if_due(record: LoginThrottle, now: datetime, config: BruteForceConfig, limit: ThrottleLimit
                ) -> LoginThrottle:
    """After a failed attempt on an account (already counted by `reserve`): lock it when the limit is
    reached. Raises _Unchanged when there is nothing to write."""
    if is_locked(record, now):
        raise _Unchanged
    if record.window_start is None or now - record.window_start >= config.window:
        raise _Unchanged  # the reservation belonged to a window that is over
    if not limit.max_failures or record.failures < limit.max_failures:
        raise _Unchanged
    return _locked(record, now, config, limit)


def count_failure(record: LoginThrottle, now: datetime, config: BruteForceConfig, limit: ThrottleLimit
                  ) -> LoginThrottle:
    """One failure from a client address (counted after the verdict); locks it at the limit."""
    if is_locked(record, now):
        raise _Unchanged
    record = _current(record, now, config.window)
    counted = replace(record, failures=record.failures + 1, last_attempt=now)
    if limit.max_failures and counted.failures >= limit.max_failures:
        return _locked(counted, now, config, limit)
    return replace(counted, expiry=_expiry(counted, config.window))


def give_back(record: LoginThrottle, now: datetime, config: BruteForceConfig) -> LoginThrottle:
    """An attempt that got no verdict (the upstream failed): uncount it."""
    if is_locked(record, now) or record.failures <= 0:
        raise _Unchanged
    if record.window_start is None or now - record.window_start >= config.window:
        raise _Unchanged
    return replace(record, failures=record.failures - 1)


def _locked(record: LoginThrottle, now: datetime, config: BruteForceConfig, limit: ThrottleLimit
            ) -> LoginThrottle:
    locked = replace(record, locked_until=now + limit.lockout_duration, lockouts=record.lockouts + 1)
    return replace(locked, expiry=_expiry(locked, config.window))


@dataclass(frozen=True)
class Outcome:
    """What a write did: the stored record, and whether this write started a lockout."""

    record: LoginThrottle
    locked_now: bool = False


class Throttle:
    """The records in storage, updated by compare-and-swap so that every replica counts the same."""

    def __init__(self, storage: Storage, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock

    @property
    def _records(self) -> Collection[LoginThrottle]:
        return self._storage.login_throttles

    async def get(self, key: str) -> LoginThrottle | None:
        try:
            return await self._records.get(key)
        except NotFound:
            return None

    async def reserve(self, key: str, subject: str, connector_id: str, config: BruteForceConfig
                      ) -> LoginThrottle:
        """Count an attempt on an account; Denied (with the record) when it may not be tried now."""
        now = self._clock.now()
        return await self._upsert(key, lambda r: reserve(r, now, config, config.account),
                                  lambda: new_record(key, ACCOUNT, subject, connector_id, now))

    async def failed(self, record: LoginThrottle, config: BruteForceConfig) -> Outcome:
        """An account's reserved attempt failed: lock it if that was the last one allowed."""
        if not config.account.max_failures or record.failures < config.account.max_failures:
            return Outcome(record)  # the usual case: the reservation counted it already, no write
        now = self._clock.now()
        try:
            stored = await self._records.update(
                record.id, lambda r: lock_if_due(r, now, config, config.account)
            )
        except (_Unchanged, NotFound):  # not due, or cleared (by a success or an administrator) meanwhile
            return Outcome(record)
        return Outcome(stored, locked_now=True)

    async def count_ip(self, subject: str, config: BruteForceConfig) -> Outcome:
        now = self._clock.now()
        key = ip_key(subject)
        locked_before = False

        def count(record: LoginThrottle) -> LoginThrottle:
            nonlocal locked_before
            locked_before = is_locked(record, now)
            return count_failure(record, now, config, config.client_ip)

        try:
            stored = await self._upsert(key, count, lambda: new_record(key, IP, subject, "", now))
        except _Unchanged:
            return Outcome(await self.get(key) or new_record(key, IP, subject, "", now))
        return Outcome(stored, locked_now=is_locked(stored, now) and not locked_before)

    async def give_back(self, key: str, config: BruteForceConfig) -> None:
        now = self._clock.now()
        try:
            await self._records.update(key, lambda r: give_back(r, now, config))
        except (_Unchanged, NotFound):
            pass

    async def reset(self, key: str) -> bool:
        """Forget the record (a successful login, an administrator's clear); False when there was none."""
        try:
            await self._records.delete(key)
        except NotFound:
            return False
        return True

    async def _upsert(self, key: str, updater: Callable[[LoginThrottle], LoginThrottle],
                      missing: Callable[[], LoginThrottle]) -> LoginThrottle:
        # Every backend's collections are SQL collections, whose update_or_create is the
        # compare-and-swap upsert (the Collection protocol only promises update).
        records = cast(_Upsertable, self._records)
        return await records.update_or_create(key, updater, missing=missing)


class _Upsertable(Protocol):
    async def update_or_create(self, key: str, updater: Callable[[LoginThrottle], LoginThrottle], *,
                               missing: Callable[[], LoginThrottle] | None) -> LoginThrottle: ...
