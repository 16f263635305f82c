"""The `security` section: secure defaults, every key read, every problem with its key path and line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from appliance.config.load import parse_config
from appliance.config.schema import Config, Problem, RateLimit, ThrottleLimit

BASE = """\
issuer: http://127.0.0.1:5556/dex
storage: {type: memory}
web: {http: "127.0.0.1:5556"}
"""


def run(text: str) -> tuple[Config | None, list[Problem]]:
    return parse_config(BASE + text, source="t.yaml", env={})


def problems_of(text: str) -> list[tuple[str, str, int, str]]:
    _, problems = run(text)
    return [(p.severity, p.path, p.line, p.message) for p in problems]


def test_protection_is_on_by_default() -> None:
    config, problems = run("")
    assert problems == [] and config is not None
    bf, rl = config.security.brute_force, config.security.rate_limits
    assert bf.enabled and rl.enabled
    assert bf.account.max_failures > 0 and bf.client_ip.max_failures > bf.account.max_failures
    assert bf.delay_initial > timedelta(0) and bf.delay_max >= bf.delay_initial
    for limit in (rl.token_per_ip, rl.token_per_client, rl.device_code_per_ip, rl.login_per_ip):
        assert limit.per_minute > 0 and limit.burst > 0


def test_every_key_is_read() -> None:
    config, problems = run("""\
security:
  bruteForce:
    enabled: true
    window: 30m
    account: {maxFailures: 4, lockoutDuration: 1h}
    clientIP: {maxFailures: 0, lockoutDuration: 2m}
    delay: {initial: 250ms, max: 2s}
  rateLimits:
    enabled: false
    token:
      perIP: {requestsPerMinute: 100, burst: 7}
      perClient: {requestsPerMinute: 0}
    deviceCode: {perIP: {burst: 3}}
    login: {perIP: {requestsPerMinute: 12, burst: 2}}
""")
    assert problems == [] and config is not None
    bf, rl = config.security.brute_force, config.security.rate_limits
    assert bf.window == timedelta(minutes=30)
    assert bf.account == ThrottleLimit(4, timedelta(hours=1))
    assert bf.client_ip == ThrottleLimit(0, timedelta(minutes=2))
    assert (bf.delay_initial, bf.delay_max) == (timedelta(milliseconds=250), timedelta(seconds=2))
    assert not rl.enabled
    assert rl.token_per_ip == RateLimit(100, 7)
    assert rl.token_per_client.per_minute == 0
    assert rl.device_code_per_ip.burst == 3 and rl.device_code_per_ip.per_minute == 60  # the rest defaults
    assert rl.login_per_ip == RateLimit(12, 2)


def test_keys_match_case_insensitively_as_everywhere_else() -> None:
    config, problems = run("security:\n  bruteforce:\n    enabled: false\n")
    assert problems == [] and config is not None and not config.security.brute_force.enabled
    config, problems = run("Security:\n  RateLimits:\n    Login:\n      PerIP: {RequestsPerMinute: 9}\n")
    assert problems == [] and config is not None and config.security.rate_limits.login_per_ip.per_minute == 9


@pytest.mark.parametrize(("text", "path", "line", "words"), [
    ("security:\n  bruteForce:\n    window: 0s\n", "security.bruteForce.window", 6, "longer than 0s"),
    ("security:\n  bruteForce:\n    window: 1d\n", "security.bruteForce.window", 6, "1d"),
    ("security:\n  bruteForce:\n    account: {maxFailures: -1}\n", "security.bruteForce.account.maxFailures",
     6, "out of range"),
    ("security:\n  bruteForce:\n    clientIP: {lockoutDuration: 0s}\n",
     "security.bruteForce.clientIP.lockoutDuration", 6, "longer than 0s"),
    ("security:\n  bruteForce:\n    delay: {max: 5m}\n", "security.bruteForce.delay.max", 6, "at most 60s"),
    ("security:\n  bruteForce:\n    delay: {initial: 3s, max: 1s}\n", "security.bruteForce.delay.initial", 6,
     "longer than max"),
    ("security:\n  bruteForce:\n    enabled: yes please\n", "security.bruteForce.enabled", 6,
     "true or false"),
    ("security:\n  rateLimits:\n    token:\n      perIP: {burst: 0}\n",
     "security.rateLimits.token.perIP.burst", 7, "out of range 1.."),
    ("security:\n  rateLimits:\n    login:\n      perIP: {requestsPerMinute: many}\n",
     "security.rateLimits.login.perIP.requestsPerMinute", 7, "integer"),
    ("security:\n  rateLimits:\n    logins: {}\n", "security.rateLimits.logins", 6, "login"),
    ("security:\n  bruteforce:\n    maxFailure: 3\n", "security.bruteForce.maxFailure", 6, "unknown key"),
])
def test_problems_name_the_key_and_the_line(text: str, path: str, line: int, words: str) -> None:
    found = problems_of(text)
    assert len(found) == 1, found
    severity, got_path, got_line, message = found[0]
    assert (severity, got_path, got_line) == ("error", path, line)
    assert words in message


def test_several_problems_are_reported_at_once() -> None:
    found = problems_of("security:\n  bruteForce:\n    window: 0s\n  rateLimits:\n    enabled: 3\n")
    assert {(p[1], p[2]) for p in found} == {("security.bruteForce.window", 6),
                                             ("security.rateLimits.enabled", 8)}
