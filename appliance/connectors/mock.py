"""Dex's test connectors: `mockCallback` (no interaction, fixed identity) and `mockPassword`."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from appliance.connectors.base import Identity, Scopes

# The fixed identity of Dex's connector/mock.
MOCK_USER_ID = "0-385-28089-0"
MOCK_USERNAME = "Kilgore Trout"
MOCK_EMAIL = "kilgore@kilgore.trout"


class MockCallbackConnector:
    """Sends the browser straight back to the callback and always vouches for Kilgore Trout."""

    identity = Identity(
        user_id=MOCK_USER_ID,
        username=MOCK_USERNAME,
        email=MOCK_EMAIL,
        email_verified=True,
        groups=("authors",),
        connector_data=b"foobar",
    )

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        parts = urlsplit(callback_url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "state"]
        query.append(("state", state))
        return urlunsplit(parts._replace(query=urlencode(query)))

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        return self.identity

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        return self.identity

    async def token_identity(self, subject_token_type: str, subject_token: str) -> Identity:
        """Token exchange: any token is Kilgore Trout's (Dex's mock does the same)."""
        return self.identity


class MockPasswordConnector:
    """Accepts exactly the configured username and password."""

    def __init__(self, username: str, password: str) -> None:
        if not username:
            raise ValueError("no username supplied")
        if not password:
            raise ValueError("no password supplied")
        self._username = username
        self._password = password

    def __repr__(self) -> str:  # never show the password
        return f"MockPasswordConnector(username={self._username!r})"

    def prompt(self) -> str:
        return ""

    async def login(self, scopes: Scopes, username: str, password: str) -> Identity | None:
        # Both compared in full (no short-circuit) so the time does not tell which one was wrong.
        user_ok = hmac.compare_digest(username.encode(), self._username.encode())
        password_ok = hmac.compare_digest(password.encode(), self._password.encode())
        if not (user_ok and password_ok):
            return None
        return Identity(
            user_id=MOCK_USER_ID,
            username=MOCK_USERNAME,
            email=MOCK_EMAIL,
            email_verified=True,
            connector_data=b'{"test": "true"}',
        )

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        return identity


def open_mock_callback(connector_id: str, config: Mapping[str, Any]) -> MockCallbackConnector:
    return MockCallbackConnector()


def open_mock_password(connector_id: str, config: Mapping[str, Any]) -> MockPasswordConnector:
    username = config.get("username", "")
    password = config.get("password", "")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ValueError("username and password must be strings")
    return MockPasswordConnector(username, password)
