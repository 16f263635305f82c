"""Token exchange (RFC 8693) through the connectors that Dex's main branch gives a TokenIdentity besides
oidc: gitlab (a GitLab access token, vouched for by GitLab's API; against the fake GitLab) and
mockCallback (any token is Kilgore Trout). Connector level, then Portico's own /token."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fakes.gitlab import PREFIX, FakeGitLab, GitLabUser
from fakes.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, browse
from fakes.server import FakeServer

from appliance.clock import FrozenClock
from appliance.config.load import parse_config
from appliance.config.schema import StorageConfig
from appliance.connectors.base import GrantRevokedError, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.gitlab import GitLabConnector, open_gitlab
from appliance.connectors.mock import MOCK_EMAIL, MOCK_USER_ID, MockCallbackConnector
from appliance.connectors.registry import default_registry
from appliance.errors import ConnectorError
from appliance.keys.manager import KeyManager
from appliance.oidc.deps import Deps, build_snapshot
from appliance.oidc.exchange import TOKEN_TYPE_ACCESS, TOKEN_TYPE_ID, TokenIdentityConnector
from appliance.store.open import open_storage
from appliance.web.app import create_app

REDIRECT = "https://portico.example/dex/callback"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


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
    fake.add(GitLabUser(id=42, username="jdoe", name="Jane Doe", email="jane@example.com",
                        direct_groups=["platform", "platform/sre", "docs"], levels={"platform": 50}))
    return fake


def make(served: tuple[FakeGitLab, FakeServer], **extra: Any) -> GitLabConnector:
    return open_gitlab("gitlab", {"baseURL": served[1].url + PREFIX, "clientID": DEFAULT_CLIENT_ID,
                                  "clientSecret": DEFAULT_CLIENT_SECRET, "redirectURI": REDIRECT, **extra})


async def test_a_personal_access_token_names_its_user(served: Any, gitlab: FakeGitLab) -> None:
    conn = make(served, getGroupsPermission=True)
    assert isinstance(conn, TokenIdentityConnector)
    identity = await conn.token_identity(TOKEN_TYPE_ACCESS, gitlab.personal_token("jdoe"))
    assert (identity.user_id, identity.username, identity.preferred_username) == ("42", "Jane Doe", "jdoe")
    assert identity.email == "jane@example.com" and identity.email_verified is True
    # Groups are always read (Dex asks with Groups: true): /oauth/userinfo's, with the roles as configured.
    assert identity.groups == ("platform", "platform/sre", "docs", "platform:owner", "platform/sre:owner")
    assert identity.connector_data is None  # no refresh for an exchanged token
    assert [path.removeprefix(PREFIX) for path in gitlab.paths] == ["/api/v4/user", "/oauth/userinfo"]


async def test_an_oauth_access_token_from_another_app_works_too(served: Any, gitlab: FakeGitLab) -> None:
    conn = make(served)
    login = await browse(await conn.login_url(Scopes(groups=True), REDIRECT, "st"), "jdoe")
    grant = await conn.handle_callback(Scopes(groups=True, offline_access=True), login)
    token = json.loads(grant.connector_data or b"")["accessToken"]
    identity = await conn.token_identity(TOKEN_TYPE_ACCESS, token)
    assert identity.user_id == "42" and identity.groups == ("platform", "platform/sre", "docs")


async def test_refusals(served: Any, gitlab: FakeGitLab) -> None:
    conn = make(served)
    with pytest.raises(GrantRevokedError, match="HTTP 401"):
        await conn.token_identity(TOKEN_TYPE_ACCESS, "glpat-not-a-real-token-00")
    # GitLab's API takes no ID token as a bearer token: refused without asking it.
    gitlab.paths.clear()
    with pytest.raises(ConnectorError, match="access token only"):
        await conn.token_identity(TOKEN_TYPE_ID, gitlab.personal_token("jdoe"))
    assert gitlab.paths == []
    # The groups restriction applies as at login.
    restricted = make(served, groups=["security"])
    with pytest.raises(UserNotInRequiredGroupsError):
        await restricted.token_identity(TOKEN_TYPE_ACCESS, gitlab.personal_token("jdoe"))
    # A token without the openid scope cannot read the groups: GitLab answers 403, the exchange fails
    # (Dex fails the same way: it always asks for the groups).
    with pytest.raises(ConnectorError, match="HTTP 403"):
        await conn.token_identity(TOKEN_TYPE_ACCESS, gitlab.personal_token("jdoe", scopes="read_user"))


async def test_mock_callback_vouches_for_any_token() -> None:
    conn = MockCallbackConnector()
    assert isinstance(conn, TokenIdentityConnector)
    identity = await conn.token_identity(TOKEN_TYPE_ID, "anything")
    assert identity == MockCallbackConnector.identity


PORTICO = """
issuer: https://portico.example/dex
storage: {{type: memory}}
web: {{http: 127.0.0.1:5556}}
staticClients:
- id: ci
  secret: ci-secret
  redirectURIs: [https://ci.example/callback]
connectors:
- type: gitlab
  id: gitlab
  name: GitLab
  config:
    baseURL: {base}
    clientID: {client_id}
    clientSecret: "{client_secret}"
    redirectURI: https://portico.example/dex/callback
- type: mockCallback
  id: mock
  name: Mock
"""


@pytest.fixture
async def token_endpoint(served: tuple[FakeGitLab, FakeServer]) -> AsyncIterator[Any]:
    config, problems = parse_config(PORTICO.format(base=served[1].url + PREFIX, client_id=DEFAULT_CLIENT_ID,
                                                   client_secret=DEFAULT_CLIENT_SECRET))
    assert config is not None, [str(p) for p in problems]
    storage = await open_storage(StorageConfig(type="memory"))
    clock = FrozenClock()
    keys = KeyManager(storage, clock, algorithm=config.signer.algorithm,
                      rotation_period=config.signer.keys_rotation_period,
                      id_token_lifetime=config.expiry.id_tokens)
    await keys.rotate_if_due()
    await keys.refresh()
    snapshot = await build_snapshot(config, default_registry(), storage=storage)
    app = create_app(Deps(storage=storage, keys=keys, clock=clock, snapshot=snapshot))
    await app.startup()
    try:
        yield app.test_client()
    finally:
        await app.shutdown()
        await storage.close()


async def _exchange(client: Any, **form: str) -> tuple[int, dict[str, Any]]:
    basic = "Basic " + base64.b64encode(b"ci:ci-secret").decode()
    answer = await client.post("/dex/token", headers={"Authorization": basic},
                               form={"grant_type": EXCHANGE, **form})
    return answer.status_code, await answer.get_json()


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def test_portico_exchanges_a_gitlab_token(token_endpoint: Any, gitlab: FakeGitLab) -> None:
    def form(subject_token: str, scope: str) -> dict[str, str]:
        return {"connector_id": "gitlab", "subject_token": subject_token, "scope": scope,
                "subject_token_type": TOKEN_TYPE_ACCESS, "requested_token_type": TOKEN_TYPE_ID}

    pat = gitlab.personal_token("jdoe")
    status, body = await _exchange(token_endpoint, **form(pat, "openid email groups"))
    assert status == 200, body
    assert body["issued_token_type"] == TOKEN_TYPE_ID and body["token_type"] == "bearer"
    claims = _claims(body["access_token"])
    # Dex's sub: protobuf {1: user id, 2: connector id}, base64url.
    assert base64.urlsafe_b64decode(claims["sub"] + "==") == b"\n\x0242\x12\x06gitlab"
    assert claims["email"] == "jane@example.com" and claims["groups"] == ["platform", "platform/sre", "docs"]
    assert claims["aud"] == "ci"
    # Without the groups scope the groups stay out, though the connector read them.
    status, body = await _exchange(token_endpoint, **form(gitlab.personal_token("jdoe"), "openid email"))
    assert status == 200 and "groups" not in _claims(body["access_token"])
    status, body = await _exchange(token_endpoint, **form("glpat-revoked-token-000", "openid"))
    assert (status, body) == (401, {"error": "access_denied"})


async def test_portico_exchanges_through_mock_callback(token_endpoint: Any) -> None:
    status, body = await _exchange(token_endpoint, connector_id="mock", subject_token="whatever",
                                   subject_token_type=TOKEN_TYPE_ACCESS, scope="openid email")
    assert status == 200, body
    claims = _claims(body["access_token"])
    assert claims["email"] == MOCK_EMAIL
    assert base64.urlsafe_b64decode(claims["sub"] + "==").startswith(b"\n\x0d" + MOCK_USER_ID.encode())
