"""The injected clock: every layer asks it for the time, so tests can freeze and move it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock for tests: stands still until moved, or, with a `tick`, moves that much at every reading
    (so that of two things that happen one after the other, the second is later, as on a real clock)."""

    def __init__(self, at: datetime | None = None, *, tick: timedelta = timedelta(0)) -> None:
        self._at = at or datetime(2026, 1, 1, tzinfo=UTC)
        self.tick = tick

    def now(self) -> datetime:
        at = self._at
        self._at += self.tick
        return at

    def advance(self, delta: timedelta) -> None:
        self._at += delta

    def set(self, at: datetime) -> None:
        self._at = at
