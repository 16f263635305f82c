"""Dex's mock connectors and the connector registry."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from appliance.connectors.base import CallbackConnector, PasswordConnector, RefreshConnector, Scopes
from appliance.connectors.local import LocalConnector
from appliance.connectors.mock import MockCallbackConnector, MockPasswordConnector
from appliance.connectors.registry import default_registry


async def test_mock_callback_identity_is_dexs() -> None:
    conn = MockCallbackConnector()
    assert isinstance(conn, CallbackConnector) and isinstance(conn, RefreshConnector)
    identity = await conn.handle_callback(Scopes(), {})
    assert identity.user_id == "0-385-28089-0"
    assert identity.username == "Kilgore Trout"
    assert identity.email == "kilgore@kilgore.trout" and identity.email_verified
    assert identity.groups == ("authors",)
    assert identity.connector_data == b"foobar"
    assert await conn.refresh(Scopes(), identity) == identity


async def test_mock_callback_sends_the_browser_straight_back() -> None:
    url = await MockCallbackConnector().login_url(Scopes(), "https://id.example/dex/callback?x=1", "req-id")
    parts = urlsplit(url)
    assert parts.netloc == "id.example" and parts.path == "/dex/callback"
    assert parse_qs(parts.query) == {"x": ["1"], "state": ["req-id"]}


async def test_mock_password() -> None:
    conn = MockPasswordConnector("kilgore", "trout")
    assert isinstance(conn, PasswordConnector) and isinstance(conn, RefreshConnector)
    assert conn.prompt() == ""
    assert await conn.login(Scopes(), "kilgore", "wrong") is None
    assert await conn.login(Scopes(), "other", "trout") is None
    identity = await conn.login(Scopes(), "kilgore", "trout")
    assert identity is not None
    assert (identity.user_id, identity.username, identity.email) == (
        "0-385-28089-0", "Kilgore Trout", "kilgore@kilgore.trout")
    assert identity.email_verified and identity.groups == ()
    assert await conn.refresh(Scopes(), identity) == identity
    assert "trout" not in repr(conn)


def test_registry_opens_known_types_and_refuses_others() -> None:
    registry = default_registry()
    assert {"mockCallback", "mockPassword"} <= set(registry.types())
    assert isinstance(registry.open("mockCallback", "m", {}), MockCallbackConnector)
    opened = registry.open("mockPassword", "p", {"username": "u", "password": "p"})
    assert isinstance(opened, MockPasswordConnector)
    with pytest.raises(KeyError):
        registry.open("no-such-type", "l", {})
    with pytest.raises(ValueError, match="no password"):
        registry.open("mockPassword", "p", {"username": "u"})
    with pytest.raises(ValueError):
        registry.open("mockPassword", "p", {"username": 1, "password": "p"})


async def test_registry_local_and_extension() -> None:
    async def nobody(email: str) -> None:
        return None

    registry = default_registry()
    local = registry.open_local(nobody)
    assert isinstance(local, LocalConnector)
    extended = registry.with_types({"custom": lambda cid, cfg: MockCallbackConnector()})
    assert "custom" in extended.types() and "custom" not in registry.types()
