"""Refresh failures, classified per connector against the fakes (and a real OpenID Provider): a permanent
refusal (the user removed or disabled, the upstream grant revoked) must end the grant, which the token
endpoint answers with invalid_grant; only an outage (5xx, no answer) may pass (503
temporarily_unavailable). The last tests take both classes through Portico's own /token."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fakes.bitbucket import API as BITBUCKET_API
from fakes.bitbucket import BitbucketUser, FakeBitbucket
from fakes.crowd import APP_NAME, APP_PASSWORD, CrowdUser, FakeCrowd
from fakes.gitea import FakeGitea, GiteaUser
from fakes.github import API as GITHUB_API
from fakes.github import FakeGitHub, GitHubUser
from fakes.gitlab import PREFIX, FakeGitLab, GitLabUser
from fakes.google import FakeGoogle, GoogleUser
from fakes.keystone import DOMAIN_ID, FakeKeystone, KeystoneUser
from fakes.linkedin import FakeLinkedIn
from fakes.microsoft import FakeMicrosoft, MicrosoftUser
from fakes.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, browse
from fakes.openshift import FakeOpenShift
from fakes.server import FakeServer
from fakes.tls import TLSFiles, make_tls_files
from upstream.op import CALLBACK as OP_CALLBACK
from upstream.op import UpstreamOP
from upstream.op import browse as browse_op

from appliance.clock import FrozenClock
from appliance.config.load import parse_config
from appliance.config.schema import StorageConfig
from appliance.connectors.base import GrantRevokedError, Identity, RefreshConnector, Scopes, UserRefusedError
from appliance.connectors.bitbucket import BitbucketEndpoints, open_bitbucket
from appliance.connectors.crowd import open_crowd
from appliance.connectors.gitea import open_gitea
from appliance.connectors.github import GitHubHosts, open_github
from appliance.connectors.gitlab import open_gitlab
from appliance.connectors.google import GoogleEndpoints, open_google
from appliance.connectors.keystone import open_keystone
from appliance.connectors.linkedin import LinkedInEndpoints, open_linkedin
from appliance.connectors.microsoft import open_microsoft
from appliance.connectors.oauth import open_oauth
from appliance.connectors.oidc import open_oidc
from appliance.connectors.openshift import open_openshift
from appliance.connectors.registry import default_registry
from appliance.errors import ConnectorError
from appliance.keys.manager import KeyManager
from appliance.oidc.deps import Deps, build_snapshot
from appliance.store.open import open_storage
from appliance.web.app import create_app

REDIRECT = "https://portico.example/dex/callback"
OFFLINE = Scopes(offline_access=True)
DEAD = "http://127.0.0.1:9"  # the discard port: nothing answers


async def outcome(call: Awaitable[Any]) -> str:
    """"ok", "refused" (permanent: invalid_grant at /token) or "outage" (may pass: 503)."""
    try:
        await call
    except (UserRefusedError, GrantRevokedError):
        return "refused"
    except ConnectorError:
        return "outage"
    return "ok"


def serve(app: Any, tls: TLSFiles | None = None) -> Iterator[FakeServer]:
    server = FakeServer(app, tls.cert if tls else None, tls.key if tls else None).start()
    yield server
    server.stop()


async def social_login(conn: Any, user: str, scopes: Scopes = OFFLINE, ca_file: str = "") -> Identity:
    params = await browse(await conn.login_url(scopes, REDIRECT, "st"), user, ca_file=ca_file)
    identity: Identity = await conn.handle_callback(scopes, params)
    return identity


# --- github -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def github() -> Iterator[tuple[FakeGitHub, FakeServer]]:
    fake = FakeGitHub(REDIRECT)
    yield from ((fake, server) for server in serve(fake.app))


def _github(served: tuple[FakeGitHub, FakeServer], clock: FrozenClock | None = None, api: str = "") -> Any:
    fake, server = served
    fake.reset()
    fake.add(GitHubUser(id=7, login="octo", name="Octo", public_email="octo@example.com"))
    config = {"clientID": DEFAULT_CLIENT_ID, "clientSecret": DEFAULT_CLIENT_SECRET, "redirectURI": REDIRECT}
    hosts = GitHubHosts(web=server.url, api=api or server.url + GITHUB_API)
    return open_github("github", config, hosts=hosts, clock=clock)


async def test_github(github: tuple[FakeGitHub, FakeServer]) -> None:
    fake, _ = github
    conn = _github(github)
    identity = await social_login(conn, "octo")
    assert await outcome(conn.refresh(Scopes(), identity)) == "ok"
    fake.failures[f"{GITHUB_API}/user"] = 502
    assert await outcome(conn.refresh(Scopes(), identity)) == "outage"
    fake.failures[f"{GITHUB_API}/user"] = 403  # also how GitHub says "rate limited": not final
    assert await outcome(conn.refresh(Scopes(), identity)) == "outage"
    fake.failures.clear()
    unreachable = _github(github, api=DEAD + GITHUB_API)
    assert await outcome(unreachable.refresh(Scopes(), identity)) == "outage"
    # The user revoked the OAuth app (or the account is gone): GitHub answers 401 "Bad credentials".
    fake.oauth.revoke("octo")
    with pytest.raises(GrantRevokedError, match="HTTP 401"):
        await conn.refresh(Scopes(), identity)


async def test_github_app_tokens(github: tuple[FakeGitHub, FakeServer]) -> None:
    """A GitHub App's expiring token: renewing it is refused with GitHub's own code, over HTTP 200."""
    fake, _ = github
    clock = FrozenClock()
    conn = _github(github, clock=clock)
    fake.oauth.expires_in = 28800
    fake.oauth.issue_refresh_tokens = True
    identity = await social_login(conn, "octo")
    fake.oauth.expire_access_tokens()
    clock.advance(timedelta(hours=9))
    fake.oauth.token_failure = 503
    assert await outcome(conn.refresh(Scopes(), identity)) == "outage"
    fake.oauth.token_failure = None
    fake.oauth.revoke("octo")
    with pytest.raises(UserRefusedError, match="bad_refresh_token"):
        await conn.refresh(Scopes(), identity)
    # Expired, and nothing kept to renew it with: final too.
    expired = Identity(user_id="7", connector_data=b'{"accessToken":"gone","expiry":"2020-01-01T00:00:00Z"}')
    with pytest.raises(GrantRevokedError, match="no refresh token"):
        await conn.refresh(Scopes(), expired)


# --- gitlab -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gitlab() -> Iterator[tuple[FakeGitLab, FakeServer]]:
    fake = FakeGitLab(REDIRECT)
    yield from ((fake, server) for server in serve(fake.app))


async def test_gitlab(gitlab: tuple[FakeGitLab, FakeServer]) -> None:
    fake, server = gitlab
    fake.reset()
    fake.add(GitLabUser(id=42, username="jdoe", name="Jane Doe", email="jane@example.com"))
    fake.oauth.issue_refresh_tokens = True
    conn = open_gitlab("gitlab", {"baseURL": server.url + PREFIX, "clientID": DEFAULT_CLIENT_ID,
                                  "clientSecret": DEFAULT_CLIENT_SECRET, "redirectURI": REDIRECT})
    identity = await social_login(conn, "jdoe")
    identity = replace(identity, connector_data=(await conn.refresh(OFFLINE, identity)).connector_data)
    fake.oauth.token_failure = 500
    assert await outcome(conn.refresh(OFFLINE, identity)) == "outage"
    fake.oauth.token_failure = None
    fake.failures["/api/v4/user"] = 503
    with pytest.raises(ConnectorError) as failed:
        await conn.refresh(OFFLINE, identity)
    assert not isinstance(failed.value, (UserRefusedError, GrantRevokedError))  # an outage
    fake.failures.clear()
    # The rotated refresh token was spent by the call that hit the 503: GitLab refuses it now...
    assert await outcome(conn.refresh(OFFLINE, identity)) == "refused"
    # ...but the failure carried the renewed one (the token endpoint keeps it for the retry): it works.
    renewed = replace(identity, connector_data=failed.value.connector_data)
    assert failed.value.connector_data and await outcome(conn.refresh(OFFLINE, renewed)) == "ok"
    # A fresh login, then the user is blocked (every token of theirs revoked).
    identity = await social_login(conn, "jdoe")
    fake.oauth.revoke("jdoe")
    with pytest.raises(UserRefusedError, match="invalid_grant"):
        await conn.refresh(OFFLINE, identity)
    # An access token only (no refresh token kept), revoked: GitLab's API answers 401.
    only_access = Identity(user_id="42", connector_data=json.dumps({"accessToken": "revoked"}).encode())
    with pytest.raises(GrantRevokedError, match="HTTP 401"):
        await conn.refresh(OFFLINE, only_access)


# --- google -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def google() -> Iterator[tuple[FakeGoogle, FakeServer]]:
    fake = FakeGoogle(REDIRECT)
    for server in serve(fake.app):
        fake.issuer = server.url
        yield fake, server


async def test_google(google: tuple[FakeGoogle, FakeServer]) -> None:
    fake, server = google
    fake.reset()
    fake.users["ann"] = GoogleUser(sub="1101", email="ann@corp.example", name="Ann")
    fake.oauth.issue_refresh_tokens = True
    fake.oauth.rotate_refresh_tokens = False
    endpoints = GoogleEndpoints(issuer=server.url, auth_url=f"{server.url}/o/oauth2/v2/auth",
                                token_url=f"{server.url}/token", jwks_url=f"{server.url}/oauth2/v3/certs",
                                directory_url=server.url)
    conn = open_google("google", {"clientID": DEFAULT_CLIENT_ID, "clientSecret": DEFAULT_CLIENT_SECRET,
                                  "redirectURI": REDIRECT}, endpoints=endpoints)
    identity = await social_login(conn, "ann")
    assert await outcome(conn.refresh(OFFLINE, identity)) == "ok"
    fake.failures["/token"] = 503
    assert await outcome(conn.refresh(OFFLINE, identity)) == "outage"
    fake.failures.clear()
    fake.oauth.revoke("ann")  # the user removed Portico's access, or the account was deleted
    with pytest.raises(UserRefusedError, match="invalid_grant"):
        await conn.refresh(OFFLINE, identity)


# --- microsoft --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def microsoft() -> Iterator[tuple[FakeMicrosoft, FakeServer]]:
    fake = FakeMicrosoft(REDIRECT)
    yield from ((fake, server) for server in serve(fake.app))


async def test_microsoft(microsoft: tuple[FakeMicrosoft, FakeServer]) -> None:
    fake, server = microsoft
    fake.reset()
    fake.users["ada"] = MicrosoftUser(id="a0b1", display_name="Ada", upn="ada@contoso.example")
    fake.oauth.issue_refresh_tokens = True
    fake.oauth.expires_in = 3600
    clock = FrozenClock()
    conn = open_microsoft("microsoft", {
        "clientID": DEFAULT_CLIENT_ID, "clientSecret": DEFAULT_CLIENT_SECRET, "redirectURI": REDIRECT,
        "apiURL": server.url, "graphURL": server.url, "tenant": "3c2f5e7a-0000-4000-8000-00000000beef"},
        clock=clock)
    identity = await social_login(conn, "ada")
    fake.failures["/v1.0/me"] = 503
    assert await outcome(conn.refresh(OFFLINE, identity)) == "outage"
    fake.failures.clear()
    # Graph's InvalidAuthenticationToken: the account was disabled and its sessions revoked.
    fake.oauth.revoke("ada")
    with pytest.raises(GrantRevokedError, match="InvalidAuthenticationToken"):
        await conn.refresh(OFFLINE, identity)
    # Expired: the renewal itself is refused (AADSTS errors come as invalid_grant).
    clock.advance(timedelta(hours=2))
    with pytest.raises(UserRefusedError, match="invalid_grant"):
        await conn.refresh(OFFLINE, identity)


# --- linkedin, bitbucket, gitea, openshift: an API call with the user's token ------------------------

@pytest.fixture(scope="module")
def linkedin() -> Iterator[tuple[FakeLinkedIn, FakeServer]]:
    fake = FakeLinkedIn(REDIRECT)
    yield from ((fake, server) for server in serve(fake.app))


async def test_linkedin(linkedin: tuple[FakeLinkedIn, FakeServer]) -> None:
    fake, server = linkedin
    fake.reset()
    fake.members["amy"] = {"sub": "782b", "name": "Amy", "email": "amy@example.com", "email_verified": True}
    endpoints = LinkedInEndpoints(auth_url=f"{server.url}/oauth/v2/authorization",
                                  token_url=f"{server.url}/oauth/v2/accessToken",
                                  userinfo_url=f"{server.url}/v2/userinfo")
    conn = open_linkedin("linkedin", {"clientID": DEFAULT_CLIENT_ID, "clientSecret": DEFAULT_CLIENT_SECRET,
                                      "redirectURI": REDIRECT}, endpoints=endpoints)
    identity = await social_login(conn, "amy")
    fake.failure = 500
    assert await outcome(conn.refresh(OFFLINE, identity)) == "outage"
    fake.failure = 0
    # LinkedIn's tokens live 60 days and cannot be renewed: past that, or revoked, it answers 401.
    fake.oauth.revoke("amy")
    with pytest.raises(GrantRevokedError, match="Invalid access token"):
        await conn.refresh(OFFLINE, identity)


@pytest.fixture(scope="module")
def bitbucket() -> Iterator[tuple[FakeBitbucket, FakeServer]]:
    fake = FakeBitbucket(REDIRECT)
    yield from ((fake, server) for server in serve(fake.app))


async def test_bitbucket(bitbucket: tuple[FakeBitbucket, FakeServer]) -> None:
    fake, server = bitbucket
    fake.reset()
    fake.users["bob"] = BitbucketUser(uuid="{c0ffee}", username="bob", emails=[
        {"email": "bob@example.com", "is_primary": True, "is_confirmed": True}])
    endpoints = BitbucketEndpoints(auth_url=f"{server.url}/site/oauth2/authorize",
                                   token_url=f"{server.url}/site/oauth2/access_token",
                                   api_url=server.url + BITBUCKET_API)
    conn = open_bitbucket("bitbucket", {"clientID": DEFAULT_CLIENT_ID, "clientSecret": DEFAULT_CLIENT_SECRET,
                                        "redirectURI": REDIRECT}, endpoints=endpoints)
    identity = await social_login(conn, "bob")
    fake.failures[f"{BITBUCKET_API}/user"] = 500
    assert await outcome(conn.refresh(OFFLINE, identity)) == "outage"
    fake.failures.clear()
    fake.oauth.revoke("bob")
    with pytest.raises(GrantRevokedError, match="HTTP 401"):
        await conn.refresh(OFFLINE, identity)


@pytest.fixture(scope="module")
def gitea() -> Iterator[tuple[FakeGitea, FakeServer]]:
    fake = FakeGitea(REDIRECT)
    yield from ((fake, server) for server in serve(fake.app))


async def test_gitea(gitea: tuple[FakeGitea, FakeServer]) -> None:
    fake, server = gitea
    fake.reset()
    fake.users["gus"] = GiteaUser(id=12, login="gus", full_name="Gus", email="gus@example.com")
    conn = open_gitea("gitea", {"baseURL": server.url, "clientID": DEFAULT_CLIENT_ID,
                                "clientSecret": DEFAULT_CLIENT_SECRET, "redirectURI": REDIRECT})
    identity = await social_login(conn, "gus")
    fake.failure = 500
    assert await outcome(conn.refresh(OFFLINE, identity)) == "outage"
    fake.failure = 0
    fake.oauth.revoke("gus")
    with pytest.raises(GrantRevokedError, match="HTTP 401"):
        await conn.refresh(OFFLINE, identity)


@pytest.fixture(scope="module")
def openshift(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeOpenShift, FakeServer, TLSFiles]]:
    tls = make_tls_files(tmp_path_factory.mktemp("ocp"))
    fake = FakeOpenShift(REDIRECT)
    yield from ((fake, server, tls) for server in serve(fake.app, tls))


async def test_openshift(openshift: tuple[FakeOpenShift, FakeServer, TLSFiles]) -> None:
    fake, server, tls = openshift
    fake.reset()
    fake.add("dev", "9f3b2c1a-0000-4000-8000-000000000002", ["devs"])
    conn = open_openshift("openshift", {"issuer": server.url, "clientID": DEFAULT_CLIENT_ID,
                                        "clientSecret": DEFAULT_CLIENT_SECRET, "redirectURI": REDIRECT,
                                        "rootCA": str(tls.ca_pem)})
    identity = await social_login(conn, "dev", ca_file=str(tls.ca_pem))
    fake.failure = 503
    assert await outcome(conn.refresh(OFFLINE, identity)) == "outage"
    fake.failure = 0
    fake.oauth.revoke("dev")  # the user was deleted: its OAuth access tokens go with it
    with pytest.raises(GrantRevokedError, match="HTTP 401"):
        await conn.refresh(OFFLINE, identity)


# --- crowd and keystone: the application's own credentials ask about the user -----------------------

@pytest.fixture(scope="module")
def crowd() -> Iterator[tuple[FakeCrowd, FakeServer]]:
    fake = FakeCrowd()
    yield from ((fake, server) for server in serve(fake.app))


async def test_crowd(crowd: tuple[FakeCrowd, FakeServer]) -> None:
    fake, server = crowd
    fake.reset()
    fake.users["carol"] = CrowdUser(name="carol", key="K-1", password="pw", email="carol@example.com")
    config = {"baseURL": server.url + "/crowd", "clientID": APP_NAME, "clientSecret": APP_PASSWORD}
    conn = open_crowd("crowd", config)
    identity = await conn.login(OFFLINE, "carol", "pw")
    assert identity is not None
    fake.failure = 500
    assert await outcome(conn.refresh(Scopes(), identity)) == "outage"
    fake.failure = 0
    # Portico's own application credentials refused: a configuration fault, not the user's; not final.
    misconfigured = open_crowd("crowd", {**config, "clientSecret": "wrong"})
    assert await outcome(misconfigured.refresh(Scopes(), identity)) == "outage"
    fake.users["carol"].active = False
    assert await outcome(conn.refresh(Scopes(), identity)) == "refused"
    del fake.users["carol"]
    assert await outcome(conn.refresh(Scopes(), identity)) == "refused"


@pytest.fixture(scope="module")
def keystone() -> Iterator[tuple[FakeKeystone, FakeServer]]:
    fake = FakeKeystone()
    yield from ((fake, server) for server in serve(fake.app))


async def test_keystone(keystone: tuple[FakeKeystone, FakeServer]) -> None:
    fake, server = keystone
    fake.reset()
    fake.users["kim"] = KeystoneUser(id="u-kim", name="kim", password="pw", email="kim@example.com")
    fake.users["admin"] = KeystoneUser(id="u-admin", name="admin", password="adm1n", admin=True)
    config = {"keystoneHost": server.url, "domain": DOMAIN_ID, "keystoneUsername": "admin",
              "keystonePassword": "adm1n"}
    conn = open_keystone("keystone", config)
    identity = await conn.login(OFFLINE, "kim", "pw")
    assert identity is not None
    assert await outcome(conn.refresh(Scopes(), identity)) == "ok"
    fake.failure = 503
    assert await outcome(conn.refresh(Scopes(), identity)) == "outage"
    fake.failure = 0
    misconfigured = open_keystone("keystone", {**config, "keystonePassword": "wrong"})
    assert await outcome(misconfigured.refresh(Scopes(), identity)) == "outage"
    fake.users["kim"].enabled = False
    with pytest.raises(UserRefusedError, match="disabled"):
        await conn.refresh(Scopes(), identity)
    del fake.users["kim"]
    with pytest.raises(UserRefusedError, match="does not exist"):
        await conn.refresh(Scopes(), identity)


# --- oidc against node-oidc-provider; oauth has no refresh ------------------------------------------

@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamOP]:
    provider = UpstreamOP(tmp_path_factory.mktemp("op"))
    provider.start()
    yield provider
    provider.stop()


async def test_oidc(op: UpstreamOP) -> None:
    conn = open_oidc("oidc", op.connector_config())
    login = await browse_op(await conn.login_url(OFFLINE, OP_CALLBACK, "st"), "bob")
    identity = await conn.handle_callback(OFFLINE, login)
    identity = await conn.refresh(OFFLINE, identity)
    down = open_oidc("oidc", op.connector_config(issuer=DEAD))
    assert await outcome(down.refresh(OFFLINE, identity)) == "outage"
    # The account is removed upstream: oidc-provider refuses the refresh token (invalid_grant).
    saved = op.accounts.pop("bob")
    op.write_accounts()
    try:
        with pytest.raises(UserRefusedError, match="invalid_grant"):
            await conn.refresh(OFFLINE, identity)
    finally:
        op.accounts["bob"] = saved
        op.write_accounts()


def test_oauth_has_no_refresh_to_fail() -> None:
    """As in Dex: a refresh keeps the login's claims and never asks the upstream, so nothing to classify."""
    conn = open_oauth("oauth", {"clientID": "c", "clientSecret": "s", "redirectURI": REDIRECT,
                                "tokenURL": f"{DEAD}/token", "authorizationURL": f"{DEAD}/auth",
                                "userInfoURL": f"{DEAD}/userinfo"})
    assert not isinstance(conn, RefreshConnector)


# --- through Portico's /token -----------------------------------------------------------------------

PORTICO = """
issuer: https://portico.example/dex
storage: {{type: memory}}
web: {{http: 127.0.0.1:5556}}
oauth2: {{skipApprovalScreen: true}}
staticClients:
- id: web-app
  secret: app-secret
  redirectURIs: [https://app.example/callback]
connectors:
- type: github
  id: github
  name: GitHub
  config:
    clientID: {client_id}
    clientSecret: "{client_secret}"
    redirectURI: https://portico.example/dex/callback
"""


@dataclass
class Portico:
    client: Any
    deps: Deps


@pytest.fixture
async def portico(github: tuple[FakeGitHub, FakeServer]) -> AsyncIterator[Portico]:
    _, server = github
    config, problems = parse_config(PORTICO.format(client_id=DEFAULT_CLIENT_ID,
                                                   client_secret=DEFAULT_CLIENT_SECRET))
    assert config is not None, [str(p) for p in problems]
    storage = await open_storage(StorageConfig(type="memory"))
    clock = FrozenClock()
    keys = KeyManager(storage, clock, algorithm=config.signer.algorithm,
                      rotation_period=config.signer.keys_rotation_period,
                      id_token_lifetime=config.expiry.id_tokens)
    await keys.rotate_if_due()
    await keys.refresh()
    registry = default_registry().with_types({"github": lambda cid, cfg: open_github(
        cid, cfg, hosts=GitHubHosts(web=server.url, api=server.url + GITHUB_API))})
    snapshot = await build_snapshot(config, registry, storage=storage)
    deps = Deps(storage=storage, keys=keys, clock=clock, snapshot=snapshot)
    app = create_app(deps)
    await app.startup()
    try:
        yield Portico(app.test_client(), deps)
    finally:
        await app.shutdown()
        await storage.close()


async def _refresh_token(portico: Portico) -> str:
    client = portico.client
    start = await client.get("/dex/auth", query_string={
        "client_id": "web-app", "redirect_uri": "https://app.example/callback", "response_type": "code",
        "scope": "openid email offline_access", "state": "s", "nonce": "n", "connector_id": "github"})
    upstream = await client.get(start.headers["Location"])
    callback = await browse(upstream.headers["Location"], "octo")
    done = await client.get("/dex/callback", query_string=callback)
    code = dict(parse_qsl(urlsplit(done.headers["Location"]).query))["code"]
    answer = await client.post("/dex/token", form={
        "grant_type": "authorization_code", "code": code, "redirect_uri": "https://app.example/callback"},
        headers=_basic())
    assert answer.status_code == 200, await answer.get_data(as_text=True)
    return str((await answer.get_json())["refresh_token"])


def _basic() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(b"web-app:app-secret").decode()}


async def _refresh(portico: Portico, refresh_token: str) -> tuple[int, dict[str, Any]]:
    answer = await portico.client.post("/dex/token", headers=_basic(), form={
        "grant_type": "refresh_token", "refresh_token": refresh_token})
    return answer.status_code, await answer.get_json()


async def test_portico_answers_an_outage_503_and_a_revoked_grant_invalid_grant(
        portico: Portico, github: tuple[FakeGitHub, FakeServer]) -> None:
    fake, _ = github
    fake.reset()
    fake.add(GitHubUser(id=7, login="octo", name="Octo", public_email="octo@example.com"))
    refresh_token = await _refresh_token(portico)
    fake.failures[f"{GITHUB_API}/user"] = 502
    # An outage: the client may retry with the same token (it was not used up).
    for _ in range(2):
        assert await _refresh(portico, refresh_token) == (503, {"error": "temporarily_unavailable"})
    fake.failures.clear()
    status, body = await _refresh(portico, refresh_token)
    assert status == 200, body
    refresh_token = str(body["refresh_token"])
    fake.oauth.revoke("octo")  # the user revoked Portico's GitHub app
    status, body = await _refresh(portico, refresh_token)
    assert (status, body["error"]) == (400, "invalid_grant"), body
    # Final: it stays refused once GitHub is fine again for everyone else.
    assert (await _refresh(portico, refresh_token))[0] == 400
