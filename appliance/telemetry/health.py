"""Health: a storage probe (short timeout, cached, one ping at a time) and the process's readiness."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance.telemetry.redact import redact

__all__ = ["Check", "Readiness", "StorageProbe"]


@dataclass(frozen=True)
class Check:
    """One check's latest result, shaped as Dex's health JSON (go-sundheit) shows it."""

    ok: bool
    message: str
    error: str
    checked_at: float  # wall-clock seconds
    duration_s: float
    failures: int  # contiguous failures up to this result
    first_failure_at: float | None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ok:
            out["message"] = self.message
        else:
            out["error"] = self.error
        out["timestamp"] = _iso(self.checked_at)
        out["duration_ms"] = round(self.duration_s * 1000, 1)
        out["num_failures"] = self.failures
        out["first_failure_time"] = _iso(self.first_failure_at) if self.first_failure_at is not None else None
        return out


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")


class StorageProbe:
    """Pings the database at most once per `ttl` seconds; concurrent callers share the ping in flight,
    so a burst of probes (several kubelets, a scraper) costs one round trip."""

    def __init__(self, ping: Callable[[], Awaitable[None]], *, timeout: float = 1.0, ttl: float = 3.0,
                 on_failure: Callable[[], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._ping = ping
        self._timeout = timeout
        self._ttl = ttl
        self._on_failure = on_failure
        self._monotonic = monotonic
        self._wall = wall
        self._last: Check | None = None
        self._last_at = 0.0
        self._running: asyncio.Task[Check] | None = None

    @property
    def last(self) -> Check | None:
        return self._last

    async def check(self) -> Check:
        if self._last is not None and self._monotonic() - self._last_at < self._ttl:
            return self._last
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run(), name="storage-probe")
        # shield: a caller that goes away (client disconnect) does not cancel the others' ping.
        return await asyncio.shield(self._running)

    async def _run(self) -> Check:
        started = self._monotonic()
        error = ""
        try:
            await asyncio.wait_for(self._ping(), self._timeout)
        except TimeoutError:
            error = f"storage did not answer within {self._timeout:g} s"
        except Exception as exc:
            # Error texts name databases and hosts, never credentials; redact in case a driver does.
            error = redact(f"{type(exc).__name__}: {exc}")[:300]
        now, duration = self._wall(), self._monotonic() - started
        previous = self._last
        if error:
            failures = (previous.failures if previous is not None else 0) + 1
            first = previous.first_failure_at if previous is not None and previous.first_failure_at else now
            result = Check(False, "", error, now, duration, failures, first)
            if self._on_failure is not None:
                self._on_failure()
        else:
            result = Check(True, "storage answered", "", now, duration, 0, None)
        self._last, self._last_at = result, self._monotonic()
        return result

    async def aclose(self) -> None:
        if self._running is not None and not self._running.done():
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._running


_STARTING = "starting: configuration or signing keys not loaded yet"


class Readiness:
    """Ready = started (configuration and first signing key loaded, the listeners up), not shutting
    down, and the storage probe passes."""

    def __init__(self, probe: StorageProbe, wall: Callable[[], float] = time.time) -> None:
        self.probe = probe
        self._wall = wall
        self._loaded_at: float | None = None
        self._stopping_at: float | None = None

    def config_loaded(self) -> None:
        self._loaded_at = self._wall()

    def stopping(self) -> None:
        if self._stopping_at is None:
            self._stopping_at = self._wall()

    def config_check(self) -> Check:
        now = self._wall()
        if self._stopping_at is not None:
            return Check(False, "", "shutting down", now, 0.0, 1, self._stopping_at)
        if self._loaded_at is None:
            return Check(False, "", _STARTING, now, 0.0, 1, now)
        return Check(True, "configuration loaded", "", now, 0.0, 0, None)

    async def checks(self) -> dict[str, Check]:
        config = self.config_check()
        if not config.ok:  # no database round trip for a process that is not serving anyway
            return {"config": config}
        return {"config": config, "storage": await self.probe.check()}
