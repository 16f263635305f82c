"""The generic `oauth` connector against a real OAuth 2.0 server (node-oidc-provider's endpoints)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from upstream.op import CALLBACK, SECRET, UpstreamOP, browse, free_port

from appliance.connectors.base import Scopes
from appliance.connectors.oauth import OAuthConnector, open_oauth
from appliance.connectors.upstream_claims import go_value_string
from appliance.connectors.upstream_http import UpstreamRefusedError
from appliance.errors import ConnectorError

GROUPS = Scopes(groups=True)


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamOP]:
    provider = UpstreamOP(tmp_path_factory.mktemp("op"))
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def endpoints(op: UpstreamOP) -> dict[str, str]:
    document = httpx.get(op.issuer + "/.well-known/openid-configuration").json()
    return {"authorizationURL": document["authorization_endpoint"], "tokenURL": document["token_endpoint"],
            "userInfoURL": document["userinfo_endpoint"]}


def config(endpoints: dict[str, str], **extra: Any) -> dict[str, Any]:
    """A Dex `oauth` block for the provider; userinfo needs the openid scope there."""
    return {"clientID": "portico", "clientSecret": SECRET, "redirectURI": CALLBACK,
            "scopes": ["openid", "profile", "email", "groups"], "userIDKey": "sub", **endpoints, **extra}


async def login(connector: OAuthConnector, user: str, scopes: Scopes = GROUPS, **browse_args: Any) -> Any:
    url = await connector.login_url(scopes, CALLBACK, "auth-request-7")
    return await connector.handle_callback(scopes, await browse(url, user, **browse_args))


async def test_login_reads_the_user_from_userinfo(endpoints: dict[str, str]) -> None:
    connector = open_oauth("generic", config(endpoints, claimMapping={"userNameKey": "name"}))
    url = await connector.login_url(GROUPS, CALLBACK, "auth-request-7")
    query = parse_qs(urlsplit(url).query)
    assert query["state"] == ["auth-request-7"] and query["scope"] == ["openid profile email groups"]
    assert query["client_id"] == ["portico"] and query["redirect_uri"] == [CALLBACK]
    assert "code_challenge" not in query  # Dex's oauth connector sends no PKCE

    identity = await connector.handle_callback(GROUPS, await browse(url, "alice"))
    assert identity.user_id == "alice"
    assert identity.username == "Alice Liddell"
    assert identity.preferred_username == "alice"
    assert identity.email == "alice@example.org" and identity.email_verified is True
    assert identity.groups == ("admins", "devs", "wonderland-team")
    assert identity.connector_data is None


async def test_groups_only_when_asked_and_access_token_kept_for_offline(endpoints: dict[str, str]) -> None:
    connector = open_oauth("generic", config(endpoints))
    identity = await login(connector, "bob", Scopes(offline_access=True))
    assert identity.groups == ()
    assert identity.username == ""  # Dex's default userNameKey is user_name, which this server lacks
    data = json.loads(identity.connector_data or b"{}")
    assert set(data) == {"AccessToken"} and data["AccessToken"]


async def test_claim_mapping_keys(endpoints: dict[str, str]) -> None:
    connector = open_oauth("generic", config(endpoints, userIDKey="email", claimMapping={
        "userNameKey": "login", "preferredUsernameKey": "nickname", "groupsKey": "no-such-claim",
        "emailKey": "preferred_username", "emailVerifiedKey": "no-such-claim"}))
    identity = await login(connector, "alice")
    assert identity.user_id == "alice@example.org"
    assert identity.username == "aliddell"
    assert identity.preferred_username == "al"  # only userinfo has nickname, and userinfo is the source
    assert identity.email == "alice" and identity.email_verified is False
    assert identity.groups == ()


async def test_a_numeric_user_id_is_written_as_dex_writes_it(endpoints: dict[str, str]) -> None:
    connector = open_oauth("generic", config(endpoints, userIDKey="uid_number"))
    # Go decodes JSON numbers to float64 and Dex prints them with %v: the same `sub` must come out here.
    assert (await login(connector, "alice")).user_id == "1.2345678e+07"
    with pytest.raises(ConnectorError, match="not found uid_number claim"):
        await login(connector, "bob")


async def test_the_default_user_id_key_is_id(endpoints: dict[str, str]) -> None:
    connector = open_oauth("generic", {k: v for k, v in config(endpoints).items() if k != "userIDKey"})
    with pytest.raises(ConnectorError, match="not found id claim"):
        await login(connector, "alice")


async def test_falls_back_to_client_secret_post_and_remembers(endpoints: dict[str, str]) -> None:
    # The provider refuses Basic authentication for this client (as Okta does); Go's oauth2 auto-detects.
    connector = open_oauth("generic", config(endpoints, clientID="portico-post"))
    assert (await login(connector, "alice")).user_id == "alice"
    assert connector._auth_methods == ["client_secret_post"]
    assert (await login(connector, "bob")).user_id == "bob"


async def test_a_wrong_secret_is_a_connector_error(endpoints: dict[str, str]) -> None:
    connector = open_oauth("generic", config(endpoints, clientSecret="wrong"))
    with pytest.raises(ConnectorError, match="failed to get token: invalid_client"):
        await login(connector, "alice")


async def test_the_upstream_saying_no(endpoints: dict[str, str]) -> None:
    connector = open_oauth("generic", config(endpoints))
    params = await browse(await connector.login_url(GROUPS, CALLBACK, "r"), "alice", abort=True)
    with pytest.raises(UpstreamRefusedError, match="access_denied"):
        await connector.handle_callback(GROUPS, params)
    with pytest.raises(ConnectorError, match="no code"):
        await connector.handle_callback(GROUPS, {"state": "r"})


async def test_a_down_upstream_is_a_clear_connector_error(endpoints: dict[str, str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    connector = open_oauth("generic", config(endpoints, tokenURL=dead + "/token"))
    params = await browse(await connector.login_url(GROUPS, CALLBACK, "r"), "alice")
    started = time.monotonic()
    with pytest.raises(ConnectorError, match=f"cannot reach the upstream's token endpoint at {dead}/token"):
        await connector.handle_callback(GROUPS, params)
    assert time.monotonic() - started < 5
    userinfo_down = open_oauth("generic", config(endpoints, userInfoURL=dead + "/me"))
    params = await browse(await userinfo_down.login_url(GROUPS, CALLBACK, "r"), "alice")
    with pytest.raises(ConnectorError, match="cannot reach the upstream's userinfo endpoint"):
        await userinfo_down.handle_callback(GROUPS, params)


async def test_the_callback_url_must_be_the_configured_one(endpoints: dict[str, str]) -> None:
    connector = open_oauth("generic", config(endpoints))
    with pytest.raises(ConnectorError, match="did not match the URL in the config"):
        await connector.login_url(GROUPS, "https://elsewhere.example/callback", "r")


def test_config_is_checked_with_every_problem_named() -> None:
    with pytest.raises(ValueError) as info:
        open_oauth("bad", {"clientSecret": "hunter2", "tokenURL": "ftp://x",
                           "claimMapping": {"groupKey": "g"}, "insecureSkipVerify": "yes"})
    message = str(info.value)
    for expected in ("clientID is required", "redirectURI is required", "authorizationURL is required",
                     "userInfoURL is required", "tokenURL must be an http(s) URL",
                     'unknown key claimMapping.groupKey (did you mean "groupsKey"?)',
                     "insecureSkipVerify must be true or false"):
        assert expected in message
    assert "hunter2" not in message
    connector = open_oauth("ok", {"ClientID": "c", "clientSecret": "hunter2", "redirectURI": CALLBACK,
                                  "tokenURL": "https://a/t", "authorizationURL": "https://a/a",
                                  "userinfoURL": "https://a/u"})
    assert connector.config.userinfo_url == "https://a/u" and "hunter2" not in repr(connector.config)


@pytest.mark.parametrize(("value", "expected"), [
    ("abc", "abc"),
    (12345678, "1.2345678e+07"),
    (999999, "999999"),
    (1000000, "1e+06"),
    (967361082460459008, "9.67361082460459e+17"),
    (42.5, "42.5"),
    (0.0001, "0.0001"),
    (0.00001, "1e-05"),
    (-7, "-7"),
    (0, "0"),
    (True, None),
    ([1], None),
    ({"id": 1}, None),
    (None, None),
])
def test_go_value_string_matches_fmt_v(value: object, expected: str | None) -> None:
    assert go_value_string(value) == expected
