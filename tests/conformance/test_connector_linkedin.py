"""The `linkedin` connector against a fake LinkedIn (OpenID Connect userinfo)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes.linkedin import FakeLinkedIn
from fakes.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, browse
from fakes.server import FakeServer

from appliance.connectors.base import Identity, Scopes
from appliance.connectors.linkedin import LinkedInConnector, LinkedInEndpoints, open_linkedin
from appliance.connectors.social_http import UpstreamDenied
from appliance.errors import ConnectorError

REDIRECT = "https://portico.example/dex/callback"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeLinkedIn, FakeServer]]:
    fake = FakeLinkedIn(REDIRECT)
    server = FakeServer(fake.app).start()
    yield fake, server
    server.stop()


@pytest.fixture
def linkedin(served: tuple[FakeLinkedIn, FakeServer]) -> FakeLinkedIn:
    fake, _ = served
    fake.reset()
    fake.members["amy"] = {
        "sub": "782bbtaQ",
        "name": "Amy Adams",
        "given_name": "Amy",
        "family_name": "Adams",
        "picture": "https://media.licdn.com/x",
        "locale": {"country": "US", "language": "en"},
        "email": "amy@example.com",
        "email_verified": True,
    }
    return fake


def make(served: tuple[FakeLinkedIn, FakeServer]) -> LinkedInConnector:
    url = served[1].url
    endpoints = LinkedInEndpoints(
        auth_url=f"{url}/oauth/v2/authorization",
        token_url=f"{url}/oauth/v2/accessToken",
        userinfo_url=f"{url}/v2/userinfo",
    )
    config = {"clientID": DEFAULT_CLIENT_ID, "clientSecret": DEFAULT_CLIENT_SECRET, "redirectURI": REDIRECT}
    return open_linkedin("linkedin", config, endpoints=endpoints)


async def login(conn: LinkedInConnector, scopes: Scopes, user: str = "amy") -> Identity:
    return await conn.handle_callback(scopes, await browse(await conn.login_url(scopes, REDIRECT, "s"), user))


async def test_login_with_openid_userinfo(served: Any, linkedin: FakeLinkedIn) -> None:
    conn = make(served)
    query = parse_qs(urlsplit(await conn.login_url(Scopes(), REDIRECT, "s")).query)
    assert query["scope"] == ["openid profile email"]
    identity = await login(conn, Scopes())
    assert identity == Identity(
        user_id="782bbtaQ", username="Amy Adams", email="amy@example.com", email_verified=True
    )
    # The secret went in the form body: LinkedIn refuses Basic client authentication.
    assert linkedin.oauth.token_auth_headers == [""]
    assert linkedin.oauth.token_requests[-1]["client_secret"] == DEFAULT_CLIENT_SECRET


async def test_name_fallbacks_and_unusable_profiles(served: Any, linkedin: FakeLinkedIn) -> None:
    linkedin.members["bo"] = {"sub": "b", "given_name": "Bo", "family_name": "", "email": "bo@example.com"}
    assert (await login(make(served), Scopes(), "bo")).username == "Bo"
    linkedin.members["anon"] = {"sub": "c", "email": "anon@example.com"}
    assert (await login(make(served), Scopes(), "anon")).username == "anon@example.com"
    linkedin.members["noemail"] = {"sub": "d", "name": "No Email"}
    with pytest.raises(UpstreamDenied, match="no email address"):
        await login(make(served), Scopes(), "noemail")
    linkedin.members["unverified"] = {
        "sub": "e",
        "name": "U",
        "email": "u@example.com",
        "email_verified": False,
    }
    with pytest.raises(UpstreamDenied, match="not verified"):
        await login(make(served), Scopes(), "unverified")
    linkedin.failure = 500
    with pytest.raises(ConnectorError, match="HTTP 500"):
        await login(make(served), Scopes())


async def test_refresh_reads_the_profile_again(served: Any, linkedin: FakeLinkedIn) -> None:
    conn = make(served)
    identity = await login(conn, Scopes(offline_access=True))
    assert set(json.loads(identity.connector_data or b"")) == {"accessToken"}
    linkedin.members["amy"]["name"] = "Amy A. Adams"
    refreshed = await conn.refresh(Scopes(), identity)
    assert refreshed.username == "Amy A. Adams" and refreshed.user_id == "782bbtaQ"
    linkedin.oauth.expire_access_tokens()
    with pytest.raises(ConnectorError, match="HTTP 401"):
        await conn.refresh(Scopes(), identity)


def test_config() -> None:
    with pytest.raises(ValueError, match="unknown key scopes; clientSecret: is required"):
        open_linkedin("l", {"clientID": "i", "redirectURI": REDIRECT, "scopes": ["x"]})
