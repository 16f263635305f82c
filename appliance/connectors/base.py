"""What a connector is: the small protocols each kind implements, and the identity it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from appliance.errors import ConnectorError


@dataclass(frozen=True)
class Identity:
    """A user as an upstream vouched for it."""

    user_id: str
    username: str = ""
    preferred_username: str = ""
    email: str = ""
    email_verified: bool = False
    groups: tuple[str, ...] = ()
    connector_data: bytes | None = None


@dataclass(frozen=True)
class Scopes:
    """What the client asked for that a connector cares about."""

    offline_access: bool = False
    groups: bool = False


@runtime_checkable
class PasswordConnector(Protocol):
    """Logs in with a username and password typed into Portico's own form."""

    def prompt(self) -> str:
        """The label of the username field ("Email Address", "Username")."""
        ...

    async def login(self, scopes: Scopes, username: str, password: str) -> Identity | None:
        """The identity, or None for wrong credentials. An outage raises ConnectorError."""
        ...


@runtime_checkable
class CallbackConnector(Protocol):
    """Sends the browser upstream and reads the answer at /callback."""

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str: ...

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        """The identity from the upstream's answer; raises ConnectorError when it is unusable."""
        ...


@dataclass(frozen=True)
class SAMLPost:
    """What the auto-submitting form posts to the IdP (SAML HTTP-POST binding)."""

    action: str  # the IdP's SSO URL: the form's action
    saml_request: str  # the SAMLRequest field: base64 of the AuthnRequest XML
    relay_state: str  # the RelayState field: Portico's auth request id, read back at /callback


@runtime_checkable
class SAMLConnector(Protocol):
    """Posts an AuthnRequest to a SAML IdP and reads its signed answer posted to /callback."""

    async def post_data(self, scopes: Scopes, request_id: str) -> SAMLPost: ...

    async def handle_post(self, scopes: Scopes, saml_response: str, in_response_to: str) -> Identity:
        """The identity from the IdP's SAMLResponse; raises ConnectorError (with the reason) when refused."""
        ...


class UserRefusedError(ConnectorError):
    """The upstream answered, and its answer refuses this user (not an outage): a 403-type page at login,
    invalid_grant on refresh (the user was deleted or renamed, consent or the upstream grant was
    withdrawn, or what was kept at login can never refresh: no upstream refresh token, unreadable data).
    Besides GrantRevokedError, any other ConnectorError is taken for an outage that may pass (HTTP 503
    temporarily_unavailable on refresh): no answer, a timeout, a 5xx or a rate limit."""


class GrantRevokedError(ConnectorError):
    """The upstream answered that the token kept at login is no longer good (an API's HTTP 401: the
    user revoked the app, the account was removed or disabled, the token expired for good). Permanent
    on refresh (invalid_grant); at login, a token the upstream has just issued and already refuses is
    an upstream fault like any other (the "Login failed" page), not a verdict on the user."""


class UserNotInRequiredGroupsError(UserRefusedError):
    """The upstream vouched for the user, but the user is in none of the connector's allowed groups (403)."""


@runtime_checkable
class RefreshConnector(Protocol):
    """Re-checks a user when a refresh token is used."""

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity: ...


class ConnectorFactory(Protocol):
    """Builds a connector of one type from its (already $VAR-expanded) config block."""

    def __call__(self, connector_id: str, config: Mapping[str, Any]) -> object: ...
