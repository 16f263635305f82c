"""The contract every social, forge and remote-password connector keeps, and the helpers they share."""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from appliance.connectors.base import CallbackConnector, Identity, PasswordConnector, RefreshConnector, Scopes
from appliance.connectors.registry import default_registry
from appliance.connectors.social_config import filter_groups, read_config
from appliance.connectors.social_http import OAuth2App, Upstream, UpstreamDenied, _basic_escaped
from appliance.connectors.social_token import (
    UpstreamToken,
    dump_token_data,
    go_time,
    load_token_data,
    parse_go_time,
    token_from_response,
)
from appliance.errors import ConnectorError

_SOCIAL_TYPES = ("github", "gitlab", "google", "microsoft", "linkedin", "bitbucket-cloud", "openshift",
                 "gitea", "atlassian-crowd", "keystone")
# Through the registry the server uses, so a type missing there fails here.
SOCIAL_FACTORIES = {name: functools.partial(default_registry().open, name) for name in _SOCIAL_TYPES}


REDIRECT = "https://portico.example/dex/callback"
SECRET = "very-secret-value-42"

# A minimal valid config per type (no upstream is contacted by anything in this module).
CONFIGS: dict[str, dict[str, Any]] = {
    "github": {"clientID": "id", "clientSecret": SECRET, "redirectURI": REDIRECT},
    "gitlab": {"clientID": "id", "clientSecret": SECRET, "redirectURI": REDIRECT},
    "google": {"clientID": "id", "clientSecret": SECRET, "redirectURI": REDIRECT},
    "microsoft": {"clientID": "id", "clientSecret": SECRET, "redirectURI": REDIRECT},
    "linkedin": {"clientID": "id", "clientSecret": SECRET, "redirectURI": REDIRECT},
    "bitbucket-cloud": {"clientID": "id", "clientSecret": SECRET, "redirectURI": REDIRECT},
    "openshift": {
        "issuer": "https://127.0.0.1:9",
        "clientID": "id",
        "clientSecret": SECRET,
        "redirectURI": REDIRECT,
    },
    "gitea": {"clientID": "id", "clientSecret": SECRET, "redirectURI": REDIRECT},
    "atlassian-crowd": {"baseURL": "https://crowd.example", "clientID": "app", "clientSecret": SECRET},
    "keystone": {"keystoneHost": "https://keystone.example", "domain": "default", "keystonePassword": SECRET},
}
CALLBACK_TYPES = [t for t in CONFIGS if t not in ("atlassian-crowd", "keystone")]


def test_every_type_is_registered_with_dexs_name() -> None:
    assert set(SOCIAL_FACTORIES) == set(CONFIGS)


@pytest.mark.parametrize("type_name", sorted(CONFIGS))
def test_kinds_and_secrets(type_name: str) -> None:
    conn = SOCIAL_FACTORIES[type_name]("c", CONFIGS[type_name])
    assert isinstance(conn, RefreshConnector)
    if type_name in CALLBACK_TYPES:
        assert isinstance(conn, CallbackConnector) and not isinstance(conn, PasswordConnector)
    else:
        assert isinstance(conn, PasswordConnector) and not isinstance(conn, CallbackConnector)
    assert SECRET not in repr(conn) and SECRET not in repr(getattr(conn, "cfg"))  # noqa: B009


@pytest.mark.parametrize("type_name", sorted(CONFIGS))
def test_keys_match_case_insensitively_and_unknown_keys_are_named(type_name: str) -> None:
    lowered = {key.lower(): value for key, value in CONFIGS[type_name].items()}
    SOCIAL_FACTORIES[type_name]("c", lowered)
    shouted = {key.upper(): value for key, value in CONFIGS[type_name].items()}
    SOCIAL_FACTORIES[type_name]("c", shouted)
    with pytest.raises(ValueError, match="unknown key clientSecrett"):
        SOCIAL_FACTORIES[type_name]("c", {**CONFIGS[type_name], "clientSecrett": "x"})
    with pytest.raises(ValueError, match="is given twice"):
        first = next(iter(CONFIGS[type_name]))
        SOCIAL_FACTORIES[type_name]("c", {**CONFIGS[type_name], first.upper(): "x", first.lower(): "y"})


@pytest.mark.parametrize("type_name", sorted(CONFIGS))
def test_required_keys_are_named_together(type_name: str) -> None:
    with pytest.raises(ValueError) as info:
        SOCIAL_FACTORIES[type_name]("c", {})
    assert str(info.value).count("is required") >= 2
    with pytest.raises(ValueError, match="must be a mapping"):
        SOCIAL_FACTORIES[type_name]("c", ["not", "a", "mapping"])  # type: ignore[arg-type]


@pytest.mark.parametrize("type_name", CALLBACK_TYPES)
async def test_callback_contract_without_network(type_name: str) -> None:
    conn = SOCIAL_FACTORIES[type_name]("c", CONFIGS[type_name])
    assert isinstance(conn, CallbackConnector) and isinstance(conn, RefreshConnector)
    with pytest.raises(ConnectorError, match="did not match the URL in the config"):
        await conn.login_url(Scopes(), "https://other.example/dex/callback", "state")
    with pytest.raises(UpstreamDenied, match="access_denied: no thanks"):
        await conn.handle_callback(Scopes(), {"error": "access_denied", "error_description": "no thanks"})
    with pytest.raises(ConnectorError, match="no authorization code"):
        await conn.handle_callback(Scopes(), {"state": "x"})
    with pytest.raises(UpstreamDenied) as info:  # a forged error must not forge log lines
        await conn.handle_callback(Scopes(), {"error": "x\nINFO fake line", "error_description": "d" * 5000})
    assert "\n" not in str(info.value) and len(str(info.value)) < 500
    with pytest.raises(ConnectorError, match="no upstream"):
        await conn.refresh(Scopes(), Identity(user_id="u"))


@pytest.mark.parametrize("type_name", ["atlassian-crowd", "keystone"])
async def test_password_contract_without_network(type_name: str) -> None:
    conn = SOCIAL_FACTORIES[type_name]("c", CONFIGS[type_name])
    assert isinstance(conn, PasswordConnector)
    assert await conn.login(Scopes(), "user", "") is None  # never sent upstream
    assert await conn.login(Scopes(), "", "password") is None


async def test_unreachable_upstream_is_a_connector_error() -> None:
    conn = SOCIAL_FACTORIES["atlassian-crowd"](
        "c", {**CONFIGS["atlassian-crowd"], "baseURL": "http://127.0.0.1:9"}
    )
    assert isinstance(conn, PasswordConnector)
    with pytest.raises(ConnectorError, match="ConnectError"):
        await conn.login(Scopes(), "user", "password")


def test_authorization_url_is_gos() -> None:
    app = OAuth2App(
        "cid", "sec", "https://idp.example/authorize?tenant=x", "https://idp.example/token", REDIRECT
    )
    url = app.login_url(["a", "b c"], "st", {"prompt": "consent"})
    assert url.startswith("https://idp.example/authorize?tenant=x&client_id=cid&prompt=consent&redirect_uri=")
    assert dict(parse_qsl(urlsplit(url).query))["scope"] == "a b c"
    silent = OAuth2App("cid", "s", "https://idp.example/a", "t", REDIRECT, send_redirect_uri=False)
    assert "redirect_uri" not in silent.login_url([], "st")


def test_basic_client_authentication_form_encodes_first() -> None:
    client = type("C", (), {"client_id": "a b:c", "client_secret": "p+/=%"})()
    headers: dict[str, str] = {}
    _basic_escaped(client, "POST", "u", headers, "")
    assert base64.b64decode(headers["Authorization"][6:]) == b"a%20b%3Ac:p%2B%2F%3D%25"


def test_connector_data_in_dexs_json_shape() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    token = token_from_response({"access_token": "at", "refresh_token": "rt", "expires_in": "3600"}, now)
    assert token.expiry == now + timedelta(hours=1) and token.usable(now)
    assert not token.usable(now + timedelta(minutes=59, seconds=51))  # Go's 10 s early expiry
    data = json.loads(dump_token_data(token))
    assert data == {"accessToken": "at", "refreshToken": "rt", "expiry": "2026-01-01T13:00:00Z"}
    assert load_token_data("x", dump_token_data(token)) == token
    forever = UpstreamToken("at")
    assert json.loads(dump_token_data(forever, omit_empty=True)) == {
        "accessToken": "at",
        "expiry": "0001-01-01T00:00:00Z",
    }
    assert load_token_data("x", dump_token_data(forever)).expiry is None and forever.usable(now)
    # What Dex (Go) wrote: nanoseconds and a zone offset.
    assert parse_go_time("2026-01-01T13:00:00.123456789+02:00") == datetime(2026, 1, 1, 11, 0, 0, 123456, UTC)
    assert go_time(datetime(2026, 1, 1, 11, 0, 0, 120000, UTC)) == "2026-01-01T11:00:00.12Z"
    with pytest.raises(ConnectorError, match="not JSON"):
        load_token_data("x", b"raw")
    with pytest.raises(ConnectorError, match="no upstream access token"):
        load_token_data("x", b'{"accessToken": ""}')


def test_link_header_paging_refuses_other_hosts() -> None:
    upstream = Upstream("t", httpx.AsyncClient())
    request = httpx.Request("GET", "https://api.example/items?page=1")
    page = httpx.Response(
        200,
        request=request,
        headers={
            "Link": '<https://api.example/items?page=2>; rel="next", '
            '<https://api.example/items?page=9>; rel="last"'
        },
    )
    assert upstream.next_link(page) == "https://api.example/items?page=2"
    assert upstream.next_link(httpx.Response(200, request=request)) is None
    hostile = httpx.Response(200, request=request, headers={"Link": '<https://evil.example/x>; rel="next"'})
    with pytest.raises(ConnectorError, match="another host"):
        upstream.next_link(hostile)


def test_config_reader_helpers() -> None:
    reader = read_config("t", {"List": ["a"], "Flag": "TRUE", "Map": {"k": 1}}, ("list", "flag", "map"))
    assert reader.strings("list") == ("a",) and reader.boolean("flag") is True
    assert reader.string_map("map") == {}
    with pytest.raises(ValueError, match="map: must be a mapping of strings to strings"):
        reader.check()
    assert filter_groups(["b", "a", "c"], ["c", "b"]) == ("b", "c")
