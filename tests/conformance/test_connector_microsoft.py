"""The `microsoft` connector against a fake identity platform and Graph: tenants, groups, paging, refresh."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes.microsoft import FakeMicrosoft, Group, MicrosoftUser
from fakes.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, browse
from fakes.server import FakeServer

from appliance.clock import FrozenClock
from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.microsoft import MicrosoftConnector, open_microsoft
from appliance.connectors.social_http import UpstreamDenied
from appliance.errors import ConnectorError

REDIRECT = "https://portico.example/dex/callback"
TENANT = "3c2f5e7a-0000-4000-8000-00000000beef"
GROUPS = Scopes(groups=True)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeMicrosoft, FakeServer]]:
    fake = FakeMicrosoft(REDIRECT)
    server = FakeServer(fake.app).start()
    yield fake, server
    server.stop()


@pytest.fixture
def ms(served: tuple[FakeMicrosoft, FakeServer]) -> FakeMicrosoft:
    fake, _ = served
    fake.reset()
    for gid, name, security in [
        ("g1", "Engineering", True),
        ("g2", "All Staff", False),
        ("g3", "Admins", True),
        ("g4", "Ops", True),
        ("g5", "Lunch", False),
    ]:
        fake.groups[gid] = Group(gid, name, security)
    fake.users["ada"] = MicrosoftUser(
        id="a0b1-c2d3",
        display_name="Ada Lovelace",
        upn="Ada.Lovelace@Contoso.com",
        mail_nickname="ada",
        sam_account_name="CONTOSO\\ada",
        groups=["g1", "g2", "g3", "g4", "g5"],
    )
    return fake


def make(
    served: tuple[FakeMicrosoft, FakeServer], clock: FrozenClock | None = None, **extra: Any
) -> MicrosoftConnector:
    _, server = served
    config = {
        "clientID": DEFAULT_CLIENT_ID,
        "clientSecret": DEFAULT_CLIENT_SECRET,
        "redirectURI": REDIRECT,
        "apiURL": server.url + "/",
        "graphURL": server.url,
        "tenant": TENANT,
        **extra,
    }
    return open_microsoft("microsoft", config, clock=clock)


async def login(conn: MicrosoftConnector, scopes: Scopes, user: str = "ada") -> Identity:
    params = await browse(await conn.login_url(scopes, REDIRECT, "st"), user)
    return await conn.handle_callback(scopes, params)


async def test_login_url_per_tenant(served: Any, ms: FakeMicrosoft) -> None:
    conn = make(served, promptType="select_account", domainHint="contoso.com")
    url = await conn.login_url(Scopes(offline_access=True, groups=True), REDIRECT, "st")
    parts = urlsplit(url)
    assert parts.path == f"/{TENANT}/oauth2/v2.0/authorize"
    query = parse_qs(parts.query)
    assert query["scope"] == ["user.read directory.read.all offline_access"]
    assert query["prompt"] == ["select_account"] and query["domain_hint"] == ["contoso.com"]
    common = make(served, tenant="", scopes=["openid", "User.Read"])
    url = await common.login_url(GROUPS, REDIRECT, "st")  # no groups outside an organisation's tenant
    assert urlsplit(url).path == "/common/oauth2/v2.0/authorize"
    assert parse_qs(urlsplit(url).query)["scope"] == ["openid User.Read"]


async def test_login_reads_graph_me(served: Any, ms: FakeMicrosoft) -> None:
    identity = await login(make(served), Scopes())
    assert identity == Identity(
        user_id="a0b1-c2d3", username="Ada Lovelace", email="Ada.Lovelace@Contoso.com", email_verified=True
    )
    lowered = await login(
        make(served, emailToLowercase=True, preferredUsernameField="mailNickname"), Scopes()
    )
    assert lowered.email == "ada.lovelace@contoso.com" and lowered.preferred_username == "ada"
    sam = await login(make(served, preferredUsernameField="onPremisesSamAccountName"), Scopes())
    assert sam.preferred_username == "CONTOSO\\ada"


async def test_groups_by_name_across_pages(served: Any, ms: FakeMicrosoft) -> None:
    identity = await login(make(served), GROUPS)
    assert identity.groups == ("Engineering", "All Staff", "Admins", "Ops", "Lunch")
    assert ms.lookup_sizes == [5]  # one getByIds for all ids; its answer paged by @odata.nextLink
    security = await login(make(served, onlySecurityGroups=True, groupNameFormat="id"), GROUPS)
    assert security.groups == ("g1", "g3", "g4")
    assert (await login(make(served, tenant="organizations"), GROUPS)).groups == ()


async def test_groups_allow_list_and_whitelist(served: Any, ms: FakeMicrosoft) -> None:
    assert (await login(make(served, groups=["Ops", "Nope"]), Scopes())).groups == (
        "Engineering",
        "All Staff",
        "Admins",
        "Ops",
        "Lunch",
    )
    assert (
        await login(make(served, groups=["Ops", "Nope"], useGroupsAsWhitelist=True), Scopes())
    ).groups == ("Ops",)
    with pytest.raises(UserNotInRequiredGroupsError, match="a0b1-c2d3"):
        await login(make(served, groups=["Nope"]), Scopes())


async def test_batched_group_lookups(served: Any, ms: FakeMicrosoft) -> None:
    ms.per_page = 500
    ids = [f"x{n}" for n in range(2100)]
    for gid in ids:
        ms.groups[gid] = Group(gid, f"group-{gid}")
    ms.users["ada"].groups = ids
    with pytest.raises(ConnectorError, match="Request_BadRequest"):
        await login(make(served, groupNameFormat="name"), GROUPS)  # Dex's default: one request, too big
    identity = await login(make(served, batchGroupLookups=True), GROUPS)
    assert len(identity.groups) == 2100 and identity.groups[-1] == "group-x2099"
    assert ms.lookup_sizes[-3:] == [1000, 1000, 100]


async def test_graph_errors(served: Any, ms: FakeMicrosoft) -> None:
    ms.failures["/v1.0/me"] = 503
    with pytest.raises(ConnectorError, match="get user: HTTP 503: serviceNotAvailable"):
        await login(make(served), Scopes())
    ms.failures = {"/v1.0/me/getMemberGroups": 500}
    with pytest.raises(ConnectorError, match="get groups: HTTP 500"):
        await login(make(served), GROUPS)
    ms.failures = {}
    params = await browse(await make(served).login_url(Scopes(), REDIRECT, "s"), "ada", deny=True)
    with pytest.raises(UpstreamDenied, match="access_denied: The user denied access"):
        await make(served).handle_callback(Scopes(), params)


async def test_client_assertion_replaces_the_secret(served: Any, ms: FakeMicrosoft, tmp_path: Path) -> None:
    assertion = tmp_path / "azure-identity-token"
    assertion.write_text("eyJhbGciOiJSUzI1NiJ9.e30.sig\n")
    ms.expected_assertion = "eyJhbGciOiJSUzI1NiJ9.e30.sig"
    conn = make(served, clientSecret=None, clientAssertion=str(assertion))
    assert (await login(conn, Scopes())).user_id == "a0b1-c2d3"
    assert ms.oauth.token_auth_headers[-1] == ""  # nothing in an Authorization header
    assertion.unlink()
    with pytest.raises(ConnectorError, match="failed to read client assertion"):
        await login(conn, Scopes())


async def test_refresh_renews_expired_tokens(served: Any, ms: FakeMicrosoft) -> None:
    clock = FrozenClock()
    ms.oauth.expires_in = 3599
    ms.oauth.issue_refresh_tokens = True
    conn = make(served, clock=clock)
    scopes = Scopes(offline_access=True, groups=True)
    identity = await login(conn, scopes)
    data = json.loads(identity.connector_data or b"")
    assert set(data) == {"accessToken", "refreshToken", "expiry"}
    ms.users["ada"].display_name = "Ada King"
    ms.users["ada"].groups = ["g4"]
    same = await conn.refresh(scopes, identity)
    assert same.username == "Ada King" and same.groups == ("Ops",)
    assert same.connector_data == identity.connector_data and same.user_id == identity.user_id
    clock.advance(timedelta(hours=1))
    ms.oauth.expire_access_tokens()
    renewed = await conn.refresh(scopes, identity)
    assert json.loads(renewed.connector_data or b"")["accessToken"] != data["accessToken"]
    with pytest.raises(ConnectorError, match="no upstream access token"):
        await conn.refresh(scopes, Identity(user_id="x"))


def test_config() -> None:
    conn = open_microsoft("m", {"clientid": "i", "clientsecret": "s", "redirecturi": REDIRECT})
    assert (conn.cfg.tenant, conn.cfg.group_name_format, conn.cfg.api_url) == (
        "common",
        "name",
        "https://login.microsoftonline.com",
    )
    with pytest.raises(ValueError) as info:
        open_microsoft(
            "m",
            {
                "clientID": "i",
                "redirectURI": REDIRECT,
                "groupNameFormat": "mail",
                "preferredUsernameField": "upn",
            },
        )
    for expected in (
        "clientSecret: is required",
        "groupNameFormat: must be one of name, id",
        "preferredUsernameField: must be one of",
    ):
        assert expected in str(info.value)
