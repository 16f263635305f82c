"""Rate limits: token buckets per client address (or client id) in this process's memory.

Each process limits on its own: with N replicas behind a load balancer a client gets up to N times
the configured rate. That is on purpose: the buckets are on every request's path, and a database
round trip per request would cost more than the floods they stop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from appliance.config.schema import RateLimit
from appliance.errors import OAuthError

__all__ = ["MAX_BUCKETS", "RateLimited", "RateLimiter"]

# Past this many buckets the full ones (which hold no state) are dropped, then the oldest: a flood from
# many addresses cannot grow memory without bound.
MAX_BUCKETS = 100_000


class RateLimited(OAuthError):
    """HTTP 429 (RFC 6585) with Retry-After, in RFC 6749's error shape for the JSON endpoints."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("invalid_request", f"too many requests, retry after {retry_after} seconds", 429)
        self.retry_after = retry_after


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """Token buckets by (limit name, key). `now` gives seconds (any origin; only differences count)."""

    def __init__(self, now: Callable[[], float], max_buckets: int = MAX_BUCKETS) -> None:
        self._now = now
        self._max = max_buckets
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, name: str, key: str, limit: RateLimit) -> int:
        """Spend one token: 0 when allowed, else the whole seconds until one is there (at least 1).
        The limit is read per call, so a reload applies at once (tokens above a new burst are dropped)."""
        if limit.per_minute <= 0:
            return 0
        rate = limit.per_minute / 60.0
        capacity = float(max(1, limit.burst))
        now = self._now()
        bucket = self._buckets.get((name, key))
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._prune(now, rate, capacity)
            bucket = self._buckets[(name, key)] = _Bucket(capacity, now)
        else:
            elapsed = max(0.0, now - bucket.stamp)  # a clock stepping back refills nothing
            bucket.tokens = min(capacity, bucket.tokens + elapsed * rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / rate))

    def _prune(self, now: float, rate: float, capacity: float) -> None:
        # Full buckets first: forgetting them changes nothing. The rate of the limit being taken is a
        # stand-in for every limit's: a bucket counted full a little early only errs towards the client.
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.stamp) * rate >= capacity]
        for k in full:
            del self._buckets[k]
        excess = len(self._buckets) - int(self._max * 0.9)
        if excess > 0:
            for k in list(self._buckets)[:excess]:  # insertion order: the oldest keys first
                del self._buckets[k]

    def forget(self) -> None:
        self._buckets.clear()
