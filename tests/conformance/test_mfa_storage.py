"""The second factors' collection (user_mfa) on every backend: round trip, keys, single use under races."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from appliance.errors import AlreadyExists, NotFound
from appliance.store.base import Storage
from appliance.store.models import AuthRequest, BrowserSession, Claims, Client, TOTPSecret, UserMFA, mfa_key

from .conftest import Backend
from .samples import ODD

T0 = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def sample(user: str = "user-1", connector: str = "local") -> UserMFA:
    return UserMFA(
        user_id=user,
        connector_id=connector,
        totp={
            "totp": TOTPSecret(secret="JBSWY3DPEHPK3PXP" * 2, created_at=T0, confirmed=True,
                               last_step=58_745_123, recovery=("a" * 64, "b" * 64), failures=3,
                               blocked_until=T0 + timedelta(minutes=15)),
            f"other {ODD}": TOTPSecret(secret="GEZDGNBVGY3TQOJQ", created_at=T0),
        },
        email=f"user@example.com {ODD}",
    )


async def test_round_trip_with_every_field(storage: Storage) -> None:
    stored = sample()
    await storage.user_mfa.create(stored)
    got = await storage.user_mfa.get(mfa_key("user-1", "local"))
    assert got == stored
    assert isinstance(got.totp["totp"], TOTPSecret)
    assert got.totp["totp"].blocked_until == T0 + timedelta(minutes=15)
    with pytest.raises(AlreadyExists):
        await storage.user_mfa.create(sample())


async def test_keyed_by_user_and_connector(storage: Storage) -> None:
    await storage.user_mfa.create(sample("u", "local"))
    await storage.user_mfa.create(sample("u", "ldap"))
    await storage.user_mfa.create(sample("v", "local"))
    assert sorted((m.user_id, m.connector_id) for m in await storage.user_mfa.list()) == [
        ("u", "ldap"), ("u", "local"), ("v", "local")]
    await storage.user_mfa.delete(mfa_key("u", "local"))
    with pytest.raises(NotFound):
        await storage.user_mfa.get(mfa_key("u", "local"))
    assert (await storage.user_mfa.get(mfa_key("u", "ldap"))).user_id == "u"


async def test_secret_stays_out_of_repr() -> None:
    text = repr(sample())
    assert "JBSWY3DPEHPK3PXP" not in text and "a" * 64 not in text


async def test_new_fields_of_older_kinds_round_trip(storage: Storage) -> None:
    claims = Claims(user_id="u1", email="u1@example.com")
    request = AuthRequest(id="areq-mfa", client_id="c", response_types=("code",), scopes=("openid",),
                          redirect_uri="https://a/cb", expiry=T0, claims=claims, mfa_pending=("b",),
                          mfa_done=("a",), mfa_failures=2)
    await storage.auth_requests.create(request)
    assert await storage.auth_requests.get("areq-mfa") == request
    session = BrowserSession(id="s1", secret_hash="h", connector_id="local", claims=claims, auth_time=T0,
                             expiry=T0 + timedelta(hours=1), last_active=T0, mfa=("totp",))
    await storage.browser_sessions.create(session)
    assert (await storage.browser_sessions.get("s1")).mfa == ("totp",)
    for chain in (None, (), ("totp",)):
        client = Client(id=f"c-{chain!r}", mfa_chain=chain)
        await storage.clients.create(client)
        assert (await storage.clients.get(client.id)).mfa_chain == chain


async def test_a_time_step_is_taken_once_under_concurrency(backend: Backend) -> None:
    """Two replicas check the same code at once: compare-and-swap lets exactly one of them record it."""
    first = backend.storage
    await first.user_mfa.create(dataclasses.replace(sample(), totp={
        "totp": TOTPSecret(secret="S", created_at=T0, confirmed=True, last_step=10)}))
    stores = [first, await backend.open()]
    accepted: list[int] = []

    def take(old: UserMFA) -> UserMFA:
        sec = old.totp["totp"]
        if sec.last_step >= 11:
            raise ValueError("replay")
        return dataclasses.replace(old, totp={"totp": dataclasses.replace(sec, last_step=11)})

    async def attempt(store: Storage) -> None:
        try:
            await store.user_mfa.update(mfa_key("user-1", "local"), take)
            accepted.append(1)
        except ValueError:
            pass

    await asyncio.gather(*(attempt(stores[i % 2]) for i in range(8)))
    assert accepted == [1]
    assert (await first.user_mfa.get(mfa_key("user-1", "local"))).totp["totp"].last_step == 11
