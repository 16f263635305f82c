"""The token endpoint: shared steps, the authorization_code grant and the refresh rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import bcrypt
import pytest

from appliance.clock import FrozenClock
from appliance.config.schema import (
    Config,
    ConnectorConfig,
    ExpiryConfig,
    OAuth2Config,
    RefreshTokenExpiry,
    SignerConfig,
    StaticClient,
    StorageConfig,
)
from appliance.connectors.registry import default_registry
from appliance.errors import OAuthError
from appliance.keys.manager import KeyManager
from appliance.oidc.challenge import ChallengeError
from appliance.oidc.deps import Deps, build_snapshot
from appliance.oidc.refreshstore import secret_matches
from appliance.oidc.token import TokenEndpoint
from appliance.oidc.tokens import decode_refresh_token
from appliance.store.models import AuthCode, Claims, Password, offline_session_key
from appliance.store.open import open_storage

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(10)).decode()
USER = Claims(user_id="u1", username="Ann", email="ann@example.com", email_verified=True, groups=("a",))


def make_config(refresh: RefreshTokenExpiry | None = None, **oauth2: Any) -> Config:
    return Config(
        issuer="https://id.example/dex",
        signer=SignerConfig(algorithm="ES256"),
        oauth2=OAuth2Config(**oauth2),
        expiry=ExpiryConfig(refresh_tokens=refresh or RefreshTokenExpiry()),
        static_clients=(
            StaticClient(id="app", secret="app-secret", name="App", redirect_uris=("https://app/cb",)),
            StaticClient(id="other", secret="other-secret", name="Other", redirect_uris=("https://o/cb",)),
            StaticClient(id="cli", public=True, name="CLI"),
        ),
        connectors=(ConnectorConfig(type="mockCallback", id="mock", name="Mock"),
                    ConnectorConfig(type="mockPassword", id="mockpw", name="PW",
                                    config={"username": "u", "password": "p"})),
        enable_password_db=True,
    )


class Env:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.endpoint = TokenEndpoint()

    @property
    def clock(self) -> FrozenClock:
        assert isinstance(self.deps.clock, FrozenClock)
        return self.deps.clock

    async def reconfigure(self, config: Config) -> None:
        self.deps.swap(await build_snapshot(config, default_registry(), storage=self.deps.storage))

    async def code(self, *, scopes: tuple[str, ...] = ("openid", "email", "offline_access"),
                   connector: str = "local", client: str = "app", claims: Claims = USER, **kw: Any) -> str:
        code = AuthCode(id=f"code-{len(await self.deps.storage.auth_codes.list())}-{client}",
                        client_id=client, redirect_uri=kw.pop("redirect_uri", "https://app/cb"),
                        scopes=scopes, connector_id=connector, claims=claims,
                        expiry=self.clock.now() + timedelta(minutes=30), nonce="nn", **kw)
        await self.deps.storage.auth_codes.create(code)
        return code.id

    async def call(self, form: dict[str, str], authorization: str = "") -> dict[str, object]:
        return await self.endpoint.handle(self.deps, self.deps.snapshot, form, authorization)

    async def redeem(self, code: str, client: str = "app", secret: str = "app-secret",
                     **extra: str) -> dict[str, object]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "https://app/cb",
                "client_id": client, "client_secret": secret}
        form.update(extra)
        return await self.call(form)

    async def refresh(self, token: object, client: str = "app", secret: str = "app-secret",
                      **extra: str) -> dict[str, object]:
        form = {"grant_type": "refresh_token", "refresh_token": str(token), "client_id": client,
                "client_secret": secret}
        form.update(extra)
        return await self.call(form)

    def claims(self, body: dict[str, object]) -> dict[str, Any]:
        return self.deps.keys.verify(str(body["id_token"]), now=self.clock.now())


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    storage = await open_storage(StorageConfig(type="memory"))
    clock = FrozenClock()
    keys = KeyManager(storage, clock, algorithm="ES256", rotation_period=timedelta(hours=6),
                      id_token_lifetime=timedelta(hours=24))
    await keys.rotate_if_due()
    await keys.refresh()
    await storage.passwords.create(Password(email="ann@example.com", hash=HASH, username="Ann",
                                            user_id="u1", groups=("a",)))
    snap = await build_snapshot(make_config(), default_registry(), storage=storage)
    yield Env(Deps(storage=storage, keys=keys, clock=clock, snapshot=snap))
    await storage.close()


async def oauth_error(awaitable: Any) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        await awaitable
    return caught.value


# --- shared steps ---------------------------------------------------------------------------------


async def test_unknown_missing_and_disabled_grant_types(env: Env) -> None:
    assert (await oauth_error(env.call({"grant_type": "nope"}))).error == "unsupported_grant_type"
    assert (await oauth_error(env.call({}))).error == "unsupported_grant_type"
    await env.reconfigure(make_config(grant_types=("authorization_code",)))
    code = await env.code()
    body = await env.redeem(code)
    assert "refresh_token" not in body  # the refresh grant is off, so no refresh token either
    err = await oauth_error(env.refresh("anything"))
    assert err.error == "unsupported_grant_type"


async def test_client_authentication_comes_first(env: Env) -> None:
    code = await env.code()
    err = await oauth_error(env.redeem(code, secret="wrong"))
    assert isinstance(err, ChallengeError)
    assert (err.error, err.status, err.challenge) == ("invalid_client", 401, "")
    err = await oauth_error(env.redeem(code, client="ghost"))
    assert err.error == "invalid_client"
    assert await env.redeem(code)  # the failed attempts did not spend the code


async def test_public_client_sends_no_secret(env: Env) -> None:
    code = await env.code(client="cli")
    body = await env.redeem(code, client="cli", secret="")
    assert body["token_type"] == "bearer"


# --- authorization_code ---------------------------------------------------------------------------


async def test_code_exchange_issues_tokens_and_is_single_use(env: Env) -> None:
    code = await env.code()
    body = await env.redeem(code)
    assert list(body) == ["access_token", "token_type", "expires_in", "refresh_token", "id_token"]
    claims = env.claims(body)
    assert claims["aud"] == "app" and claims["nonce"] == "nn" and claims["email"] == "ann@example.com"
    err = await oauth_error(env.redeem(code))
    assert err.error == "invalid_grant"


async def test_concurrent_redemptions_of_one_code_yield_one_token_set(env: Env) -> None:
    code = await env.code()
    results = await asyncio.gather(*(env.redeem(code) for _ in range(5)), return_exceptions=True)
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, OAuthError)]
    assert len(wins) == 1 and len(losses) == 4
    assert all(err.error == "invalid_grant" for err in losses)


async def test_concurrent_refreshes_without_a_reuse_window_yield_one_rotation(env: Env) -> None:
    token = await refresh_token(env)
    env.clock.advance(timedelta(seconds=5))
    # Time moves between readings, as it does for real: the losers began before the winner wrote, which
    # makes them a race and not a replay (one that began after the rotation would revoke the family).
    env.clock.tick = timedelta(microseconds=1)
    results = await asyncio.gather(*(env.refresh(token) for _ in range(4)), return_exceptions=True)
    wins = [r for r in results if isinstance(r, dict)]
    assert len(wins) == 1, results
    assert all(isinstance(r, OAuthError) and r.error == "invalid_grant" for r in results if r not in wins)
    assert await env.refresh(str(wins[0]["refresh_token"]))


async def test_code_checks(env: Env) -> None:
    assert (await oauth_error(env.redeem(""))).error == "invalid_request"
    assert (await oauth_error(env.redeem("nosuchcode"))).error == "invalid_grant"
    code = await env.code()
    stolen = await oauth_error(env.redeem(code, client="other", secret="other-secret"))
    assert stolen.error == "invalid_grant"
    assert (await oauth_error(env.redeem(code, redirect_uri="https://app/cb2"))).error == "invalid_grant"
    env.clock.advance(timedelta(minutes=30))
    assert (await oauth_error(env.redeem(code))).error == "invalid_grant"


async def test_refresh_token_only_with_offline_access_and_a_refreshing_connector(env: Env) -> None:
    without = await env.redeem(await env.code(scopes=("openid",)))
    assert "refresh_token" not in without
    no_openid = await env.redeem(await env.code(scopes=("email",)))
    assert "id_token" not in no_openid and "access_token" in no_openid
    mock = await env.redeem(await env.code(connector="mock"))
    assert "refresh_token" in mock


async def test_one_refresh_token_per_device_unlike_dex(env: Env) -> None:
    # Dex keeps one token per user, connector and client; Portico keeps one per login (device).
    first = (await env.redeem(await env.code()))["refresh_token"]
    second = (await env.redeem(await env.code()))["refresh_token"]
    assert len(await env.deps.storage.refresh_tokens.list()) == 2
    assert await env.refresh(first)
    assert await env.refresh(second)
    session = await env.deps.storage.offline_sessions.get(offline_session_key("u1", "local"))
    stored = await env.deps.storage.refresh_tokens.list()
    assert sorted(t.id for t in stored) == sorted(decode_refresh_token(str(t))[0] for t in (first, second))
    assert {(t.claims.user_id, t.connector_id, t.client_id) for t in stored} == {
        (session.user_id, session.conn_id, "app")}


# --- refresh_token --------------------------------------------------------------------------------


async def refresh_token(env: Env, **kw: Any) -> str:
    return str((await env.redeem(await env.code(**kw)))["refresh_token"])


async def test_refresh_rotates_and_the_old_token_is_a_replay(env: Env) -> None:
    old = await refresh_token(env)
    env.clock.advance(timedelta(seconds=10))
    body = await env.refresh(old)
    new = str(body["refresh_token"])
    assert new != old and decode_refresh_token(new)[0] == decode_refresh_token(old)[0]
    assert env.claims(body)["email"] == "ann@example.com"
    stored = (await env.deps.storage.refresh_tokens.list())[0]
    assert secret_matches(stored.token, decode_refresh_token(new)[1])
    assert decode_refresh_token(new)[1] not in stored.token  # the secret itself is never stored
    err = await oauth_error(env.refresh(old))  # replay: refused, and the token is revoked
    assert err.error == "invalid_grant"
    assert await env.deps.storage.refresh_tokens.list() == []
    assert (await oauth_error(env.refresh(new))).error == "invalid_grant"


async def test_a_replay_that_began_after_the_rotation_is_no_race(env: Env) -> None:
    # With time moving at every reading, the second use of the old secret began after the first one
    # wrote: a replay, however close, and the family goes.
    old = await refresh_token(env)
    env.clock.tick = timedelta(microseconds=1)
    new = str((await env.refresh(old))["refresh_token"])
    assert (await oauth_error(env.refresh(old))).error == "invalid_grant"
    assert await env.deps.storage.refresh_tokens.list() == []
    assert (await oauth_error(env.refresh(new))).error == "invalid_grant"


async def test_within_the_reuse_interval_the_previous_token_gets_the_current_one(env: Env) -> None:
    await env.reconfigure(make_config(RefreshTokenExpiry(reuse_interval=timedelta(seconds=30))))
    old = await refresh_token(env)
    env.clock.advance(timedelta(seconds=31))  # outside the window of the token's creation
    current = str((await env.refresh(old))["refresh_token"])
    env.clock.advance(timedelta(seconds=5))
    retried = await env.refresh(old)  # e.g. a client that lost the first answer
    assert retried["refresh_token"] == current
    again = await env.refresh(current)
    assert again["refresh_token"] == current  # used again within the window: no new rotation
    env.clock.advance(timedelta(seconds=40))
    assert (await oauth_error(env.refresh(old))).error == "invalid_grant"


async def test_rotation_can_be_disabled(env: Env) -> None:
    await env.reconfigure(make_config(RefreshTokenExpiry(disable_rotation=True)))
    token = await refresh_token(env)
    env.clock.advance(timedelta(minutes=1))
    assert (await env.refresh(token))["refresh_token"] == token
    env.clock.advance(timedelta(minutes=1))
    assert (await env.refresh(token))["refresh_token"] == token


async def test_valid_if_not_used_for(env: Env) -> None:
    await env.reconfigure(make_config(RefreshTokenExpiry(valid_if_not_used_for=timedelta(hours=1))))
    token = await refresh_token(env)
    env.clock.advance(timedelta(minutes=59))
    token = str((await env.refresh(token))["refresh_token"])  # using it restarts the idle clock
    env.clock.advance(timedelta(minutes=59))
    token = str((await env.refresh(token))["refresh_token"])
    env.clock.advance(timedelta(minutes=61))
    err = await oauth_error(env.refresh(token))
    assert err.error == "invalid_grant" and "expired" in err.description


async def test_absolute_lifetime(env: Env) -> None:
    await env.reconfigure(make_config(RefreshTokenExpiry(absolute_lifetime=timedelta(hours=2))))
    token = await refresh_token(env)
    for _ in range(3):
        env.clock.advance(timedelta(minutes=40))
        token = str((await env.refresh(token))["refresh_token"])
    env.clock.advance(timedelta(minutes=1))
    assert (await oauth_error(env.refresh(token))).error == "invalid_grant"


async def test_scope_may_narrow_but_not_widen(env: Env) -> None:
    token = await refresh_token(env)
    narrowed = await env.refresh(token, scope="openid")
    assert "email" not in env.claims(narrowed)
    err = await oauth_error(env.refresh(str(narrowed["refresh_token"]), scope="openid groups"))
    assert err.error == "invalid_scope"


async def test_refresh_belongs_to_its_client(env: Env) -> None:
    token = await refresh_token(env)
    err = await oauth_error(env.refresh(token, client="other", secret="other-secret"))
    assert err.error == "invalid_grant"
    assert await env.refresh(token)  # still good for its owner


@pytest.mark.parametrize("token", ["", "!!!", "Cg", "not-a-token"])
async def test_malformed_refresh_tokens(env: Env, token: str) -> None:
    err = await oauth_error(env.refresh(token))
    assert err.error in ("invalid_request", "invalid_grant")
    assert err.status == 400


async def test_claims_are_refreshed_from_the_connector(env: Env) -> None:
    token = await refresh_token(env, scopes=("openid", "email", "groups", "profile", "offline_access"))
    await env.deps.storage.passwords.update(
        "ann@example.com", lambda p: replace(p, groups=("a", "b"), username="Ann B."))
    env.clock.advance(timedelta(seconds=1))
    claims = env.claims(await env.refresh(token))
    assert claims["groups"] == ["a", "b"] and claims["name"] == "Ann B."
    stored = (await env.deps.storage.refresh_tokens.list())[0]
    assert stored.claims.groups == ("a", "b") and stored.claims.user_id == "u1"


async def test_a_deleted_user_cannot_refresh(env: Env) -> None:
    token = await refresh_token(env)
    await env.deps.storage.passwords.delete("ann@example.com")
    assert (await oauth_error(env.refresh(token))).error == "invalid_grant"


async def test_a_removed_connector_cannot_refresh(env: Env) -> None:
    token = await refresh_token(env, connector="mock")
    cfg = make_config()
    await env.reconfigure(replace(cfg, connectors=cfg.connectors[1:]))
    assert (await oauth_error(env.refresh(token))).error == "invalid_grant"


async def test_mock_connector_data_is_kept_on_the_offline_session(env: Env) -> None:
    await env.redeem(await env.code(connector="mock", connector_data=b"foobar"))
    session = await env.deps.storage.offline_sessions.get(offline_session_key("u1", "mock"))
    assert session.connector_data == b"foobar"
    token = (await env.deps.storage.refresh_tokens.list())[0]
    assert token.connector_data is None
