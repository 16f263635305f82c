"""The `atlassian-crowd` connector: passwords checked by Atlassian Crowd's REST API, and its groups."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError, UserRefusedError
from appliance.connectors.schemas import CROWD as SCHEMA
from appliance.connectors.social_config import filter_groups, read_config
from appliance.connectors.social_http import (
    MAX_PAGES,
    TrustStore,
    Upstream,
    UpstreamDenied,
    json_object,
    maybe_json,
    plain_upstream,
    text,
)
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.crowd")

WHO = "crowd"
API = "/rest/usermanagement/1"
GROUPS_PER_PAGE = 1000
# Crowd's reasons for refusing a password that mean "wrong credentials" (the form is shown again).
_WRONG_CREDENTIALS = ("INVALID_USER_AUTHENTICATION", "USER_NOT_FOUND")
# Reasons that refuse a real account: not an outage, and not worth retrying with another password.
_ACCOUNT_REFUSED = ("INACTIVE_ACCOUNT", "EXPIRED_CREDENTIAL")
_PREFERRED_FIELDS = ("", "key", "name", "email")
_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


@dataclass(frozen=True)
class CrowdConfig:
    base_url: str
    client_id: str  # the Crowd application's name
    client_secret: str = field(repr=False)  # its password
    groups: tuple[str, ...] = ()
    preferred_username_field: str = ""
    username_prompt: str = ""


def parse_config(config: Mapping[str, Any]) -> CrowdConfig:
    reader = read_config(WHO, config, _KEYS)
    cfg = CrowdConfig(
        base_url=reader.required("baseURL").rstrip("/"),
        client_id=reader.required("clientID"),
        client_secret=reader.required("clientSecret"),
        groups=reader.strings("groups"),
        preferred_username_field=reader.choice("preferredUsernameField", _PREFERRED_FIELDS),
        username_prompt=reader.string("usernamePrompt"),
    )
    reader.check()
    return cfg


class CrowdConnector:
    """Checks passwords against Crowd; implements PasswordConnector and RefreshConnector."""

    def __init__(self, connector_id: str, cfg: CrowdConfig) -> None:
        self.id = connector_id
        self.cfg = cfg
        self.trust = TrustStore()

    def __repr__(self) -> str:
        return f"CrowdConnector(id={self.id!r}, base_url={self.cfg.base_url!r})"

    def prompt(self) -> str:
        return self.cfg.username_prompt

    def _client(self) -> Any:
        return plain_upstream(
            WHO, self.trust, headers={"Accept": "application/json"},
            auth=httpx.BasicAuth(self.cfg.client_id, self.cfg.client_secret),
        )

    async def login(self, scopes: Scopes, username: str, password: str) -> Identity | None:
        if not username or not password:  # Crowd must never be asked to accept an empty password
            return None
        async with self._client() as crowd:
            if not await self._password_ok(crowd, username, password):
                return None
            identity = self._identity(await self._user(crowd, username))
            if scopes.groups:
                identity = replace(identity, groups=await self._groups(crowd, identity.username))
        if scopes.offline_access:
            data = json.dumps({"username": username}, separators=(",", ":")).encode()
            identity = replace(identity, connector_data=data)
        return identity

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        try:
            username = text(json.loads(identity.connector_data or b"").get("username"))
        except (ValueError, AttributeError):
            username = ""
        if not username:
            raise UserRefusedError("crowd: the stored connector data names no user")
        async with self._client() as crowd:
            fresh = self._identity(await self._user(crowd, username))
            # A new SSO session for the user, without the password: it fails if the account is gone
            # or deactivated, and keeps Crowd's idea of the session alive, as Dex does.
            response = await self._checked(crowd, "POST", f"{API}/session",
                                           params={"validate-password": "false"}, json={"username": username})
            if response.status_code != 201:
                reason = _reason(response)
                if reason in (*_ACCOUNT_REFUSED, "USER_NOT_FOUND"):
                    # Removed or deactivated since the login: the grant ends (invalid_grant).
                    raise UpstreamDenied(f"crowd: user {username!r} refused: {reason}")
                status = response.status_code
                raise ConnectorError(f"crowd: authenticate user: HTTP {status} {reason}".rstrip())
            if scopes.groups:
                fresh = replace(fresh, groups=await self._groups(crowd, fresh.username))
        return replace(fresh, connector_data=identity.connector_data)

    async def _checked(self, crowd: Upstream, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A Crowd call; the application's own credentials being refused is a configuration error."""
        response = await crowd.request(method, self.cfg.base_url + path, expect=range(100, 600), **kwargs)
        if response.status_code == 401 and "Application failed to authenticate" in response.text:
            raise ConnectorError(
                f"crowd: Crowd refused the application {self.cfg.client_id!r} (check clientID/clientSecret)"
            )
        if response.status_code == 403 and "refuses to authorize" in response.text:
            raise ConnectorError(f"crowd: Crowd does not let this host use the application (check the "
                                 f"application's remote addresses): {self.cfg.base_url}")
        if response.status_code >= 500:
            raise ConnectorError(f"crowd: {method} {path}: HTTP {response.status_code}")
        return response

    async def _password_ok(self, crowd: Upstream, username: str, password: str) -> bool:
        response = await self._checked(crowd, "POST", f"{API}/session",
                                       json={"username": username, "password": password})
        if response.status_code == 201:
            return True
        error = maybe_json(response)
        reason = text(error.get("reason")) if isinstance(error, dict) else ""
        if reason in _WRONG_CREDENTIALS:
            return False
        if reason in _ACCOUNT_REFUSED:
            raise UpstreamDenied(f"crowd: {reason}")
        message = text(error.get("message")) if isinstance(error, dict) else ""
        raise ConnectorError(f"crowd: authenticate: HTTP {response.status_code}: {reason} {message}".rstrip())

    async def _user(self, crowd: Upstream, username: str) -> dict[str, Any]:
        response = await self._checked(crowd, "GET", f"{API}/user", params={"username": username})
        if response.status_code == 404 and _reason(response) == "USER_NOT_FOUND":
            raise UpstreamDenied(f"crowd: user {username!r} does not exist")
        if response.status_code != 200:
            raise ConnectorError(f"crowd: get user: HTTP {response.status_code}")
        return json_object(WHO, crowd.decode(response), "user")

    def _identity(self, user: Mapping[str, Any]) -> Identity:
        key, name, email = text(user.get("key")), text(user.get("name")), text(user.get("email"))
        preferred = {"key": key, "name": name, "email": email}.get(self.cfg.preferred_username_field, "")
        return Identity(user_id=key, username=name, preferred_username=preferred, email=email,
                        email_verified=True)

    async def _groups(self, crowd: Upstream, username: str) -> tuple[str, ...]:
        """The user's groups, nested ones included, filtered by `groups` (which then must match)."""
        found: list[str] = []
        for page in range(MAX_PAGES):
            params = {"username": username, "start-index": str(page * GROUPS_PER_PAGE),
                      "max-results": str(GROUPS_PER_PAGE)}
            response = await self._checked(crowd, "GET", f"{API}/user/group/nested", params=params)
            if response.status_code != 200:
                raise ConnectorError(f"crowd: failed to query groups: HTTP {response.status_code}")
            batch = json_object(WHO, crowd.decode(response), "groups").get("groups") or []
            found += [text(group.get("name")) for group in batch if isinstance(group, dict)]
            if len(batch) < GROUPS_PER_PAGE:
                break
        if self.cfg.groups:
            allowed = filter_groups(found, self.cfg.groups)
            if not allowed:
                raise UserNotInRequiredGroupsError(
                    f"crowd: user {username!r} is not in any of the required groups"
                )
            return allowed
        return tuple(found)


def _reason(response: httpx.Response) -> str:
    """Crowd's error reason ({"reason": "USER_NOT_FOUND", "message": ...}), or ""."""
    error = maybe_json(response)
    return text(error.get("reason")) if isinstance(error, dict) else ""


def open_crowd(connector_id: str, config: Mapping[str, Any]) -> CrowdConnector:
    """The `atlassian-crowd` factory (tests point baseURL at a fake Crowd)."""
    return CrowdConnector(connector_id, parse_config(config))
