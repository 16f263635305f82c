"""The `github` connector against a fake GitHub over loopback HTTP(S): emails, orgs, teams, refresh, TLS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes.github import API, API_VERSION, FakeGitHub, GitHubUser
from fakes.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, browse
from fakes.server import FakeServer
from fakes.tls import make_tls_files

from appliance.clock import FrozenClock
from appliance.connectors.base import (
    CallbackConnector,
    Identity,
    RefreshConnector,
    Scopes,
    UserNotInRequiredGroupsError,
)
from appliance.connectors.github import GitHubConnector, GitHubHosts, domain_matches, open_github
from appliance.connectors.social_http import UpstreamDenied
from appliance.errors import ConnectorError

REDIRECT = "https://portico.example/dex/callback"
GROUPS = Scopes(groups=True)
OFFLINE = Scopes(offline_access=True)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeGitHub, FakeServer]]:
    fake = FakeGitHub(REDIRECT)
    server = FakeServer(fake.app).start()
    yield fake, server
    server.stop()


@pytest.fixture
def github(served: tuple[FakeGitHub, FakeServer]) -> FakeGitHub:
    fake, _ = served
    fake.reset()
    fake.add(
        GitHubUser(
            id=1001,
            login="octocat",
            name="Mona Lisa",
            public_email="",
            emails=[
                {"email": "old@example.org", "verified": False, "primary": False, "visibility": None},
                {"email": "mona@users.noreply.github.com", "verified": True, "primary": False},
                {"email": "mona@example.com", "verified": True, "primary": True, "visibility": "private"},
                {"email": "mona@corp.example.net", "verified": True, "primary": False},
            ],
            orgs=["acme", "widgets", "third"],
            teams=[("acme", "Core Devs", "core-devs"), ("acme", "Ops", "ops"), ("widgets", "Blue", "blue")],
        )
    )
    return fake


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


def make(
    served: tuple[FakeGitHub, FakeServer], clock: FrozenClock | None = None, **extra: Any
) -> GitHubConnector:
    _, server = served
    config = {
        "clientID": DEFAULT_CLIENT_ID,
        "clientSecret": DEFAULT_CLIENT_SECRET,
        "redirectURI": REDIRECT,
        **extra,
    }
    return open_github("github", config, hosts=GitHubHosts(web=server.url, api=server.url + API), clock=clock)


async def login(conn: GitHubConnector, scopes: Scopes, user: str = "octocat") -> Identity:
    params = await browse(await conn.login_url(scopes, REDIRECT, "state-1"), user)
    assert params["state"] == "state-1"
    return await conn.handle_callback(scopes, params)


def scopes_asked(github: FakeGitHub) -> list[str]:
    return github.oauth.authorize_requests[-1]["scope"].split(" ")


async def test_login_url_is_githubs_authorize_request(served: Any, github: FakeGitHub) -> None:
    conn = make(served)
    assert isinstance(conn, CallbackConnector) and isinstance(conn, RefreshConnector)
    url = await conn.login_url(Scopes(), REDIRECT, "st")
    parts = urlsplit(url)
    assert parts.path == "/login/oauth/authorize"
    assert parse_qs(parts.query) == {
        "client_id": [DEFAULT_CLIENT_ID],
        "redirect_uri": [REDIRECT],
        "response_type": ["code"],
        "scope": ["user:email"],
        "state": ["st"],
    }
    assert "read:org" in parse_qs(urlsplit(await conn.login_url(GROUPS, REDIRECT, "s")).query)["scope"][0]
    with_orgs = make(served, orgs=[{"name": "acme"}])
    assert parse_qs(urlsplit(await with_orgs.login_url(Scopes(), REDIRECT, "s")).query)["scope"] == [
        "user:email read:org"
    ]
    with pytest.raises(ConnectorError, match="did not match"):
        await conn.login_url(Scopes(), "https://elsewhere.example/callback", "st")


async def test_private_primary_verified_email_across_pages(served: Any, github: FakeGitHub) -> None:
    identity = await login(make(served), Scopes())
    assert identity == Identity(
        user_id="1001",
        username="Mona Lisa",
        preferred_username="octocat",
        email="mona@example.com",
        email_verified=True,
    )
    # The primary address sat on the second page of /user/emails (two per page).
    assert [path for path, _ in github.api_requests] == [
        f"{API}/user",
        f"{API}/user/emails",
        f"{API}/user/emails",
    ]
    assert all(version == API_VERSION for _, version in github.api_requests)
    # The client secret holds characters that Basic auth must form-encode; the fake decoded them.
    assert github.oauth.token_auth_headers == ["Basic"]


async def test_public_email_login_as_id_and_name_fallback(served: Any, github: FakeGitHub) -> None:
    github.add(GitHubUser(id=7, login="plain", public_email="plain@example.com"))
    identity = await login(make(served, useLoginAsID=True), Scopes(), "plain")
    assert (identity.user_id, identity.username, identity.email) == ("plain", "plain", "plain@example.com")
    assert [path for path, _ in github.api_requests] == [f"{API}/user"]  # no need for /user/emails


async def test_user_without_verified_primary_email_is_refused(served: Any, github: FakeGitHub) -> None:
    github.add(
        GitHubUser(
            id=8,
            login="nomail",
            emails=[
                {"email": "a@example.com", "verified": False, "primary": True},
                {"email": "b@example.com", "verified": True, "primary": False},
            ],
        )
    )
    with pytest.raises(UpstreamDenied, match="no verified, primary email"):
        await login(make(served), Scopes(), "nomail")


async def test_preferred_email_domain(served: Any, github: FakeGitHub) -> None:
    github.users["octocat"].public_email = "mona@example.com"
    identity = await login(make(served, preferredEmailDomain="*.example.net"), Scopes())
    assert identity.email == "mona@corp.example.net"
    assert await login(make(served, preferredEmailDomain="nowhere.org"), Scopes()) is not None
    assert (
        await login(make(served, preferredEmailDomain="nowhere.org"), Scopes())
    ).email == "mona@example.com"
    assert domain_matches("a.example.com", "*.example.com") and not domain_matches(
        "example.com", "*.example.com"
    )
    assert not domain_matches("a.b.example.com", "*.example.com")


async def test_orgs_and_teams_restrict_and_name_groups(served: Any, github: FakeGitHub) -> None:
    conn = make(served, orgs=[{"name": "acme", "teams": ["Ops", "Nope"]}, {"name": "widgets"}])
    identity = await login(conn, Scopes())  # groups are fetched for `orgs` even without the scope
    assert identity.groups == ("acme:Ops", "widgets:Blue")

    slug = make(served, orgs=[{"name": "acme"}], teamNameField="slug")
    assert (await login(slug, GROUPS)).groups == ("acme:core-devs", "acme:ops")
    both = make(served, orgs=[{"name": "acme", "teams": ["ops"]}], teamNameField="both")
    assert (await login(both, GROUPS)).groups == ("acme:ops",)


async def test_user_outside_the_listed_orgs_is_refused(served: Any, github: FakeGitHub) -> None:
    with pytest.raises(UserNotInRequiredGroupsError, match="not in required orgs or teams"):
        await login(make(served, orgs=[{"name": "strangers"}]), Scopes())
    with pytest.raises(UserNotInRequiredGroupsError):
        await login(make(served, orgs=[{"name": "acme", "teams": ["Nope"]}]), Scopes())


async def test_member_of_org_without_teams_is_allowed_with_no_groups(served: Any, github: FakeGitHub) -> None:
    identity = await login(make(served, orgs=[{"name": "third"}]), GROUPS)
    assert identity.groups == ()


async def test_legacy_org_gives_bare_team_names(served: Any, github: FakeGitHub) -> None:
    identity = await login(make(served, org="acme"), Scopes())
    assert identity.groups == ("Core Devs", "Ops")


async def test_load_all_groups_pages_through_orgs_and_teams(served: Any, github: FakeGitHub) -> None:
    conn = make(served, loadAllGroups=True)
    assert (await login(conn, Scopes())).groups == ()  # only with the groups scope
    identity = await login(conn, GROUPS)
    assert identity.groups == ("acme", "acme:Core Devs", "acme:Ops", "widgets", "widgets:Blue", "third")
    org_pages = [path for path, _ in github.api_requests if path == f"{API}/user/orgs"]
    assert len(org_pages) == 2


async def test_api_failures_are_connector_errors(served: Any, github: FakeGitHub) -> None:
    github.failures[f"{API}/user"] = 500
    with pytest.raises(ConnectorError, match="HTTP 500") as info:
        await login(make(served), Scopes())
    assert not isinstance(info.value, UpstreamDenied)
    github.failures = {f"{API}/user/teams": 403}
    with pytest.raises(ConnectorError, match="HTTP 403"):
        await login(make(served, loadAllGroups=True), GROUPS)
    github.failures = {}
    github.oauth.token_failure = 502
    with pytest.raises(ConnectorError, match="failed to get token"):
        await login(make(served), Scopes())


async def test_bad_code_denied_consent_and_missing_code(served: Any, github: FakeGitHub) -> None:
    conn = make(served)
    with pytest.raises(ConnectorError, match="bad_verification_code"):
        await conn.handle_callback(Scopes(), {"code": "forged", "state": "s"})
    params = await browse(await conn.login_url(Scopes(), REDIRECT, "s"), "octocat", deny=True)
    with pytest.raises(UpstreamDenied, match="access_denied"):
        await conn.handle_callback(Scopes(), params)
    with pytest.raises(ConnectorError, match="no authorization code"):
        await conn.handle_callback(Scopes(), {"state": "s"})


async def test_wrong_client_secret_is_a_connector_error(served: Any, github: FakeGitHub) -> None:
    conn = make(served, clientSecret="wrong")
    with pytest.raises(ConnectorError, match="incorrect_client_credentials"):
        await login(conn, Scopes())


async def test_next_page_link_to_another_host_is_refused(served: Any, github: FakeGitHub) -> None:
    github.link_base = "https://attacker.example/api/v3/user/emails"
    with pytest.raises(ConnectorError, match="another host"):
        await login(make(served), Scopes())


async def test_refresh_refetches_user_and_groups(served: Any, github: FakeGitHub) -> None:
    conn = make(served, orgs=[{"name": "acme"}])
    identity = await login(conn, Scopes(offline_access=True, groups=True))
    data = json.loads(identity.connector_data or b"")
    assert set(data) == {"accessToken", "expiry"} and data["expiry"] == "0001-01-01T00:00:00Z"
    github.users["octocat"].name = "Mona Renamed"
    github.users["octocat"].teams = [("acme", "Ops", "ops")]
    refreshed = await conn.refresh(GROUPS, identity)
    assert refreshed.username == "Mona Renamed" and refreshed.groups == ("acme:Ops",)
    assert refreshed.user_id == "1001" and refreshed.connector_data == identity.connector_data
    github.users["octocat"].orgs = ["widgets"]
    with pytest.raises(UserNotInRequiredGroupsError):
        await conn.refresh(GROUPS, identity)
    with pytest.raises(ConnectorError, match="no upstream access token"):
        await conn.refresh(GROUPS, Identity(user_id="1001"))


async def test_refresh_renews_an_expired_github_app_token(
    served: Any, github: FakeGitHub, clock: FrozenClock
) -> None:
    github.oauth.expires_in = 28800
    github.oauth.issue_refresh_tokens = True
    conn = make(served, clock=clock)
    identity = await login(conn, OFFLINE)
    first = json.loads(identity.connector_data or b"")
    assert first["refreshToken"] and first["expiry"].startswith("2026-01-01T08:00:00")
    assert await conn.refresh(Scopes(), identity) == identity  # still valid: nothing to store
    clock.advance(timedelta(hours=9))
    github.oauth.expire_access_tokens()
    refreshed = await conn.refresh(Scopes(), identity)
    second = json.loads(refreshed.connector_data or b"")
    assert second["accessToken"] != first["accessToken"] and second["refreshToken"] != first["refreshToken"]
    assert github.oauth.token_requests[-1]["grant_type"] == "refresh_token"
    # The old refresh token was rotated away upstream: using it again fails as an upstream refusal.
    clock.advance(timedelta(hours=9))
    with pytest.raises(UpstreamDenied, match="bad_refresh_token"):
        await conn.refresh(Scopes(), identity)


@pytest.fixture(scope="module")
def enterprise(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeGitHub, FakeServer, Path]]:
    files = make_tls_files(tmp_path_factory.mktemp("ghe-tls"))
    fake = FakeGitHub(REDIRECT)
    server = FakeServer(fake.app, files.cert, files.key).start()
    yield fake, server, files.ca_pem
    server.stop()


async def test_github_enterprise_over_tls_with_root_ca(
    enterprise: tuple[FakeGitHub, FakeServer, Path],
) -> None:
    fake, server, ca = enterprise
    fake.reset()
    # GitHub Enterprise cannot verify addresses, so an unverified primary one is taken.
    fake.add(
        GitHubUser(
            id=5, login="ghe", emails=[{"email": "ghe@corp.example", "verified": False, "primary": True}]
        )
    )
    config = {
        "clientID": DEFAULT_CLIENT_ID,
        "clientSecret": DEFAULT_CLIENT_SECRET,
        "redirectURI": REDIRECT,
        "hostName": server.host,
        "rootCA": str(ca),
    }
    conn = open_github("ghe", config)
    url = await conn.login_url(Scopes(), REDIRECT, "s")
    assert url.startswith(f"https://{server.host}/login/oauth/authorize?")
    identity = await conn.handle_callback(Scopes(), await browse(url, "ghe", ca_file=str(ca)))
    assert identity.email == "ghe@corp.example" and identity.user_id == "5"

    untrusting = open_github("ghe", {**config, "rootCA": None, "hostName": server.host})
    params = await browse(await untrusting.login_url(Scopes(), REDIRECT, "s"), "ghe", ca_file=str(ca))
    with pytest.raises(ConnectorError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await untrusting.handle_callback(Scopes(), params)


def test_config_is_read_like_dex(tmp_path: Path) -> None:
    conn = open_github(
        "g",
        {
            "ClientId": "id",
            "CLIENTSECRET": "topsecret-value",
            "redirecturi": REDIRECT,
            "orgs": [{"Name": "acme", "TEAMS": ["a"]}],
            "TeamNameField": "both",
        },
    )
    assert conn.cfg.client_id == "id" and conn.cfg.orgs[0].teams == ("a",)
    assert "topsecret" not in repr(conn.cfg) and "topsecret" not in repr(conn)
    with pytest.raises(ValueError) as info:
        open_github(
            "g",
            {
                "clientID": "id",
                "redirectURI": REDIRECT,
                "org": "a",
                "orgs": [{"name": "b"}],
                "hostName": "https://ghe.example/",
                "teamNameField": "login",
                "preferredEmailDomain": "*",
                "loadAllGroup": True,
            },
        )
    message = str(info.value)
    for expected in (
        "clientSecret: is required",
        "org: cannot be used together with orgs",
        "hostName:",
        "teamNameField: must be one of name, slug, both",
        "preferredEmailDomain:",
        'unknown key loadAllGroup (did you mean "loadAllGroups"?)',
    ):
        assert expected in message
    with pytest.raises(ValueError, match="rootCA: needs hostName"):
        open_github(
            "g",
            {
                "clientID": "i",
                "clientSecret": "s",
                "redirectURI": REDIRECT,
                "rootCA": str(make_tls_files(tmp_path).ca_pem),
            },
        )
    with pytest.raises(ValueError, match="rootCA: cannot read"):
        open_github(
            "g",
            {
                "clientID": "i",
                "clientSecret": "s",
                "redirectURI": REDIRECT,
                "hostName": "ghe.example",
                "rootCA": str(tmp_path / "missing.pem"),
            },
        )
