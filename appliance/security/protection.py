"""One process's protection: the brute-force throttle around every password check, and the rate limits.

Held by `Deps` (one per process, across reloads); the settings are read from the snapshot's
`security` section on every call, so a reload applies at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

from appliance.clock import Clock
from appliance.config.schema import BruteForceConfig, RateLimit, RateLimitsConfig, SecurityConfig
from appliance.errors import ConflictError
from appliance.security.ratelimit import RateLimited, RateLimiter
from appliance.security.throttle import (
    ACCOUNT,
    Denied,
    Throttle,
    account_key,
    delay_for,
    ip_key,
    ip_subject,
    is_locked,
    normalise_username,
)
from appliance.store.base import Storage
from appliance.store.models import AuditEvent, LoginThrottle
from appliance.store.sql import audit_id

__all__ = ["LIMITS", "LOCKOUT_ACTION", "Protection"]

log = logging.getLogger("portico.security")

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

LOCKOUT_ACTION = "lockouts.start"  # the audit log's name for a lockout the server started
# The rate limits by name: where each applies, and its settings.
LIMITS: dict[str, Callable[[RateLimitsConfig], RateLimit]] = {
    "token": lambda c: c.token_per_ip,  # /token, per client address
    "token_client": lambda c: c.token_per_client,  # /token, per authenticated client id
    "device_code": lambda c: c.device_code_per_ip,  # /device/code, per client address
    "login": lambda c: c.login_per_ip,  # the login form and the device code form POSTs
}
_ALWAYS_MAX = 10**6  # a failure count beyond any limit: delay_for gives the configured maximum


class Protection:
    """`check_password` wraps a connector's password check; `rate_limit` spends a request's token.

    `on_lockout(kind)` and `on_rate_limited(name)` are the metrics' hooks (set by the server).
    """

    def __init__(self, storage: Storage, clock: Clock, *, sleep: Sleep = asyncio.sleep,
                 seconds: Callable[[], float] | None = None) -> None:
        self.throttle = Throttle(storage, clock)
        self.limits = RateLimiter(seconds or (lambda: clock.now().timestamp()))
        self.on_lockout: Callable[[str], None] | None = None
        self.on_rate_limited: Callable[[str], None] | None = None
        self._storage = storage
        self._clock = clock
        self._sleep = sleep

    # --- rate limits ------------------------------------------------------------------------------

    def rate_limit(self, security: SecurityConfig, name: str, key: str) -> None:
        """Spend one request of limit `name` for `key` (a client address or client id); RateLimited
        (429, with the seconds to wait) when the bucket is empty."""
        settings = security.rate_limits
        if not settings.enabled:
            return
        wait = self.limits.take(name, key, LIMITS[name](settings))
        if wait:
            # Debug: the app logs each 429 it answers already, and a flood must not double the lines.
            log.debug("rate limit %s: %s must wait %d s", name, key or "an unknown client", wait)
            if self.on_rate_limited is not None:
                self.on_rate_limited(name)
            raise RateLimited(wait)

    # --- brute force ------------------------------------------------------------------------------

    async def check_password(self, config: BruteForceConfig, connector_id: str, username: str,
                             client_ip: str, attempt: Callable[[], Awaitable[T | None]]) -> T | None:
        """`attempt()` (the connector's check: a result, or None for wrong credentials) unless the
        account or the address is locked. A refused attempt answers None after the delay a failure
        gets, exactly as wrong credentials do, so nobody learns whether an account exists or is
        locked. A success forgets the account's failures; an exception (an upstream outage) uncounts
        the attempt and propagates."""
        if not config.enabled:
            return await attempt()
        ip = ip_subject(client_ip)  # "" when unknown (a Unix socket, a test client): not counted
        if ip and is_locked(await self.throttle.get(ip_key(ip)), self._clock.now()):
            await self._refuse(config, "address locked", connector_id)
            return None
        key = account_key(connector_id, username)
        try:
            record = await self.throttle.reserve(key, normalise_username(username), connector_id, config)
        except Denied:
            await self._refuse(config, "account locked", connector_id)
            return None
        except ConflictError:
            # So many attempts on one account at once that the counter could not be written: refused
            # like a locked account (fail closed), never a server error.
            log.warning("too many concurrent login attempts on one account of %s; refused", connector_id)
            await self._refuse(config, "account busy", connector_id)
            return None
        try:
            result = await attempt()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.throttle.give_back(key, config)
            raise
        if result is not None:
            await self.throttle.reset(key)
            return result
        try:
            outcome = await self.throttle.failed(record, config)
            if outcome.locked_now:
                await self._lockout_started(outcome.record, client_ip)
            if ip:
                counted = await self.throttle.count_ip(ip, config)
                if counted.locked_now:
                    await self._lockout_started(counted.record, client_ip)
        except ConflictError:  # the attempt was counted when it was reserved; the answer stays a refusal
            log.warning("a failed login on %s could not be recorded under contention", connector_id)
        await self._sleep(delay_for(record.failures, config))
        return None

    async def _refuse(self, config: BruteForceConfig, why: str, connector_id: str) -> None:
        log.info("password check refused: %s (connector %s)", why, connector_id)
        await self._sleep(delay_for(_ALWAYS_MAX, config))

    async def _lockout_started(self, record: LoginThrottle, client_ip: str) -> None:
        until = record.locked_until.isoformat() if record.locked_until else ""
        if record.kind == ACCOUNT:
            log.warning("lockout: account %r of connector %s locked until %s after %d failed logins "
                        "(last from %s)", record.subject, record.connector_id, until, record.failures,
                        client_ip or "an unknown address")
            details = {"kind": record.kind, "connector": record.connector_id, "username": record.subject,
                       "failures": record.failures, "locked_until": until, "client_ip": client_ip}
        else:
            log.warning("lockout: client address %s locked until %s after %d failed logins",
                        record.subject, until, record.failures)
            details = {"kind": record.kind, "address": record.subject, "failures": record.failures,
                       "locked_until": until}
        if self.on_lockout is not None:
            self.on_lockout(record.kind)
        now = self._clock.now()
        event = AuditEvent(id=audit_id(now), time=now, uid=os.geteuid(),
                           pid=os.getpid(), gid=os.getegid(), action=LOCKOUT_ACTION, target=record.id,
                           details=details, result="ok")
        try:
            await self._storage.audit.append(event)
        except Exception:
            log.exception("could not write the audit event of the lockout of %s", record.id)
