"""The `atlassian-crowd` connector against a fake Crowd: passwords, users, nested groups, refresh."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.crowd import APP_NAME, APP_PASSWORD, CrowdUser, FakeCrowd
from fakes.server import FakeServer

from appliance.connectors.base import (
    Identity,
    PasswordConnector,
    RefreshConnector,
    Scopes,
    UserNotInRequiredGroupsError,
)
from appliance.connectors.crowd import CrowdConnector, open_crowd
from appliance.connectors.social_http import UpstreamDenied
from appliance.errors import ConnectorError


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeCrowd, FakeServer]]:
    fake = FakeCrowd()
    server = FakeServer(fake.app).start()
    yield fake, server
    server.stop()


@pytest.fixture
def crowd(served: tuple[FakeCrowd, FakeServer]) -> FakeCrowd:
    fake, _ = served
    fake.reset()
    fake.users["carol"] = CrowdUser(
        name="carol",
        key="K-1",
        password="pa ss/wörd",
        email="carol@example.com",
        groups=["jira-users", "confluence-users", "admins"],
    )
    fake.users["frozen"] = CrowdUser(name="frozen", key="K-2", password="pw", active=False)
    return fake


def make(served: tuple[FakeCrowd, FakeServer], **extra: Any) -> CrowdConnector:
    config = {
        "baseURL": served[1].url + "/crowd/",
        "clientID": APP_NAME,
        "clientSecret": APP_PASSWORD,
        **extra,
    }
    return open_crowd("crowd", config)


async def test_password_login(served: Any, crowd: FakeCrowd) -> None:
    conn = make(served, preferredUsernameField="email", usernamePrompt="Crowd login")
    assert isinstance(conn, PasswordConnector) and isinstance(conn, RefreshConnector)
    assert conn.prompt() == "Crowd login" and make(served).prompt() == ""
    identity = await conn.login(Scopes(), "carol", "pa ss/wörd")
    assert identity == Identity(
        user_id="K-1",
        username="carol",
        preferred_username="carol@example.com",
        email="carol@example.com",
        email_verified=True,
    )
    assert crowd.sessions == [("carol", True)]


async def test_wrong_credentials_are_none(served: Any, crowd: FakeCrowd) -> None:
    conn = make(served)
    assert await conn.login(Scopes(), "carol", "wrong") is None
    assert await conn.login(Scopes(), "nobody", "pw") is None
    assert await conn.login(Scopes(), "carol", "") is None
    assert crowd.sessions == []
    with pytest.raises(UpstreamDenied, match="INACTIVE_ACCOUNT"):
        await conn.login(Scopes(), "frozen", "pw")


async def test_groups(served: Any, crowd: FakeCrowd) -> None:
    assert (await make(served).login(Scopes(groups=True), "carol", "pa ss/wörd")).groups == (  # type: ignore[union-attr]
        "jira-users",
        "confluence-users",
        "admins",
    )
    assert crowd.group_queries[-1] == {"username": "carol", "start-index": "0", "max-results": "1000"}
    filtered = await make(served, groups=["admins", "x"]).login(Scopes(groups=True), "carol", "pa ss/wörd")
    assert filtered is not None and filtered.groups == ("admins",)
    with pytest.raises(UserNotInRequiredGroupsError):
        await make(served, groups=["x"]).login(Scopes(groups=True), "carol", "pa ss/wörd")


async def test_outages_and_misconfiguration(served: Any, crowd: FakeCrowd) -> None:
    with pytest.raises(ConnectorError, match="refused the application"):
        await make(served, clientSecret="wrong").login(Scopes(), "carol", "pa ss/wörd")
    crowd.remote_address_allowed = False
    with pytest.raises(ConnectorError, match="remote addresses"):
        await make(served).login(Scopes(), "carol", "pa ss/wörd")
    crowd.remote_address_allowed = True
    crowd.failure = 500
    with pytest.raises(ConnectorError, match="HTTP 500"):
        await make(served).login(Scopes(), "carol", "pa ss/wörd")


async def test_refresh(served: Any, crowd: FakeCrowd) -> None:
    conn = make(served)
    identity = await conn.login(Scopes(offline_access=True), "carol", "pa ss/wörd")
    assert identity is not None and json.loads(identity.connector_data or b"") == {"username": "carol"}
    crowd.users["carol"].email = "carol@new.example"
    refreshed = await conn.refresh(Scopes(groups=True), identity)
    assert refreshed.email == "carol@new.example" and refreshed.groups == (
        "jira-users",
        "confluence-users",
        "admins",
    )
    assert crowd.sessions[-1] == ("carol", False) and refreshed.connector_data == identity.connector_data
    crowd.users["carol"].active = False
    # Deactivated or removed since the login: refused for good (invalid_grant), not an outage.
    with pytest.raises(UpstreamDenied, match="INACTIVE_ACCOUNT"):
        await conn.refresh(Scopes(), identity)
    del crowd.users["carol"]
    with pytest.raises(UpstreamDenied, match="does not exist"):
        await conn.refresh(Scopes(), identity)
    with pytest.raises(ConnectorError, match="names no user"):
        await conn.refresh(Scopes(), Identity(user_id="K-1"))


def test_config() -> None:
    with pytest.raises(ValueError, match=r"baseURL: is required.*preferredUsernameField: must be one of"):
        open_crowd("c", {"clientID": "a", "clientSecret": "b", "preferredUsernameField": "login"})
