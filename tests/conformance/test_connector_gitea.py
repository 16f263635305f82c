"""The `gitea` connector against a fake Gitea: orgs and teams, paging with and without Link, refresh."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fakes.gitea import FakeGitea, GiteaUser
from fakes.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, browse
from fakes.server import FakeServer

from appliance.clock import FrozenClock
from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.gitea import GiteaConnector, open_gitea
from appliance.errors import ConnectorError

REDIRECT = "https://portico.example/dex/callback"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeGitea, FakeServer]]:
    fake = FakeGitea(REDIRECT)
    server = FakeServer(fake.app).start()
    yield fake, server
    server.stop()


@pytest.fixture
def gitea(served: tuple[FakeGitea, FakeServer]) -> FakeGitea:
    fake, _ = served
    fake.reset()
    fake.users["gus"] = GiteaUser(
        id=12,
        login="gus",
        full_name="Gus Grey",
        email="gus@example.com",
        teams=[("infra", "Owners"), ("infra", "ops"), ("web", "Owners")],
    )
    return fake


def make(
    served: tuple[FakeGitea, FakeServer], clock: FrozenClock | None = None, **extra: Any
) -> GiteaConnector:
    config = {
        "baseURL": served[1].url,
        "clientID": DEFAULT_CLIENT_ID,
        "clientSecret": DEFAULT_CLIENT_SECRET,
        "redirectURI": REDIRECT,
        **extra,
    }
    return open_gitea("gitea", config, clock=clock)


async def login(conn: GiteaConnector, scopes: Scopes, user: str = "gus") -> Identity:
    return await conn.handle_callback(scopes, await browse(await conn.login_url(scopes, REDIRECT, "s"), user))


async def test_login(served: Any, gitea: FakeGitea) -> None:
    identity = await login(make(served), Scopes(groups=True))  # groups need orgs or loadAllGroups
    assert identity == Identity(
        user_id="12",
        username="Gus Grey",
        preferred_username="gus",
        email="gus@example.com",
        email_verified=True,
    )
    gitea.users["anon"] = GiteaUser(id=13, login="anon", email="anon@example.com")
    identity = await login(make(served, useLoginAsID=True), Scopes(), "anon")
    assert (identity.user_id, identity.username) == ("anon", "anon@example.com")


async def test_load_all_groups_pages(served: Any, gitea: FakeGitea) -> None:
    expected = ("infra", "infra:Owners", "infra:ops", "web", "web:Owners")
    assert (await login(make(served, loadAllGroups=True), Scopes())).groups == expected
    assert gitea.team_pages == 2  # three teams, two a page, the Link header says when to stop
    gitea.link_headers = False
    gitea.team_pages = 0
    assert (await login(make(served, loadAllGroups=True), Scopes())).groups == expected
    assert gitea.team_pages == 3  # without Link: until an empty page, as Dex does


async def test_orgs_filter(served: Any, gitea: FakeGitea) -> None:
    conn = make(served, orgs=[{"name": "infra", "teams": ["ops"]}, {"name": "docs"}])
    assert (await login(conn, Scopes())).groups == ("infra", "infra:ops")
    with pytest.raises(UserNotInRequiredGroupsError, match="approved groups"):
        await login(make(served, orgs=[{"name": "docs"}]), Scopes())


async def test_errors_and_refresh(served: Any, gitea: FakeGitea) -> None:
    clock = FrozenClock()
    gitea.oauth.expires_in = 3600
    gitea.oauth.issue_refresh_tokens = True
    conn = make(served, clock=clock, loadAllGroups=True)
    identity = await login(conn, Scopes(offline_access=True))
    assert json.loads(identity.connector_data or b"")["refreshToken"]
    gitea.users["gus"].teams = [("web", "Owners")]
    clock.advance(timedelta(hours=2))
    gitea.oauth.expire_access_tokens()
    refreshed = await conn.refresh(Scopes(), identity)
    assert refreshed.groups == ("web", "web:Owners") and refreshed.connector_data != identity.connector_data
    gitea.failure = 500
    with pytest.raises(ConnectorError, match="HTTP 500"):
        await conn.refresh(Scopes(), refreshed)


async def test_client_secret_in_the_body_when_basic_is_refused(served: Any, gitea: FakeGitea) -> None:
    gitea.oauth.auth_styles = ("post",)  # Go's auto-detection: Basic first, then the form body
    assert (await login(make(served), Scopes())).user_id == "12"
    assert gitea.oauth.token_auth_headers == ["Basic", ""]
    gitea.oauth.auth_styles = ("basic", "post")
    with pytest.raises(ConnectorError, match="invalid_client"):
        await login(make(served, clientSecret="wrong"), Scopes())
    assert gitea.oauth.token_auth_headers[-2:] == ["Basic", ""]


def test_config() -> None:
    assert open_gitea("g", {"clientID": "i", "clientSecret": "s", "redirectURI": REDIRECT}).cfg.base_url == (
        "https://gitea.com"
    )
    with pytest.raises(ValueError, match=r"orgs\[0\].name: is required"):
        open_gitea(
            "g", {"clientID": "i", "clientSecret": "s", "redirectURI": REDIRECT, "orgs": [{"teams": []}]}
        )
