"""Token buckets with a fake clock, Protection.rate_limit, and the client address behind trusted proxies."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from appliance.clock import FrozenClock
from appliance.config.schema import ClientRemoteIP, RateLimit, RateLimitsConfig, SecurityConfig
from appliance.security.clientip import ClientAddress, peer_of_scope
from appliance.security.protection import Protection
from appliance.security.ratelimit import RateLimited, RateLimiter
from appliance.store.sqlite import MEMORY, open_sqlite


class Seconds:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_tells_how_long_to_wait() -> None:
    clock = Seconds()
    limiter = RateLimiter(clock)
    limit = RateLimit(per_minute=30, burst=3)  # one token every 2 s
    assert [limiter.take("token", "a", limit) for _ in range(3)] == [0, 0, 0]
    assert limiter.take("token", "a", limit) == 2
    clock.now += 1.0
    assert limiter.take("token", "a", limit) == 1  # half a token back: one more second
    clock.now += 1.0
    assert limiter.take("token", "a", limit) == 0
    assert limiter.take("token", "a", limit) == 2
    assert limiter.take("token", "b", limit) == 0  # another key has its own bucket
    assert limiter.take("login", "a", limit) == 0  # so has another limit


def test_buckets_refill_up_to_the_burst_only() -> None:
    clock = Seconds()
    limiter = RateLimiter(clock)
    limit = RateLimit(per_minute=60, burst=2)
    limiter.take("token", "a", limit)
    clock.now += 3600
    assert [limiter.take("token", "a", limit) for _ in range(3)] == [0, 0, 1]


def test_a_clock_stepping_back_refills_nothing() -> None:
    clock = Seconds()
    limiter = RateLimiter(clock)
    limit = RateLimit(per_minute=60, burst=1)
    assert limiter.take("token", "a", limit) == 0
    clock.now -= 500
    assert limiter.take("token", "a", limit) == 1


def test_a_new_burst_applies_at_once_and_zero_per_minute_is_no_limit() -> None:
    clock = Seconds()
    limiter = RateLimiter(clock)
    assert [limiter.take("token", "a", RateLimit(60, 5)) for _ in range(2)] == [0, 0]
    # 3 tokens were left; the new burst caps them to 1: one more request, then a wait.
    assert [limiter.take("token", "a", RateLimit(60, 1)) for _ in range(2)] == [0, 1]
    assert all(limiter.take("token", "a", RateLimit(0, 1)) == 0 for _ in range(100))


def test_memory_stays_bounded_under_a_flood_of_addresses() -> None:
    clock = Seconds()
    limiter = RateLimiter(clock, max_buckets=1000)
    limit = RateLimit(per_minute=60, burst=5)
    for i in range(20_000):
        limiter.take("token", f"10.0.{i // 256}.{i % 256}", limit)
        clock.now += 0.001
    assert len(limiter) <= 1000
    # A client that keeps hammering is still limited: its bucket is recent, so it is kept.
    hot = [limiter.take("token", "192.0.2.1", limit) for _ in range(6)]
    assert hot[-1] > 0


async def test_protection_raises_429_with_retry_after_and_counts_it() -> None:
    storage = await open_sqlite(MEMORY)
    try:
        clock = FrozenClock()
        hits: list[str] = []
        protection = Protection(storage, clock)
        protection.on_rate_limited = hits.append
        security = SecurityConfig(rate_limits=replace(RateLimitsConfig(), login_per_ip=RateLimit(6, 2)))
        protection.rate_limit(security, "login", "192.0.2.1")
        protection.rate_limit(security, "login", "192.0.2.1")
        with pytest.raises(RateLimited) as caught:
            protection.rate_limit(security, "login", "192.0.2.1")
        assert caught.value.status == 429 and caught.value.retry_after == 10
        assert caught.value.as_dict() == {"error": "invalid_request",
                                          "error_description": "too many requests, retry after 10 seconds"}
        assert hits == ["login"]
        off = replace(security, rate_limits=replace(security.rate_limits, enabled=False))
        protection.rate_limit(off, "login", "192.0.2.1")  # disabled: no error
    finally:
        await storage.close()


# --- client addresses -------------------------------------------------------------------------------

PROXIES = ClientRemoteIP(header="X-Forwarded-For", trusted_proxies=("10.0.0.0/8", "fd00::/8"))


def lookup(headers: dict[str, str]):  # type: ignore[no-untyped-def]
    lowered = {k.lower(): v for k, v in headers.items()}
    return lambda name: lowered.get(name.lower())


@pytest.mark.parametrize(("peer", "header", "expected"), [
    # Not from a trusted proxy: the header is the client's own claim, ignored.
    ("203.0.113.5", "1.2.3.4", "203.0.113.5"),
    # From a trusted proxy: the address it appended.
    ("10.0.0.2", "198.51.100.7", "198.51.100.7"),
    # A client's forged entries sit left of what the proxies appended.
    ("10.0.0.2", "6.6.6.6, 198.51.100.7", "198.51.100.7"),
    # Through two trusted proxies.
    ("10.0.0.2", "198.51.100.7, 10.1.1.1", "198.51.100.7"),
    # Ports and brackets.
    ("10.0.0.2", "[2001:db8::1]:4711", "2001:db8::1"),
    ("10.0.0.2", "198.51.100.7:4711", "198.51.100.7"),
    # Garbage from a trusted proxy: the nearest address we can stand behind.
    ("10.0.0.2", "evil, 10.1.1.1", "10.1.1.1"),
    # Every entry a trusted proxy: the leftmost.
    ("10.0.0.2", "10.9.9.9, 10.1.1.1", "10.9.9.9"),
    # No header: the proxy itself.
    ("10.0.0.2", "", "10.0.0.2"),
    ("fd00::1", "2001:db8::7", "2001:db8::7"),
])
def test_client_address_behind_trusted_proxies(peer: str, header: str, expected: str) -> None:
    headers = {"X-Forwarded-For": header} if header else {}
    assert ClientAddress()(PROXIES, peer, lookup(headers)) == expected


def test_forwarded_header_for_parameters() -> None:
    settings = ClientRemoteIP(header="Forwarded", trusted_proxies=("10.0.0.0/8",))
    value = 'for=6.6.6.6;proto=https, for="[2001:db8::5]:80";by=10.0.0.2'
    assert ClientAddress()(settings, "10.0.0.2", lookup({"Forwarded": value})) == "2001:db8::5"


def test_without_trusted_proxies_the_header_is_never_read(caplog: pytest.LogCaptureFixture) -> None:
    settings = ClientRemoteIP(header="X-Forwarded-For", trusted_proxies=())
    addresses = ClientAddress()
    with caplog.at_level(logging.WARNING, logger="portico.security"):
        assert addresses(settings, "10.0.0.2", lookup({"X-Forwarded-For": "1.2.3.4"})) == "10.0.0.2"
        assert addresses(settings, "10.0.0.2", lookup({"X-Forwarded-For": "1.2.3.4"})) == "10.0.0.2"
    warnings = [r for r in caplog.records if "clientRemoteIP is not configured" in r.getMessage()]
    assert len(warnings) == 1  # once per process, not per request


def test_peer_of_an_asgi_scope() -> None:
    assert peer_of_scope({"client": ("192.0.2.1", 5555)}) == "192.0.2.1"
    assert peer_of_scope({"client": None}) == "" and peer_of_scope({}) == ""
