"""The brute-force counter logic with a frozen clock: windows, reservations, lockouts, delays, keys,
and Protection.check_password over an in-memory store (no server, no real sleeping)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from appliance.clock import FrozenClock
from appliance.config.schema import BruteForceConfig, ThrottleLimit
from appliance.errors import ConflictError, ConnectorError
from appliance.security import throttle as th
from appliance.security.protection import LOCKOUT_ACTION, Protection
from appliance.store.base import Storage
from appliance.store.sqlite import MEMORY, open_sqlite

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CONFIG = BruteForceConfig(
    window=timedelta(minutes=10),
    account=ThrottleLimit(3, timedelta(minutes=5)),
    client_ip=ThrottleLimit(5, timedelta(minutes=7)),
    delay_initial=timedelta(milliseconds=100),
    delay_max=timedelta(milliseconds=350),
)


# --- keys -------------------------------------------------------------------------------------------


def test_usernames_are_counted_case_and_space_insensitively() -> None:
    assert th.account_key("local", " Jane@Example.COM ") == th.account_key("local", "jane@example.com")
    assert th.account_key("local", "jane") != th.account_key("ldap", "jane")


def test_connector_ids_cannot_collide_with_usernames() -> None:
    # Without escaping, ("a:b", "c") and ("a", "b:c") would share "account:a:b:c".
    assert th.account_key("a:b", "c") != th.account_key("a", "b:c")


def test_long_usernames_get_a_bounded_key_of_their_own() -> None:
    long_a, long_b = "x" * 5000, "x" * 4999 + "y"
    key_a, key_b = th.account_key("local", long_a), th.account_key("local", long_b)
    assert len(key_a) < 200 and key_a != key_b
    assert th.account_key("local", long_a.upper()) == key_a


@pytest.mark.parametrize(("address", "subject"), [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("", ""),
    ("<local>", ""),
    ("not an address", ""),
])
def test_client_addresses_and_ipv6_networks(address: str, subject: str) -> None:
    assert th.ip_subject(address) == subject


# --- delays -----------------------------------------------------------------------------------------


def test_delay_doubles_from_the_first_failure_up_to_the_maximum() -> None:
    assert [th.delay_for(n, CONFIG) for n in range(6)] == [0.0, 0.1, 0.2, 0.35, 0.35, 0.35]
    assert th.delay_for(10**9, CONFIG) == 0.35  # no overflow on absurd counts
    assert th.delay_for(4, replace(CONFIG, delay_initial=timedelta(0))) == 0.0


# --- the pure record transitions --------------------------------------------------------------------


def _new(now: datetime = T0) -> th.LoginThrottle:
    return th.new_record("account:local:jane", th.ACCOUNT, "jane", "local", now)


def test_reserve_counts_until_the_limit_then_refuses_without_locking() -> None:
    record = _new()
    for n in (1, 2, 3):
        record = th.reserve(record, T0, CONFIG, CONFIG.account)
        assert record.failures == n and record.locked_until is None
    with pytest.raises(th.Denied):  # three attempts are in flight or failed: no fourth
        th.reserve(record, T0, CONFIG, CONFIG.account)


def test_lock_if_due_locks_at_the_limit_only() -> None:
    record = th.reserve(_new(), T0, CONFIG, CONFIG.account)
    with pytest.raises(th._Unchanged):
        th.lock_if_due(record, T0, CONFIG, CONFIG.account)
    record = replace(record, failures=3)
    locked = th.lock_if_due(record, T0 + timedelta(seconds=1), CONFIG, CONFIG.account)
    assert locked.locked_until == T0 + timedelta(minutes=5, seconds=1) and locked.lockouts == 1
    assert th.is_locked(locked, T0 + timedelta(minutes=5)) and not th.is_locked(locked, locked.locked_until)
    # Expiry (garbage collection) is the later of the window's end and the lockout's.
    assert locked.expiry == T0 + timedelta(minutes=10)


def test_a_locked_record_refuses_and_a_finished_lockout_starts_a_fresh_window() -> None:
    locked = th.lock_if_due(replace(th.reserve(_new(), T0, CONFIG, CONFIG.account), failures=3), T0, CONFIG,
                            CONFIG.account)
    with pytest.raises(th.Denied):
        th.reserve(locked, T0 + timedelta(minutes=4), CONFIG, CONFIG.account)
    after = th.reserve(locked, T0 + timedelta(minutes=5), CONFIG, CONFIG.account)
    assert (after.failures, after.locked_until, after.window_start) == (1, None, T0 + timedelta(minutes=5))
    assert after.lockouts == 1  # the history stays


def test_failures_older_than_the_window_are_forgotten() -> None:
    record = th.reserve(th.reserve(_new(), T0, CONFIG, CONFIG.account), T0, CONFIG, CONFIG.account)
    later = th.reserve(record, T0 + timedelta(minutes=10), CONFIG, CONFIG.account)
    assert later.failures == 1 and later.window_start == T0 + timedelta(minutes=10)
    inside = th.reserve(record, T0 + timedelta(minutes=9, seconds=59), CONFIG, CONFIG.account)
    assert inside.failures == 3


def test_address_failures_lock_at_their_own_limit() -> None:
    record = th.new_record("ip:192.0.2.7", th.IP, "192.0.2.7", "", T0)
    for _ in range(4):
        record = th.count_failure(record, T0, CONFIG, CONFIG.client_ip)
    assert record.failures == 4 and record.locked_until is None
    record = th.count_failure(record, T0, CONFIG, CONFIG.client_ip)
    assert record.locked_until == T0 + timedelta(minutes=7)
    with pytest.raises(th._Unchanged):  # failures while locked change nothing (no write, no extension)
        th.count_failure(record, T0 + timedelta(minutes=1), CONFIG, CONFIG.client_ip)


def test_max_failures_zero_turns_a_lockout_off() -> None:
    off = replace(CONFIG, client_ip=ThrottleLimit(0, timedelta(minutes=7)))
    record = th.new_record("ip:192.0.2.7", th.IP, "192.0.2.7", "", T0)
    for _ in range(50):
        record = th.count_failure(record, T0, off, off.client_ip)
    assert record.failures == 50 and record.locked_until is None


def test_give_back_uncounts_an_attempt_without_a_verdict() -> None:
    record = th.reserve(th.reserve(_new(), T0, CONFIG, CONFIG.account), T0, CONFIG, CONFIG.account)
    assert th.give_back(record, T0, CONFIG).failures == 1
    with pytest.raises(th._Unchanged):
        th.give_back(replace(record, failures=0), T0, CONFIG)


# --- Protection.check_password over a real (in-memory) store ----------------------------------------


class Upstream:
    """A password connector stand-in that records every check it is asked for."""

    def __init__(self, password: str = "right") -> None:
        self.password = password
        self.checked: list[str] = []
        self.fail_with: Exception | None = None

    def attempt(self, username: str, password: str) -> Callable[[], Awaitable[str | None]]:
        async def check() -> str | None:
            self.checked.append(username)
            await asyncio.sleep(0)
            if self.fail_with is not None:
                raise self.fail_with
            return f"id:{username}" if password == self.password and username.lower() == "jane" else None

        return check


class Env:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.clock = FrozenClock(T0)
        self.slept: list[float] = []
        self.lockouts: list[str] = []

        async def sleep(seconds: float) -> None:
            self.slept.append(seconds)

        self.protection = Protection(storage, self.clock, sleep=sleep)
        self.protection.on_lockout = self.lockouts.append
        self.upstream = Upstream()

    async def login(self, username: str, password: str, ip: str = "192.0.2.7",
                    config: BruteForceConfig = CONFIG) -> str | None:
        return await self.protection.check_password(config, "local", username, ip,
                                                    self.upstream.attempt(username, password))


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    storage = await open_sqlite(MEMORY)
    yield Env(storage)
    await storage.close()


async def test_a_success_answers_and_resets_the_account(env: Env) -> None:
    assert await env.login("jane", "wrong") is None
    assert await env.login("jane", "wrong") is None
    assert env.slept == [0.1, 0.2]  # progressive
    assert await env.login("Jane", "right") == "id:Jane"
    assert await env.protection.throttle.get(th.account_key("local", "jane")) is None
    # The address keeps its failures: a valid account must not wash an attacker's address clean.
    ip_record = await env.protection.throttle.get(th.ip_key("192.0.2.7"))
    assert ip_record is not None and ip_record.failures == 2


async def test_lockout_refuses_the_right_password_without_asking_the_upstream(env: Env) -> None:
    for _ in range(3):
        assert await env.login("jane", "wrong") is None
    assert env.lockouts == ["account"]
    checked = len(env.upstream.checked)
    assert await env.login("jane", "right") is None
    assert len(env.upstream.checked) == checked  # the password was never checked
    assert env.slept[-1] == 0.35  # a refusal waits as long as a failure at that count
    events = await env.storage.audit.tail()
    assert [(e.action, e.target, e.details["username"], e.details["failures"]) for e in events] == [
        (LOCKOUT_ACTION, th.account_key("local", "jane"), "jane", 3)]
    assert "wrong" not in repr(events) and "right" not in repr(events)  # never a password
    # Five minutes later the lockout is over.
    env.clock.advance(timedelta(minutes=5))
    assert await env.login("jane", "right") == "id:jane"


async def test_unknown_accounts_are_counted_and_locked_like_real_ones(env: Env) -> None:
    for _ in range(3):
        assert await env.login("nobody", "guess") is None
    record = await env.protection.throttle.get(th.account_key("local", "nobody"))
    assert record is not None and th.is_locked(record, env.clock.now())
    assert env.lockouts == ["account"]


async def test_the_address_locks_after_its_own_limit_for_every_account(env: Env) -> None:
    for name in ("a", "b", "c", "d", "e"):  # one failure each: no account reaches its limit
        assert await env.login(name, "guess", ip="198.51.100.9") is None
    assert env.lockouts == ["ip"]
    checked = len(env.upstream.checked)
    assert await env.login("jane", "right", ip="198.51.100.9") is None  # even a right password
    assert len(env.upstream.checked) == checked
    assert await env.login("jane", "right", ip="198.51.100.10") == "id:jane"  # another address is fine


async def test_an_unknown_address_is_not_counted(env: Env) -> None:
    for name in ("a", "b", "c", "d", "e", "f"):
        assert await env.login(name, "guess", ip="") is None
    assert env.lockouts == []
    assert all(r.kind == th.ACCOUNT for r in await env.storage.login_throttles.list())


async def test_an_upstream_outage_gives_the_attempt_back(env: Env) -> None:
    env.upstream.fail_with = ConnectorError("LDAP is down")
    for _ in range(5):
        with pytest.raises(ConnectorError):
            await env.login("jane", "right")
    record = await env.protection.throttle.get(th.account_key("local", "jane"))
    assert record is not None and record.failures == 0 and not th.is_locked(record, env.clock.now())
    env.upstream.fail_with = None
    assert await env.login("jane", "right") == "id:jane"


async def test_concurrent_guesses_never_exceed_the_limit(env: Env) -> None:
    results = await asyncio.gather(*(env.login("jane", f"guess{i}") for i in range(20)))
    assert results == [None] * 20
    assert len(env.upstream.checked) == 3  # exactly maxFailures passwords were tried
    record = await env.protection.throttle.get(th.account_key("local", "jane"))
    assert record is not None and th.is_locked(record, env.clock.now()) and env.lockouts.count("account") == 1


async def test_disabled_protection_only_checks(env: Env) -> None:
    off = replace(CONFIG, enabled=False)
    for _ in range(10):
        assert await env.login("jane", "wrong", config=off) is None
    assert env.slept == [] and await env.storage.login_throttles.list() == []
    assert await env.login("jane", "right", config=off) == "id:jane"


async def test_records_expire_through_garbage_collection(env: Env) -> None:
    for _ in range(3):
        await env.login("jane", "wrong")
    assert len(await env.storage.login_throttles.list()) == 2  # the account and the address
    result = await env.storage.garbage_collect(T0 + timedelta(minutes=9))
    assert result.login_throttles == 0
    result = await env.storage.garbage_collect(T0 + timedelta(minutes=10, seconds=1))
    assert result.login_throttles == 2 and await env.storage.login_throttles.list() == []


async def test_a_counter_that_cannot_be_written_under_contention_refuses_instead_of_failing(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    async def gave_up(*args: object, **kwargs: object) -> None:
        raise ConflictError("login_throttles: gave up after 100 conflicting updates")

    monkeypatch.setattr(env.protection.throttle, "reserve", gave_up)
    assert await env.login("jane", "right") is None  # refused, not a server error
    assert env.upstream.checked == []  # and no password was checked without being counted
