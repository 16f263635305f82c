"""The admin use-cases behind /v1/lockouts, over an in-memory store: what is listed, what each kind of
clear matches, and the requests it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from appliance.admin.lockouts import LockoutService
from appliance.admin.service import BadRequest
from appliance.clock import FrozenClock
from appliance.config.schema import BruteForceConfig, ThrottleLimit
from appliance.errors import NotFound
from appliance.security.protection import Protection
from appliance.store.base import Storage
from appliance.store.sqlite import MEMORY, open_sqlite

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CONFIG = BruteForceConfig(account=ThrottleLimit(2, timedelta(minutes=5)),
                          client_ip=ThrottleLimit(3, timedelta(minutes=5)), delay_initial=timedelta(0))


@dataclass
class FakeDeps:
    """What LockoutService reads of Deps."""

    storage: Storage
    clock: FrozenClock
    protection: Protection


@pytest.fixture
async def deps() -> AsyncIterator[FakeDeps]:
    storage = await open_sqlite(MEMORY)
    clock = FrozenClock(T0)
    yield FakeDeps(storage, clock, Protection(storage, clock))
    await storage.close()


async def fail(deps: FakeDeps, connector: str, user: str, ip: str, times: int = 1) -> None:
    async def wrong() -> None:
        return None

    for _ in range(times):
        await deps.protection.check_password(CONFIG, connector, user, ip, wrong)


async def test_list_shows_lockouts_and_with_all_the_counters(deps: FakeDeps) -> None:
    service = LockoutService(deps)  # type: ignore[arg-type]
    await fail(deps, "local", "Jane@Example.com", "192.0.2.1", times=2)
    await fail(deps, "ldap", "bob", "2001:db8::1")
    locked = await service.list()
    assert [(r["id"], r["kind"], r["subject"], r["failures"], r["locked"]) for r in locked] == [
        ("account:local:jane@example.com", "account", "jane@example.com", 2, True)]
    assert locked[0]["locked_until"] == (T0 + timedelta(minutes=5)).isoformat()
    everything = {r["id"]: r for r in await service.list(everything=True)}
    assert set(everything) == {"account:local:jane@example.com", "account:ldap:bob", "ip:192.0.2.1",
                               "ip:2001:db8::/64"}
    assert not everything["ip:192.0.2.1"]["locked"] and everything["ip:192.0.2.1"]["locked_until"] == ""
    # Once the window and the lockout are over, the records count for nothing and are not listed.
    deps.clock.advance(timedelta(minutes=16))
    assert await service.list(everything=True) == []


async def test_clear_by_user_on_every_connector_or_one(deps: FakeDeps) -> None:
    service = LockoutService(deps)  # type: ignore[arg-type]
    await fail(deps, "local", "jane", "192.0.2.1")
    await fail(deps, "ldap", "JANE", "192.0.2.2")
    await fail(deps, "ldap", "john", "192.0.2.2")
    assert (await service.clear_matching({"user": "Jane", "connector": "ldap"}))["cleared"] == [
        "account:ldap:jane"]
    assert (await service.clear_matching({"user": " jane "}))["cleared"] == ["account:local:jane"]
    with pytest.raises(NotFound):
        await service.clear_matching({"user": "jane"})


async def test_clear_by_address_matches_its_ipv6_network(deps: FakeDeps) -> None:
    service = LockoutService(deps)  # type: ignore[arg-type]
    await fail(deps, "local", "a", "2001:db8:0:1::7", times=3)
    cleared = await service.clear_matching({"ip": "2001:db8:0:1:ffff::1"})
    assert cleared["cleared"] == ["ip:2001:db8:0:1::/64"]


async def test_clear_all_and_by_id(deps: FakeDeps) -> None:
    service = LockoutService(deps)  # type: ignore[arg-type]
    await fail(deps, "local", "a", "192.0.2.1")
    await fail(deps, "local", "b", "192.0.2.1")
    assert (await service.clear("account:local:a"))["cleared"] == ["account:local:a"]
    with pytest.raises(NotFound):
        await service.clear("account:local:a")
    cleared = (await service.clear_matching({"all": True}))["cleared"]
    assert sorted(cleared) == ["account:local:b", "ip:192.0.2.1"]
    assert (await service.clear_matching({"all": True}))["cleared"] == []  # nothing left is no error


@pytest.mark.parametrize(("body", "words"), [
    ({}, "say what to clear"),
    ({"all": "yes"}, "say what to clear"),
    ({"ip": "not-an-address"}, "not an IP address"),
    ({"user": 42}, "user must be a string"),
])
async def test_bad_requests(deps: FakeDeps, body: dict[str, object], words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        await LockoutService(deps).clear_matching(body)  # type: ignore[arg-type]
