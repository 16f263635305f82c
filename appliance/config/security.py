"""The `security` section of the config file (Portico's own): brute-force protection and rate limits."""

from __future__ import annotations

from datetime import timedelta

from appliance.config.schema import (
    BruteForceConfig,
    RateLimit,
    RateLimitsConfig,
    SecurityConfig,
    ThrottleLimit,
)
from appliance.config.yamlpos import Fields, Reader

__all__ = ["MAX_DELAY", "read_security"]

# A delay longer than this outlasts the patience of clients (and of many proxies' read timeouts).
MAX_DELAY = timedelta(seconds=60)
_MAX_FAILURES = 1_000_000
_MAX_PER_MINUTE = 10_000_000
_MAX_BURST = 1_000_000


def read_security(r: Reader, top: Fields) -> SecurityConfig:
    """security {bruteForce, rateLimits}; every key optional, defaults on (see docs/configuration.md)."""
    f = r.section(top, "security", ("bruteForce", "rateLimits"))
    return SecurityConfig(brute_force=_brute_force(r, f), rate_limits=_rate_limits(r, f))


def _brute_force(r: Reader, parent: Fields) -> BruteForceConfig:
    d = BruteForceConfig()
    f = r.section(parent, "bruteForce", ("enabled", "window", "account", "clientIP", "delay"))
    enabled = r.boolean(f, "enabled")
    window = _duration(r, f, "window", d.window, zero_ok=False)
    delay = r.section(f, "delay", ("initial", "max"))
    initial = _duration(r, delay, "initial", d.delay_initial, zero_ok=True)
    maximum = _duration(r, delay, "max", d.delay_max, zero_ok=True)
    for key, value in (("initial", initial), ("max", maximum)):
        if value > MAX_DELAY:
            r.error(delay.child(key), delay.value(key), f"must be at most {MAX_DELAY.seconds}s: a longer "
                    "delay outlasts the clients' timeouts")
    if initial > maximum and delay.has("initial"):
        r.error(delay.child("initial"), delay.value("initial"), "initial is longer than max")
    return BruteForceConfig(
        enabled=d.enabled if enabled is None else enabled,
        window=window,
        account=_limit(r, f, "account", d.account),
        client_ip=_limit(r, f, "clientIP", d.client_ip),
        delay_initial=min(initial, MAX_DELAY),
        delay_max=min(max(maximum, initial), MAX_DELAY),
    )


def _limit(r: Reader, parent: Fields, key: str, default: ThrottleLimit) -> ThrottleLimit:
    """{maxFailures, lockoutDuration}; maxFailures 0 turns the lockout of this level off."""
    f = r.section(parent, key, ("maxFailures", "lockoutDuration"))
    failures = r.integer(f, "maxFailures")
    if failures is not None and not 0 <= failures <= _MAX_FAILURES:
        r.error(f.child("maxFailures"), f.value("maxFailures"),
                f"{failures} is out of range 0..{_MAX_FAILURES}")
        failures = None
    return ThrottleLimit(
        max_failures=default.max_failures if failures is None else failures,
        lockout_duration=_duration(r, f, "lockoutDuration", default.lockout_duration, zero_ok=False),
    )


def _rate_limits(r: Reader, parent: Fields) -> RateLimitsConfig:
    d = RateLimitsConfig()
    f = r.section(parent, "rateLimits", ("enabled", "token", "deviceCode", "login"))
    enabled = r.boolean(f, "enabled")
    token = r.section(f, "token", ("perIP", "perClient"))
    device = r.section(f, "deviceCode", ("perIP",))
    login = r.section(f, "login", ("perIP",))
    return RateLimitsConfig(
        enabled=d.enabled if enabled is None else enabled,
        token_per_ip=_bucket(r, token, "perIP", d.token_per_ip),
        token_per_client=_bucket(r, token, "perClient", d.token_per_client),
        device_code_per_ip=_bucket(r, device, "perIP", d.device_code_per_ip),
        login_per_ip=_bucket(r, login, "perIP", d.login_per_ip),
    )


def _bucket(r: Reader, parent: Fields, key: str, default: RateLimit) -> RateLimit:
    """{requestsPerMinute, burst}; requestsPerMinute 0 turns this limit off."""
    f = r.section(parent, key, ("requestsPerMinute", "burst"))
    per_minute = r.integer(f, "requestsPerMinute")
    if per_minute is not None and not 0 <= per_minute <= _MAX_PER_MINUTE:
        r.error(f.child("requestsPerMinute"), f.value("requestsPerMinute"),
                f"{per_minute} is out of range 0..{_MAX_PER_MINUTE}")
        per_minute = None
    burst = r.integer(f, "burst")
    if burst is not None and not 1 <= burst <= _MAX_BURST:
        r.error(f.child("burst"), f.value("burst"), f"{burst} is out of range 1..{_MAX_BURST}")
        burst = None
    return RateLimit(
        per_minute=default.per_minute if per_minute is None else per_minute,
        burst=default.burst if burst is None else burst,
    )


def _duration(r: Reader, f: Fields, key: str, default: timedelta, *, zero_ok: bool) -> timedelta:
    value = r.duration(f, key)
    if value is None:
        return default
    if value == timedelta(0) and not zero_ok:
        r.error(f.child(key), f.value(key), "must be longer than 0s")
        return default
    return value
