"""The `bitbucket-cloud` connector against a fake Bitbucket Cloud: emails, workspaces, paging, refresh."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes.bitbucket import API, BitbucketUser, FakeBitbucket
from fakes.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, browse
from fakes.server import FakeServer

from appliance.clock import FrozenClock
from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.bitbucket import BitbucketConnector, BitbucketEndpoints, open_bitbucket
from appliance.connectors.social_http import UpstreamDenied
from appliance.errors import ConnectorError

REDIRECT = "https://portico.example/dex/callback"
GROUPS = Scopes(groups=True)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeBitbucket, FakeServer]]:
    fake = FakeBitbucket(REDIRECT)
    server = FakeServer(fake.app).start()
    yield fake, server
    server.stop()


@pytest.fixture
def bitbucket(served: tuple[FakeBitbucket, FakeServer]) -> FakeBitbucket:
    fake, _ = served
    fake.reset()
    fake.users["bob"] = BitbucketUser(
        uuid="{c0ffee00-1111-2222-3333-444455556666}",
        username="bob",
        emails=[
            {"email": "old@example.com", "is_primary": False, "is_confirmed": True},
            {"email": "x@example.com", "is_primary": False, "is_confirmed": False},
            {"email": "bob@example.com", "is_primary": True, "is_confirmed": True},
        ],
        workspaces={"acme": "owner", "side-project": "member", "oss": "collaborator"},
    )
    return fake


def make(
    served: tuple[FakeBitbucket, FakeServer], clock: FrozenClock | None = None, **extra: Any
) -> BitbucketConnector:
    url = served[1].url
    endpoints = BitbucketEndpoints(
        auth_url=f"{url}/site/oauth2/authorize",
        token_url=f"{url}/site/oauth2/access_token",
        api_url=url + API,
    )
    config = {
        "clientID": DEFAULT_CLIENT_ID,
        "clientSecret": DEFAULT_CLIENT_SECRET,
        "redirectURI": REDIRECT,
        **extra,
    }
    return open_bitbucket("bitbucket", config, endpoints=endpoints, clock=clock)


async def login(conn: BitbucketConnector, scopes: Scopes, user: str = "bob") -> Identity:
    return await conn.handle_callback(scopes, await browse(await conn.login_url(scopes, REDIRECT, "s"), user))


async def test_login_primary_confirmed_email_on_page_two(served: Any, bitbucket: FakeBitbucket) -> None:
    conn = make(served)
    query = parse_qs(urlsplit(await conn.login_url(Scopes(), REDIRECT, "s")).query)
    assert query["scope"] == ["account email"] and "redirect_uri" not in query  # as Dex: the consumer's own
    identity = await login(conn, Scopes())
    assert identity == Identity(
        user_id="{c0ffee00-1111-2222-3333-444455556666}",
        username="bob",
        email="bob@example.com",
        email_verified=True,
    )
    assert "redirect_uri" not in bitbucket.oauth.token_requests[-1]


async def test_no_confirmed_primary_email_is_refused(served: Any, bitbucket: FakeBitbucket) -> None:
    bitbucket.users["eve"] = BitbucketUser(
        uuid="{e}",
        username="eve",
        emails=[{"email": "eve@example.com", "is_primary": True, "is_confirmed": False}],
    )
    with pytest.raises(UpstreamDenied, match="no confirmed, primary email"):
        await login(make(served), Scopes(), "eve")


async def test_workspaces_as_groups(served: Any, bitbucket: FakeBitbucket, caplog: Any) -> None:
    assert (await login(make(served), Scopes())).groups == ()
    assert (await login(make(served), GROUPS)).groups == ("acme", "side-project", "oss")
    with_perms = make(served, getWorkspacePermissions=True)
    assert (await login(with_perms, GROUPS)).groups == (
        "acme",
        "side-project",
        "oss",
        "acme:owner",
        "side-project:member",
        "oss:collaborator",
    )
    bitbucket.failures[f"{API}/user/workspaces/oss/permission"] = 500
    assert (await login(with_perms, GROUPS)).groups[-1] == "side-project:member"  # skipped, as Dex does
    with caplog.at_level(logging.WARNING):
        make(served, includeTeamGroups=True)
    assert "includeTeamGroups has no effect" in caplog.text


async def test_teams_restrict_login(served: Any, bitbucket: FakeBitbucket) -> None:
    assert (await login(make(served, teams=["oss", "other"]), Scopes())).groups == ("oss",)
    with pytest.raises(UserNotInRequiredGroupsError, match="required teams"):
        await login(make(served, teams=["other"]), Scopes())


async def test_api_errors(served: Any, bitbucket: FakeBitbucket) -> None:
    bitbucket.failures[f"{API}/user/emails"] = 500
    with pytest.raises(ConnectorError, match="HTTP 500"):
        await login(make(served), Scopes())
    bitbucket.failures = {f"{API}/user/workspaces": 403}
    with pytest.raises(ConnectorError, match="HTTP 403"):
        await login(make(served), GROUPS)


async def test_refresh(served: Any, bitbucket: FakeBitbucket) -> None:
    clock = FrozenClock()
    bitbucket.oauth.expires_in = 7200
    bitbucket.oauth.issue_refresh_tokens = True
    conn = make(served, clock=clock, teams=["acme"])
    identity = await login(conn, Scopes(offline_access=True))
    assert set(json.loads(identity.connector_data or b"")) == {"accessToken", "refreshToken", "expiry"}
    clock.advance(timedelta(hours=3))
    bitbucket.oauth.expire_access_tokens()
    refreshed = await conn.refresh(Scopes(offline_access=True), identity)
    assert refreshed.connector_data != identity.connector_data and refreshed.groups == ("acme",)
    del bitbucket.users["bob"].workspaces["acme"]
    with pytest.raises(UserNotInRequiredGroupsError):
        await conn.refresh(Scopes(offline_access=True), refreshed)
