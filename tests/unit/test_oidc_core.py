"""The snapshot and Deps, discovery, issuer URLs, scopes, and the approval and response steps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from appliance.clock import FrozenClock
from appliance.config.schema import (
    Config,
    ConnectorConfig,
    OAuth2Config,
    SignerConfig,
    StaticClient,
    StaticPassword,
    StorageConfig,
)
from appliance.connectors.base import Identity
from appliance.connectors.registry import default_registry
from appliance.errors import DisplayedError, NotFound
from appliance.keys.manager import KeyManager
from appliance.oidc import approval as ap
from appliance.oidc import scopes as sc
from appliance.oidc.deps import Deps, SnapshotError, build_snapshot, close_snapshot
from appliance.oidc.login import finalize_login
from appliance.oidc.urls import IssuerURL
from appliance.store.models import AuthRequest, Client, OfflineSession, Password, offline_session_key
from appliance.store.open import open_storage


def make_config(**kw: Any) -> Config:
    base: dict[str, Any] = {
        "issuer": "https://id.example/dex",
        "signer": SignerConfig(algorithm="ES256"),
        "static_clients": (StaticClient(id="app", secret="s", name="App", redirect_uris=("https://a/cb",)),),
        "static_passwords": (StaticPassword(email="Ann@Example.com", hash="$2b$10$x", user_id="u1"),),
        "enable_password_db": True,
        "connectors": (ConnectorConfig(type="mockCallback", id="mock", name="Mock"),),
    }
    base.update(kw)
    return Config(**base)


@pytest.fixture
async def deps() -> AsyncIterator[Deps]:
    storage = await open_storage(StorageConfig(type="memory"))
    clock = FrozenClock()
    keys = KeyManager(storage, clock, algorithm="ES256", rotation_period=timedelta(hours=6),
                      id_token_lifetime=timedelta(hours=24))
    snap = await build_snapshot(make_config(), default_registry(), storage=storage)
    yield Deps(storage=storage, keys=keys, clock=clock, snapshot=snap)
    await storage.close()


# --- snapshot and Deps ----------------------------------------------------------------------------


async def test_snapshot_contents(deps: Deps) -> None:
    snap = deps.snapshot
    assert list(snap.connectors) == ["mock", "local"]  # local last, as Dex adds it
    assert (snap.connectors["local"].type, snap.connectors["local"].name) == ("local", "Email")
    assert snap.connectors["mock"].name == "Mock"
    assert snap.clients["app"].redirect_uris == ("https://a/cb",)
    assert "ann@example.com" in snap.passwords
    with pytest.raises(TypeError):
        snap.clients["x"] = Client(id="x")  # type: ignore[index]


async def test_no_local_connector_without_the_password_db() -> None:
    snap = await build_snapshot(make_config(enable_password_db=False), default_registry())
    assert list(snap.connectors) == ["mock"]


async def test_bad_connectors_fail_the_snapshot() -> None:
    with pytest.raises(SnapshotError, match="unknown type"):
        await build_snapshot(make_config(connectors=(ConnectorConfig(type="ldapx", id="l", name="L"),)),
                             default_registry())
    with pytest.raises(SnapshotError, match="no username"):
        no_user = ConnectorConfig(type="mockPassword", id="p", name="P")
        await build_snapshot(make_config(connectors=(no_user,)), default_registry())
    with pytest.raises(SnapshotError, match="connector types"):
        await build_snapshot(make_config())  # connectors configured, none handed in
    bare = await build_snapshot(make_config(connectors=(), enable_password_db=False))
    assert dict(bare.connectors) == {}


async def test_client_lookup_static_first_then_storage(deps: Deps) -> None:
    await deps.storage.clients.create(Client(id="app", secret="stored-secret"))
    await deps.storage.clients.create(Client(id="api", secret="x"))
    assert (await deps.get_client(deps.snapshot, "app")).secret == "s"  # the config wins
    assert (await deps.get_client(deps.snapshot, "api")).secret == "x"
    with pytest.raises(NotFound):
        await deps.get_client(deps.snapshot, "ghost")
    assert await deps.find_client(deps.snapshot, "") is None


async def test_password_lookup_is_case_insensitive_static_first(deps: Deps) -> None:
    await deps.storage.passwords.create(Password(email="bob@example.com", hash="h", user_id="u2"))
    await deps.storage.passwords.create(Password(email="ann@example.com", hash="h", user_id="shadow"))
    found = await deps.get_password(deps.snapshot, "ANN@example.COM")
    assert found is not None and found.user_id == "u1"
    bob = await deps.get_password(deps.snapshot, " Bob@Example.com ")
    assert bob is not None and bob.user_id == "u2"
    assert await deps.get_password(deps.snapshot, "nobody@example.com") is None


async def test_swap_replaces_the_snapshot_in_one_step(deps: Deps) -> None:
    first = deps.snapshot
    second = await build_snapshot(make_config(connectors=()), default_registry())
    assert deps.swap(second) is first
    assert deps.snapshot is second
    await close_snapshot(first)  # nothing to close in the mocks; must not raise


# --- discovery and URLs ---------------------------------------------------------------------------


def test_issuer_urls() -> None:
    issuer = IssuerURL.parse("https://id.example/dex/")
    assert issuer.path == "/dex" and issuer.secure
    assert issuer.abs_path("/token") == "/dex/token"
    assert issuer.abs_url("/auth", "local", "login") == "https://id.example/dex/auth/local/login"
    root = IssuerURL.parse("http://127.0.0.1:5556")
    assert root.path == "" and root.abs_path("/keys") == "/keys" and not root.secure
    with pytest.raises(ValueError):
        IssuerURL.parse("id.example/dex")


async def test_discovery_follows_the_config() -> None:
    snap = await build_snapshot(make_config(connectors=(), enable_password_db=False))
    doc = json.loads(snap.discovery)
    assert doc["issuer"] == "https://id.example/dex"
    assert doc["authorization_endpoint"] == "https://id.example/dex/auth"
    assert doc["device_authorization_endpoint"] == "https://id.example/dex/device/code"
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
    assert doc["grant_types_supported"] == sorted([
        "authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:token-exchange"])
    implicit = await build_snapshot(make_config(
        connectors=(), enable_password_db=False,
        oauth2=OAuth2Config(response_types=("code", "id_token", "token"), password_connector="local")))
    doc = json.loads(implicit.discovery)
    assert "implicit" in doc["grant_types_supported"] and "password" in doc["grant_types_supported"]
    assert doc["response_types_supported"] == ["code", "id_token", "token"]
    assert implicit.response_types == frozenset({"code", "id_token", "token"})


# --- scopes ---------------------------------------------------------------------------------------


def test_audience_and_azp() -> None:
    assert sc.audience("app", ["openid"]) == (["app"], "")
    assert sc.audience("app", ["openid", "audience:server:client_id:api"]) == (["api", "app"], "app")
    assert sc.audience("app", ["audience:server:client_id:app"]) == (["app"], "")
    assert sc.connector_scopes(["groups"]).groups and not sc.connector_scopes(["groups"]).offline_access
    assert sc.describe(["openid", "email", "offline_access", "bogus"]) == [
        "Have offline access", "View your email address"]


# --- approval and the authorization response -------------------------------------------------------


async def logged_in(deps: Deps, **kw: Any) -> AuthRequest:
    base: dict[str, Any] = {
        "id": "req1", "client_id": "app", "response_types": ("code",), "scopes": ("openid", "offline_access"),
        "redirect_uri": "https://a/cb?keep=1", "expiry": deps.clock.now() + timedelta(minutes=5),
        "state": "st", "nonce": "n", "connector_id": "mock", "hmac_key": b"k" * 32,
    }
    base.update(kw)
    req = AuthRequest(**base)
    await deps.storage.auth_requests.create(req)
    identity = Identity(user_id="u9", username="U", email="u@x", email_verified=True, connector_data=b"cd")
    return await finalize_login(deps, deps.snapshot, req, identity, deps.snapshot.connectors["mock"])


async def test_finalize_login_binds_the_identity(deps: Deps) -> None:
    req = await logged_in(deps)
    assert req.logged_in and req.claims is not None and req.claims.user_id == "u9"
    assert req.connector_data == b"cd"
    session = await deps.storage.offline_sessions.get(offline_session_key("u9", "mock"))
    assert session == OfflineSession("u9", "mock", b"cd")


async def test_approval_hmac(deps: Deps) -> None:
    req = await logged_in(deps)
    mac = ap.approval_hmac(req)
    assert "=" not in mac and len(mac) == 43
    assert (await ap.load_approval(deps, deps.snapshot, req.id, mac)).id == req.id
    for wrong in ("", mac[:-1] + ("A" if mac[-1] != "A" else "B"), "ü"):
        with pytest.raises(DisplayedError):
            await ap.load_approval(deps, deps.snapshot, req.id, wrong)
    assert ap.approval_url(deps.snapshot, req) == f"/dex/approval?req={req.id}&hmac={mac}"


async def test_approval_needs_a_logged_in_request(deps: Deps) -> None:
    req = AuthRequest(id="r2", client_id="app", response_types=("code",), scopes=("openid",),
                      redirect_uri="https://a/cb", expiry=deps.clock.now() + timedelta(minutes=1),
                      hmac_key=b"k" * 32)
    await deps.storage.auth_requests.create(req)
    with pytest.raises(DisplayedError):
        await ap.load_approval(deps, deps.snapshot, req.id, ap.approval_hmac(req))


async def test_skip_approval_and_forced_approval(deps: Deps) -> None:
    req = await logged_in(deps)
    assert ap.needs_approval(deps.snapshot, req)  # the default asks
    skipping = await build_snapshot(make_config(oauth2=OAuth2Config(skip_approval_screen=True)),
                                    default_registry())
    assert not ap.needs_approval(skipping, req)
    forced = AuthRequest(**{**req.__dict__, "force_approval_prompt": True})
    assert ap.needs_approval(skipping, forced)


async def test_complete_issues_a_single_use_code(deps: Deps) -> None:
    req = await logged_in(deps)
    result = await ap.complete(deps, deps.snapshot, req)
    assert result.redirect.startswith("https://a/cb?keep=1&code=") and result.redirect.endswith("&state=st")
    code_id = result.redirect.split("code=")[1].split("&")[0]
    code = await deps.storage.auth_codes.get(code_id)
    assert code.expiry == deps.clock.now() + timedelta(minutes=30)
    assert code.claims == req.claims and code.nonce == "n" and code.connector_data == b"cd"
    with pytest.raises(NotFound):
        await deps.storage.auth_requests.get(req.id)
    with pytest.raises(DisplayedError):
        await ap.complete(deps, deps.snapshot, req)  # the request is spent


async def test_complete_refuses_an_expired_request(deps: Deps) -> None:
    req = await logged_in(deps)
    assert isinstance(deps.clock, FrozenClock)
    deps.clock.advance(timedelta(minutes=6))
    with pytest.raises(DisplayedError):
        await ap.complete(deps, deps.snapshot, req)


async def test_oob_shows_the_code(deps: Deps) -> None:
    req = await logged_in(deps, redirect_uri="urn:ietf:wg:oauth:2.0:oob")
    result = await ap.complete(deps, deps.snapshot, req)
    assert result.redirect == "" and result.oob_code
    assert (await deps.storage.auth_codes.get(result.oob_code)).redirect_uri == "urn:ietf:wg:oauth:2.0:oob"


async def test_implicit_response_goes_in_the_fragment(deps: Deps) -> None:
    await deps.keys.rotate_if_due()
    await deps.keys.refresh()
    req = await logged_in(deps, response_types=("id_token", "token"), redirect_uri="https://a/cb")
    result = await ap.complete(deps, deps.snapshot, req)
    assert result.redirect.startswith("https://a/cb#")
    fragment = dict(item.split("=", 1) for item in result.redirect.split("#", 1)[1].split("&"))
    assert {"access_token", "token_type", "expires_in", "state", "id_token"} <= set(fragment)
    assert await deps.storage.auth_codes.list() == []
    claims = deps.keys.verify(fragment["id_token"], now=deps.clock.now())
    assert claims["nonce"] == "n" and "at_hash" in claims


async def test_deny_spends_the_request(deps: Deps) -> None:
    req = await logged_in(deps)
    err = await ap.deny(deps, req)
    assert err.error.error == "access_denied" and err.state == "st"
    with pytest.raises(NotFound):
        await deps.storage.auth_requests.get(req.id)
