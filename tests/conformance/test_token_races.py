"""Conformance: the code and refresh grants under concurrency, through two instances on one database (two
connections to one SQLite file, two PostgreSQL pools; one instance for memory): single use holds, a
replay revokes, and many devices of one user never lose an offline-session entry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import bcrypt
import pytest

from appliance.clock import FrozenClock
from appliance.config.schema import Config, OAuth2Config, SignerConfig, StaticClient
from appliance.connectors.registry import default_registry
from appliance.errors import OAuthError
from appliance.keys.manager import KeyManager
from appliance.oidc.deps import Deps, build_snapshot
from appliance.oidc.revocation import claims_revoked
from appliance.oidc.token import TokenEndpoint
from appliance.oidc.tokens import decode_refresh_token
from appliance.store.base import Storage
from appliance.store.models import AuthCode, Claims, Password, offline_session_key

from .conftest import Backend

pytestmark = pytest.mark.timeout(120)

USER = Claims(user_id="u1", username="Ann", email="ann@example.com", email_verified=True)
CONFIG = Config(
    issuer="https://id.example/dex",
    signer=SignerConfig(algorithm="ES256"),
    oauth2=OAuth2Config(),
    static_clients=(StaticClient(id="app", secret="app-secret", name="App", redirect_uris=("https://app/cb",)),),
    enable_password_db=True,
)


@dataclass
class Replica:
    deps: Deps
    endpoint: TokenEndpoint

    async def call(self, **form: str) -> dict[str, Any]:
        form.update(client_id="app", client_secret="app-secret")
        return await self.endpoint.handle(self.deps, self.deps.snapshot, form, "")

    async def redeem(self, code: str) -> dict[str, Any]:
        return await self.call(grant_type="authorization_code", code=code, redirect_uri="https://app/cb")

    async def refresh(self, token: str) -> dict[str, Any]:
        return await self.call(grant_type="refresh_token", refresh_token=token)


@pytest.fixture
async def replicas(backend: Backend) -> AsyncIterator[list[Replica]]:
    clock = FrozenClock()
    made = []
    for store in (backend.storage, await backend.open()):
        keys = KeyManager(store, clock, algorithm="ES256", rotation_period=timedelta(hours=6),
                          id_token_lifetime=timedelta(hours=24))
        await keys.rotate_if_due()
        await keys.refresh()
        snap = await build_snapshot(CONFIG, default_registry(), storage=store)
        made.append(Replica(Deps(storage=store, keys=keys, clock=clock, snapshot=snap), TokenEndpoint()))
    await backend.storage.passwords.create(Password(
        email="ann@example.com", hash=bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode(), username="Ann",
        user_id="u1"))
    yield made


async def new_code(store: Storage, clock: Any, n: int) -> str:
    code = AuthCode(id=f"code-{n}", client_id="app", redirect_uri="https://app/cb",
                    scopes=("openid", "email", "offline_access"), connector_id="local", claims=USER,
                    expiry=clock.now() + timedelta(minutes=30), nonce="nn")
    await store.auth_codes.create(code)
    return code.id


def split(results: list[Any]) -> tuple[list[dict[str, Any]], list[BaseException]]:
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, OAuthError) and r.error == "invalid_grant" for r in losses), losses
    return wins, losses


async def test_a_code_redeemed_at_once_through_two_replicas_wins_once_and_revokes(
        replicas: list[Replica]) -> None:
    first = replicas[0]
    code = await new_code(first.deps.storage, first.deps.clock, 1)
    wins, losses = split(await asyncio.gather(
        *(replicas[i % 2].redeem(code) for i in range(6)), return_exceptions=True))
    assert len(wins) == 1 and len(losses) == 5
    # The losers saw a replay: what the winner got is revoked, the access token and the refresh token.
    claims = first.deps.keys.verify(wins[0]["access_token"], now=first.deps.clock.now())
    assert await claims_revoked(first.deps, claims)
    assert await first.deps.storage.refresh_tokens.list() == []
    with pytest.raises(OAuthError):
        await first.refresh(wins[0]["refresh_token"])


async def test_a_refresh_secret_used_at_once_through_two_replicas_rotates_once(
        replicas: list[Replica]) -> None:
    first = replicas[0]
    token = (await first.redeem(await new_code(first.deps.storage, first.deps.clock, 1)))["refresh_token"]
    assert isinstance(first.deps.clock, FrozenClock)
    first.deps.clock.advance(timedelta(seconds=5))
    first.deps.clock.tick = timedelta(microseconds=1)  # requests that run at once see each other's writes
    wins, losses = split(await asyncio.gather(
        *(replicas[i % 2].refresh(token) for i in range(6)), return_exceptions=True))
    assert len(wins) == 1 and len(losses) == 5
    # Losing a race is not a replay, whether the loser read the token before the winner wrote it or
    # after: the winner's new secret goes on working, through either replica.
    first.deps.clock.advance(timedelta(seconds=5))
    again = await replicas[1].refresh(wins[0]["refresh_token"])
    assert await first.refresh(again["refresh_token"])


async def test_many_devices_of_one_user_at_once_lose_no_session_entry(replicas: list[Replica]) -> None:
    first = replicas[0]
    store, clock = first.deps.storage, first.deps.clock
    assert isinstance(clock, FrozenClock)
    codes = [await new_code(store, clock, n) for n in range(8)]
    issued = await asyncio.gather(*(replicas[n % 2].redeem(code) for n, code in enumerate(codes)))
    clock.advance(timedelta(seconds=5))
    # Every device refreshes at once while two more log in: all write the same offline session.
    more = [await new_code(store, clock, n) for n in range(8, 10)]
    results = await asyncio.gather(
        *(replicas[n % 2].refresh(body["refresh_token"]) for n, body in enumerate(issued)),
        *(replicas[n % 2].redeem(code) for n, code in enumerate(more)))
    tokens = {decode_refresh_token(body["refresh_token"])[0] for body in results}
    assert await store.offline_sessions.get(offline_session_key("u1", "local"))
    stored = {token.id: token for token in await store.refresh_tokens.list()}
    assert set(stored) == tokens and len(tokens) == 10
    refreshed = {decode_refresh_token(body["refresh_token"])[0] for body in results[:8]}
    assert all(stored[token_id].last_used == clock.now() for token_id in refreshed)
