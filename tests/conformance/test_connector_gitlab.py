"""The `gitlab` connector against a fake self-hosted GitLab: userinfo groups, roles, inherited groups."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
from fakes.gitlab import PREFIX, FakeGitLab, GitLabUser
from fakes.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, browse
from fakes.server import FakeServer
from fakes.tls import make_tls_files

from appliance.clock import FrozenClock
from appliance.config.load import parse_config
from appliance.config.schema import StorageConfig
from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.gitlab import GitLabConnector, open_gitlab, with_roles
from appliance.connectors.registry import default_registry
from appliance.connectors.social_http import UpstreamDenied
from appliance.errors import ConnectorError
from appliance.keys.manager import KeyManager
from appliance.oidc.deps import Deps, build_snapshot
from appliance.store.open import open_storage
from appliance.web.app import create_app

REDIRECT = "https://portico.example/dex/callback"
GROUPS = Scopes(groups=True)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeGitLab, FakeServer]]:
    fake = FakeGitLab(REDIRECT)
    server = FakeServer(fake.app).start()
    yield fake, server
    server.stop()


@pytest.fixture
def gitlab(served: tuple[FakeGitLab, FakeServer]) -> FakeGitLab:
    fake, _ = served
    fake.reset()
    fake.add(
        GitLabUser(
            id=42,
            username="jdoe",
            name="Jane Doe",
            email="jane@example.com",
            direct_groups=["platform", "platform/sre", "docs"],
            levels={"platform": 50, "docs": 30, "infra": 20},
            member_of=[(1, "platform"), (2, "platform/sre"), (3, "docs"), (4, "infra"), (5, "public")],
        )
    )
    return fake


def make(served: tuple[FakeGitLab, FakeServer], **extra: Any) -> GitLabConnector:
    _, server = served
    config = {
        "baseURL": server.url + PREFIX + "/",
        "clientID": DEFAULT_CLIENT_ID,
        "clientSecret": DEFAULT_CLIENT_SECRET,
        "redirectURI": REDIRECT,
        **extra,
    }
    return open_gitlab("gitlab", config)


async def login(conn: GitLabConnector, scopes: Scopes, user: str = "jdoe") -> Identity:
    params = await browse(await conn.login_url(scopes, REDIRECT, "st"), user)
    return await conn.handle_callback(scopes, params)


async def test_login_url_scopes(served: Any, gitlab: FakeGitLab) -> None:
    conn = make(served)
    url = await conn.login_url(Scopes(), REDIRECT, "st")
    assert url.startswith(served[1].url + PREFIX + "/oauth/authorize?")
    assert parse_qs(urlsplit(url).query)["scope"] == ["read_user"]
    assert parse_qs(urlsplit(await conn.login_url(GROUPS, REDIRECT, "s")).query)["scope"] == [
        "read_user openid"
    ]
    inherited = make(served, inheritedGroups=True, groups=["x"])
    assert parse_qs(urlsplit(await inherited.login_url(Scopes(), REDIRECT, "s")).query)["scope"] == [
        "read_user openid read_api"
    ]


async def test_login_without_groups(served: Any, gitlab: FakeGitLab) -> None:
    identity = await login(make(served), Scopes())
    assert identity == Identity(
        user_id="42",
        username="Jane Doe",
        preferred_username="jdoe",
        email="jane@example.com",
        email_verified=True,
    )
    assert gitlab.paths == [f"{PREFIX}/api/v4/user"]
    gitlab.add(GitLabUser(id=43, username="noname", email="nn@example.com"))
    identity = await login(make(served, useLoginAsID=True), Scopes(), "noname")
    assert (identity.user_id, identity.username) == ("noname", "nn@example.com")


async def test_groups_from_userinfo_with_permissions(served: Any, gitlab: FakeGitLab) -> None:
    assert (await login(make(served), GROUPS)).groups == ("platform", "platform/sre", "docs")
    identity = await login(make(served, getGroupsPermission=True), GROUPS)
    # platform/sre inherits the owner role of its parent; "docs" is developer.
    assert identity.groups == (
        "platform",
        "platform/sre",
        "docs",
        "platform:owner",
        "platform/sre:owner",
        "docs:developer",
    )
    assert with_roles(["developers"], {"https://gitlab.org/claims/groups/owner": ["dev"]}) == ["developers"]


async def test_groups_filter_restricts_login(served: Any, gitlab: FakeGitLab) -> None:
    conn = make(served, groups=["docs", "elsewhere"])
    assert (await login(conn, Scopes())).groups == ("docs",)  # filtered even without the groups scope
    with pytest.raises(UserNotInRequiredGroupsError, match="'jdoe' is not in any of the required groups"):
        await login(make(served, groups=["elsewhere"]), Scopes())


async def test_inherited_groups_page_through_x_next_page(served: Any, gitlab: FakeGitLab) -> None:
    identity = await login(make(served, inheritedGroups=True), GROUPS)
    assert identity.groups == ("platform", "platform/sre", "docs", "infra", "public")
    assert gitlab.paths.count(f"{PREFIX}/api/v4/groups") == 3  # five groups, two per page
    gitlab.next_page_header = False  # without the header a short page ends the list (Dex's rule)
    assert len((await login(make(served, inheritedGroups=True), GROUPS)).groups) == 2


async def test_inherited_groups_with_effective_roles(served: Any, gitlab: FakeGitLab) -> None:
    identity = await login(make(served, inheritedGroups=True, getGroupsPermission=True), GROUPS)
    assert identity.groups == (
        "platform",
        "platform/sre",
        "docs",
        "infra",
        "public",
        "platform:owner",
        "platform/sre:owner",
        "docs:developer",
        "infra:reporter",
    )
    asked = [p for p in gitlab.paths if "/members/all/" in p]
    # Only the groups userinfo says nothing about are asked for (infra: reporter; public: 404, no suffix).
    assert asked == [f"{PREFIX}/api/v4/groups/4/members/all/42", f"{PREFIX}/api/v4/groups/5/members/all/42"]


async def test_api_errors(served: Any, gitlab: FakeGitLab) -> None:
    gitlab.failures["/oauth/userinfo"] = 500
    with pytest.raises(ConnectorError, match="HTTP 500"):
        await login(make(served), GROUPS)
    gitlab.failures = {"/api/v4/user": 403}
    with pytest.raises(ConnectorError, match="HTTP 403"):
        await login(make(served), Scopes())
    params = await browse(await make(served).login_url(Scopes(), REDIRECT, "s"), "jdoe", deny=True)
    with pytest.raises(UpstreamDenied):
        await make(served).handle_callback(Scopes(), params)


async def test_refresh_uses_the_refresh_token(served: Any, gitlab: FakeGitLab) -> None:
    gitlab.oauth.issue_refresh_tokens = True
    gitlab.oauth.expires_in = 7200
    conn = make(served, groups=["platform"])
    identity = await login(conn, Scopes(offline_access=True, groups=True))
    data = json.loads(identity.connector_data or b"")
    assert set(data) == {"accessToken", "refreshToken"}
    gitlab.users["jdoe"].name = "Jane Q. Doe"
    refreshed = await conn.refresh(Scopes(offline_access=True, groups=True), identity)
    assert refreshed.username == "Jane Q. Doe" and refreshed.groups == ("platform",)
    assert gitlab.oauth.token_requests[-1]["grant_type"] == "refresh_token"
    assert json.loads(refreshed.connector_data or b"")["refreshToken"] != data["refreshToken"]
    gitlab.users["jdoe"].direct_groups = ["docs"]
    with pytest.raises(UserNotInRequiredGroupsError):
        await conn.refresh(Scopes(offline_access=True), refreshed)
    with pytest.raises(ConnectorError, match="invalid_grant"):  # the first refresh token was rotated
        await conn.refresh(Scopes(offline_access=True), identity)


async def test_refresh_with_access_token_only(served: Any, gitlab: FakeGitLab) -> None:
    conn = make(served)
    identity = await login(conn, Scopes(offline_access=True))
    assert json.loads(identity.connector_data or b"")["refreshToken"] == ""
    refreshed = await conn.refresh(Scopes(offline_access=True), identity)
    assert refreshed.email == "jane@example.com"
    assert not [r for r in gitlab.oauth.token_requests if r["grant_type"] == "refresh_token"]


async def test_root_ca_data_trusts_a_private_gitlab(tmp_path: Any) -> None:
    files = make_tls_files(tmp_path)
    fake = FakeGitLab(REDIRECT)
    server = FakeServer(fake.app, files.cert, files.key).start()
    try:
        fake.add(GitLabUser(id=1, username="tls", email="tls@example.com"))
        import base64

        config = {
            "baseURL": server.url + PREFIX,
            "clientID": DEFAULT_CLIENT_ID,
            "clientSecret": DEFAULT_CLIENT_SECRET,
            "redirectURI": REDIRECT,
            "rootCAData": base64.b64encode(files.ca_pem.read_bytes()).decode(),
        }
        conn = open_gitlab("gitlab", config)
        params = await browse(await conn.login_url(Scopes(), REDIRECT, "s"), "tls", ca_file=str(files.ca_pem))
        assert (await conn.handle_callback(Scopes(), params)).user_id == "1"
    finally:
        server.stop()


def test_config() -> None:
    conn = open_gitlab("g", {"clientid": "i", "clientsecret": "s", "redirecturi": REDIRECT})
    assert conn.cfg.base_url == "https://gitlab.com"
    with pytest.raises(ValueError) as info:
        open_gitlab(
            "g",
            {
                "clientID": "i",
                "clientSecret": "s",
                "redirectURI": REDIRECT,
                "groups": "one",
                "rootCAData": "not base64!",
                "useLoginAsId": "yes",
            },
        )
    message = str(info.value)
    assert "groups: must be a list of strings" in message and "rootCAData:" in message
    assert "useLoginAsID: must be true or false" in message


PORTICO_CONFIG = """
issuer: https://portico.example/dex
storage: {{type: memory}}
web: {{http: 127.0.0.1:5556}}
oauth2: {{skipApprovalScreen: true}}
staticClients:
- id: web-app
  name: Web App
  secret: app-secret
  redirectURIs: [https://app.example/callback]
connectors:
- type: gitlab
  id: gitlab
  name: GitLab
  config:
    BaseURL: {base}
    clientID: {client_id}
    clientSecret: "{client_secret}"
    redirectURI: https://portico.example/dex/callback
    groups: [docs, platform]
"""


async def test_a_dex_gitlab_block_logs_in_through_portico(served: Any, gitlab: FakeGitLab) -> None:
    """The whole code flow through Portico's own /auth, /callback and /token, with the fake upstream."""
    text = PORTICO_CONFIG.format(
        base=served[1].url + PREFIX, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET
    )
    config, problems = parse_config(text)
    assert config is not None, [str(p) for p in problems]
    storage = await open_storage(StorageConfig(type="memory"))
    keys = KeyManager(
        storage,
        FrozenClock(),
        algorithm=config.signer.algorithm,
        rotation_period=config.signer.keys_rotation_period,
        id_token_lifetime=config.expiry.id_tokens,
    )
    await keys.rotate_if_due()
    await keys.refresh()
    registry = default_registry()
    snapshot = await build_snapshot(config, registry, storage=storage)
    app = create_app(Deps(storage=storage, keys=keys, clock=FrozenClock(), snapshot=snapshot))
    await app.startup()
    try:
        client = app.test_client()
        start = await client.get(
            "/dex/auth",
            query_string={
                "client_id": "web-app",
                "redirect_uri": "https://app.example/callback",
                "response_type": "code",
                "scope": "openid email profile groups",
                "state": "client-state",
                "nonce": "n",
            },
        )
        assert start.status_code == 302
        upstream = await client.get(start.headers["Location"])
        assert upstream.status_code == 302
        login_url = upstream.headers["Location"]
        assert login_url.startswith(served[1].url + PREFIX + "/oauth/authorize?")
        callback = await browse(login_url, "jdoe")
        done = await client.get("/dex/callback", query_string=callback)
        assert done.status_code == 303, await done.get_data(as_text=True)
        back = dict(parse_qsl(urlsplit(done.headers["Location"]).query))
        assert back["state"] == "client-state"
        token = await client.post(
            "/dex/token",
            form={
                "grant_type": "authorization_code",
                "code": back["code"],
                "redirect_uri": "https://app.example/callback",
                "client_id": "web-app",
                "client_secret": "app-secret",
            },
        )
        assert token.status_code == 200, await token.get_data(as_text=True)
        id_token = (await token.get_json())["id_token"]
        claims = json.loads(base64.urlsafe_b64decode(id_token.split(".")[1] + "=="))
        assert claims["email"] == "jane@example.com" and claims["email_verified"] is True
        assert claims["groups"] == ["platform", "docs"] and claims["name"] == "Jane Doe"
        assert claims["preferred_username"] == "jdoe"
        # Dex's sub: protobuf {1: user id, 2: connector id}, base64url.
        assert base64.urlsafe_b64decode(claims["sub"] + "==") == b"\n\x0242\x12\x06gitlab"
    finally:
        await app.shutdown()
        await storage.close()
