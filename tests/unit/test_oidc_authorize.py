"""The /auth checks table: each check, its error and whether it may redirect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from appliance.clock import FrozenClock
from appliance.config.schema import (
    Config,
    ConnectorConfig,
    ExpiryConfig,
    OAuth2Config,
    PKCEConfig,
    SignerConfig,
    StaticClient,
    StorageConfig,
)
from appliance.connectors.registry import default_registry
from appliance.errors import DisplayedError, RedirectError
from appliance.keys.manager import KeyManager
from appliance.oidc import authorize as az
from appliance.oidc.deps import Deps, build_snapshot
from appliance.store.models import Client
from appliance.store.open import open_storage

CLIENTS = (
    StaticClient(id="app", secret="s", name="App", redirect_uris=("https://app.example/cb",)),
    StaticClient(id="cli", public=True, name="CLI"),
    StaticClient(id="spa", public=True, name="SPA", redirect_uris=("https://spa.example/cb",)),
    StaticClient(id="api", secret="s", name="API", trusted_peers=("app",)),
)


def config(**oauth2: object) -> Config:
    return Config(
        issuer="https://id.example/dex",
        oauth2=OAuth2Config(**oauth2),  # type: ignore[arg-type]
        signer=SignerConfig(algorithm="ES256"),
        expiry=ExpiryConfig(auth_requests=timedelta(minutes=10)),
        static_clients=CLIENTS,
        connectors=(ConnectorConfig(type="mockCallback", id="mock", name="Mock"),),
    )


@pytest.fixture
async def deps() -> AsyncIterator[Deps]:
    storage = await open_storage(StorageConfig(type="memory"))
    clock = FrozenClock()
    keys = KeyManager(storage, clock, algorithm="ES256", rotation_period=timedelta(hours=6),
                      id_token_lifetime=timedelta(hours=24))
    snap = await build_snapshot(config(), default_registry(), storage=storage)
    yield Deps(storage=storage, keys=keys, clock=clock, snapshot=snap)
    await storage.close()


def params(**overrides: str) -> dict[str, str]:
    base = {"client_id": "app", "redirect_uri": "https://app.example/cb", "response_type": "code",
            "scope": "openid email", "state": "xyz", "nonce": "n"}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


async def redirected(deps: Deps, snap_config: Config | None = None, **overrides: str) -> RedirectError:
    snap = deps.snapshot if snap_config is None else await build_snapshot(snap_config, default_registry())
    with pytest.raises(RedirectError) as caught:
        await az.validate_authorize(deps, snap, params(**overrides))
    return caught.value


def test_the_checks_run_in_a_fixed_order() -> None:
    assert [step.__name__ for step in az.CHECKS] == [
        "check_client", "check_redirect_uri", "check_connector_id", "check_request_object",
        "check_pkce", "check_scopes", "check_response_type", "check_prompt", "check_session",
    ]


async def test_a_valid_request(deps: Deps) -> None:
    req = await az.validate_authorize(deps, deps.snapshot, params(scope="openid  email   profile"))
    assert req.client.id == "app"
    assert req.scopes == ("openid", "email", "profile")  # extra whitespace tolerated
    assert req.response_types == ("code",)
    assert req.pkce.code_challenge == "" and req.pkce.code_challenge_method == ""
    assert req.force_approval is False


async def test_unknown_client_is_displayed_not_redirected(deps: Deps) -> None:
    with pytest.raises(DisplayedError):
        await az.validate_authorize(deps, deps.snapshot, params(client_id="nobody"))
    with pytest.raises(DisplayedError):
        await az.validate_authorize(deps, deps.snapshot, params(client_id=""))


async def test_client_from_storage_when_not_static(deps: Deps) -> None:
    await deps.storage.clients.create(Client(id="stored", secret="x", redirect_uris=("https://s.example/cb",)))
    req = await az.validate_authorize(deps, deps.snapshot, params(client_id="stored",
                                                                  redirect_uri="https://s.example/cb"))
    assert req.client.id == "stored"


async def test_redirect_uri_mismatch_is_displayed_even_with_other_errors(deps: Deps) -> None:
    with pytest.raises(DisplayedError) as caught:
        await az.validate_authorize(deps, deps.snapshot, params(redirect_uri="https://app.example/cb/",
                                                                scope="bogus"))
    assert "redirect_uri" in caught.value.message


@pytest.mark.parametrize(("client_id", "uri", "ok"), [
    ("app", "https://app.example/cb", True),
    ("app", "https://APP.example/cb", False),  # exact string match
    ("app", "http://localhost:8000/cb", False),  # confidential: registered URIs only
    ("app", "urn:ietf:wg:oauth:2.0:oob", False),
    ("cli", "urn:ietf:wg:oauth:2.0:oob", True),
    ("cli", "/device/callback", True),
    ("cli", "http://localhost/cb", True),
    ("cli", "http://localhost:45321/any/path?x=1", True),
    ("cli", "http://127.0.0.1:8080/cb", True),
    ("cli", "http://127.9.9.9:8080/cb", True),
    ("cli", "http://[::1]:8080/cb", True),
    ("cli", "https://localhost:8080/cb", False),  # loopback means http
    ("cli", "http://localhost.evil.example/cb", False),
    ("cli", "http://10.0.0.1/cb", False),
    ("cli", "http://localhost:notaport/cb", False),
    ("spa", "http://localhost:8080/cb", False),  # a public client with registered URIs: only those
    ("spa", "https://spa.example/cb", True),
])
async def test_redirect_uri_rules(deps: Deps, client_id: str, uri: str, ok: bool) -> None:
    client = await deps.get_client(deps.snapshot, client_id)
    assert az.redirect_uri_allowed(client, uri) is ok


async def test_device_callback_becomes_the_issuer_path(deps: Deps) -> None:
    req = await az.validate_authorize(deps, deps.snapshot, params(client_id="cli",
                                                                  redirect_uri="/device/callback"))
    assert req.redirect_uri == "/dex/device/callback"


async def test_connector_id_must_exist(deps: Deps) -> None:
    err = await redirected(deps, connector_id="nope")
    assert err.error.error == "invalid_request" and err.state == "xyz"
    assert err.redirect_uri == "https://app.example/cb"
    ok = await az.validate_authorize(deps, deps.snapshot, params(connector_id="mock"))
    assert ok.connector_id == "mock"


async def test_connector_id_must_be_allowed_for_the_client(deps: Deps) -> None:
    cfg = config()
    limited = Config(**{**cfg.__dict__, "static_clients": (
        StaticClient(id="app", secret="s", name="App", redirect_uris=("https://app.example/cb",),
                     allowed_connectors=("other",)),)})
    err = await redirected(deps, limited, connector_id="mock")
    assert err.error.error == "invalid_request"


async def test_request_objects_are_not_supported(deps: Deps) -> None:
    assert (await redirected(deps, request="eyJ...")).error.error == "request_not_supported"


async def test_pkce_method_defaults_to_plain_and_is_checked(deps: Deps) -> None:
    plain = "p" * 43  # a plain challenge is the verifier itself: 43 to 128 characters (RFC 7636 4.1)
    req = await az.validate_authorize(deps, deps.snapshot, params(code_challenge=plain))
    assert (req.pkce.code_challenge, req.pkce.code_challenge_method) == (plain, "plain")
    s256 = await az.validate_authorize(deps, deps.snapshot, params(code_challenge="E" * 43,
                                                                   code_challenge_method="S256"))
    assert s256.pkce.code_challenge_method == "S256"
    err = await redirected(deps, code_challenge=plain, code_challenge_method="S512")
    assert err.error.error == "invalid_request"


async def test_pkce_methods_and_enforcement_follow_config(deps: Deps) -> None:
    only_s256 = config(pkce=PKCEConfig(code_challenge_methods_supported=("S256",)))
    err = await redirected(deps, only_s256, code_challenge="abc")  # plain by default, not allowed
    assert err.error.error == "invalid_request"
    enforced = config(pkce=PKCEConfig(enforce=True))
    err = await redirected(deps, enforced)
    assert err.error.error == "invalid_request" and "PKCE" in err.error.description


async def test_openid_is_required(deps: Deps) -> None:
    err = await redirected(deps, scope="email profile")
    assert err.error.error == "invalid_scope"
    assert err.error.description == 'Missing required scope(s) ["openid"].'


async def test_unknown_scopes(deps: Deps) -> None:
    err = await redirected(deps, scope="openid email bogus other")
    assert err.error.error == "invalid_scope"
    assert err.error.description == 'Unrecognized scope(s) ["bogus" "other"]'


async def test_all_standard_scopes_are_known(deps: Deps) -> None:
    req = await az.validate_authorize(deps, deps.snapshot, params(
        scope="openid email profile groups offline_access federated:id"))
    assert len(req.scopes) == 6


@pytest.mark.parametrize(("client_id", "redirect", "peer", "ok"), [
    ("app", "https://app.example/cb", "api", True),  # api trusts app
    ("app", "https://app.example/cb", "app", True),  # oneself
    ("spa", "https://spa.example/cb", "api", False),  # api does not trust spa
    ("app", "https://app.example/cb", "ghost", False),  # no such peer
])
async def test_cross_client_audience_needs_trust(deps: Deps, client_id: str, redirect: str, peer: str,
                                                  ok: bool) -> None:
    scope = f"openid audience:server:client_id:{peer}"
    if ok:
        req = await az.validate_authorize(deps, deps.snapshot, params(client_id=client_id,
                                                                      redirect_uri=redirect, scope=scope))
        assert scope.split()[1] in req.scopes
    else:
        err = await redirected(deps, client_id=client_id, redirect_uri=redirect, scope=scope)
        assert err.error.error == "invalid_scope" and "can't request" in err.error.description


async def test_response_types(deps: Deps) -> None:
    assert (await redirected(deps, response_type="")).error.error == "invalid_request"
    assert (await redirected(deps, response_type="code banana")).error.error == "invalid_request"
    # token / id_token are known but not enabled by default.
    assert (await redirected(deps, response_type="code id_token")).error.error == "unsupported_response_type"
    implicit = config(response_types=("code", "token", "id_token"))
    err = await redirected(deps, implicit, response_type="token")
    assert err.error.error == "invalid_request"  # token alone is never allowed
    err = await redirected(deps, implicit, response_type="id_token token", nonce="")
    assert err.error.error == "invalid_request" and "nonce" in err.error.description
    assert err.fragment is True  # implicit errors travel in the fragment


async def test_implicit_allowed_when_configured(deps: Deps) -> None:
    snap = await build_snapshot(config(response_types=("code", "token", "id_token")), default_registry())
    req = await az.validate_authorize(deps, snap, params(response_type="id_token token"))
    assert req.response_types == ("id_token", "token")


async def test_prompt(deps: Deps) -> None:
    forced = await az.validate_authorize(deps, deps.snapshot, params(prompt="consent"))
    assert forced.force_approval is True
    legacy = await az.validate_authorize(deps, deps.snapshot, params(approval_prompt="force"))
    assert legacy.force_approval is True
    assert (await redirected(deps, prompt="none")).error.error == "login_required"
    assert (await redirected(deps, prompt="none login")).error.error == "invalid_request"
    assert (await redirected(deps, prompt="sometimes")).error.error == "invalid_request"
    assert (await redirected(deps, max_age="-1")).error.error == "invalid_request"


async def test_store_auth_request(deps: Deps) -> None:
    req = await az.validate_authorize(deps, deps.snapshot, params(code_challenge="c" * 43))
    stored = await az.store_auth_request(deps, deps.snapshot, req, "mock")
    again = await deps.storage.auth_requests.get(stored.id)
    assert again == stored
    assert stored.expiry == deps.clock.now() + timedelta(minutes=10)
    assert len(stored.hmac_key) == 32 and stored.connector_id == "mock"
    assert stored.state == "xyz" and stored.nonce == "n" and not stored.logged_in


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("http://localhost:8000/cb", True),
        ("http://127.0.0.1/cb", True),
        ("http://[::1]:9000/cb", True),
        ("http://evil.example\\@localhost/cb", False),  # a browser goes to evil.example
        ("http://user@localhost/cb", False),
        ("http://localhost/cb#frag", False),
        ("http://localhost/c b", False),
        ("http://localhost/cb\r\nX: y", False),
        ("https://localhost/cb", False),
        ("http://localhost.evil.example/cb", False),
        ("http://127.0.0.1.nip.io/cb", False),
    ],
)
def test_loopback_redirect_uris_for_public_clients(uri: str, allowed: bool) -> None:
    from appliance.oidc.authorize import is_loopback_http

    assert is_loopback_http(uri) is allowed
