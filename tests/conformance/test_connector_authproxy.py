"""The `authproxy` connector: the identity from headers set by an authenticating reverse proxy."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from appliance.connectors.authproxy import open_authproxy
from appliance.connectors.base import Identity, Scopes
from appliance.errors import ConnectorError


class MultiHeaders:
    """Headers as a server hands them over: one name may come twice, and names keep their case."""

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return list(self.pairs)


def test_dex_default_headers() -> None:
    connector = open_authproxy("proxy", {})
    identity = connector.identity_from_headers({
        "X-Remote-User": "alice",
        "X-Remote-User-Id": "u-1001",
        "X-Remote-User-Name": "Alice L.",
        "X-Remote-User-Email": "alice@example.org",
        "X-Remote-Group": "admins, devs ,,ops",
    })
    assert identity == Identity(user_id="u-1001", username="alice", preferred_username="Alice L.",
                                email="alice@example.org", email_verified=True,
                                groups=("admins", "devs", "ops"))


def test_only_the_user_header_is_needed() -> None:
    connector = open_authproxy("proxy", {"staticGroups": ["staff"]})
    identity = connector.identity_from_headers({"x-remote-user": "bob"})
    assert identity == Identity(user_id="bob", username="bob", preferred_username="bob", email="bob",
                                email_verified=True, groups=("staff",))


def test_configured_headers_separator_and_static_groups_after_header_groups() -> None:
    connector = open_authproxy("proxy", {
        "UserHeader": "X-Forwarded-User", "userIDHeader": "X-Forwarded-Uid",
        "emailHeader": "X-Forwarded-Email",
        "userNameHeader": "X-Forwarded-Preferred-Username", "groupHeader": "X-Forwarded-Groups",
        "groupHeaderSeparator": ";", "staticGroups": ["vpn-users"],
    })
    identity = connector.identity_from_headers(MultiHeaders(
        ("x-forwarded-user", "carol"),
        ("X-FORWARDED-GROUPS", "a;b"),
        ("X-Forwarded-Groups", "injected"),  # a repeated header: the first one counts, as Go's Header.Get
        ("X-Remote-User", "mallory"),  # the default header means nothing once another is configured
    ))
    assert identity.username == "carol" and identity.user_id == "carol" and identity.email == "carol"
    assert identity.groups == ("a", "b", "vpn-users")
    assert connector.trusted_headers() == ("X-Forwarded-Uid", "X-Forwarded-User",
                                           "X-Forwarded-Preferred-Username", "X-Forwarded-Email",
                                           "X-Forwarded-Groups")


@pytest.mark.parametrize("headers", [{}, {"X-Remote-User": ""}, {"X-Remote-User": "   "},
                                     {"X-Remote-User-Email": "a@b"}])
def test_a_missing_user_header_is_a_connector_error(headers: dict[str, str]) -> None:
    with pytest.raises(ConnectorError, match="required HTTP header X-Remote-User is not set"):
        open_authproxy("proxy", {}).identity_from_headers(headers)


async def test_login_url_is_the_callback_of_this_connector() -> None:
    connector = open_authproxy("corp-proxy", {})
    url = await connector.login_url(Scopes(), "https://idp.example/dex/callback?x=1&state=old", "req-9")
    parts = urlsplit(url)
    assert parts.path == "/dex/callback/corp-proxy"
    assert parse_qs(parts.query) == {"x": ["1"], "state": ["req-9"]}
    with pytest.raises(ConnectorError, match="identity_from_headers"):
        await connector.handle_callback(Scopes(), {"state": "req-9"})


def test_config_is_checked() -> None:
    with pytest.raises(ValueError) as info:
        open_authproxy("proxy", {"userHeaders": "X", "staticGroups": "admins", "groupHeader": 5})
    message = str(info.value)
    assert 'unknown key userHeaders (did you mean "userHeader"?)' in message
    assert "staticGroups must be a list of strings" in message
    assert "groupHeader must be a string" in message
