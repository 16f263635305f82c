"""The `keystone` connector: passwords checked by OpenStack Keystone (Identity API v3), its groups."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from appliance.connectors.base import Identity, Scopes
from appliance.connectors.schemas import KEYSTONE as SCHEMA
from appliance.connectors.social_config import read_config
from appliance.connectors.social_http import (
    MAX_PAGES,
    TrustStore,
    Upstream,
    UpstreamDenied,
    json_object,
    plain_upstream,
    text,
)
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.keystone")

WHO = "keystone"
TOKEN_HEADER = "X-Subject-Token"  # noqa: S105 (a header name): where Keystone hands out a new token
AUTH_HEADER = "X-Auth-Token"  # where it expects one
_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


@dataclass(frozen=True)
class KeystoneConfig:
    host: str
    domain: Mapping[str, str]  # {"id": ...} for a UUID or "default", else {"name": ...} (Dex's rule)
    admin_username: str = ""
    admin_password: str = field(default="", repr=False)


def domain_reference(domain: str) -> dict[str, str]:
    try:
        uuid.UUID(domain)
    except ValueError:
        return {"id": domain} if domain == "default" else {"name": domain}
    return {"id": domain}


def parse_config(config: Mapping[str, Any]) -> KeystoneConfig:
    reader = read_config(WHO, config, _KEYS)
    cfg = KeystoneConfig(
        host=reader.required("keystoneHost").rstrip("/"),
        domain=domain_reference(reader.required("domain")),
        admin_username=reader.string("keystoneUsername"),
        admin_password=reader.string("keystonePassword"),
    )
    reader.check()
    if not cfg.admin_username:
        log.warning("keystone: no keystoneUsername: refreshing tokens will fail (Dex needs it too)")
    return cfg


class KeystoneConnector:
    """Checks passwords with Keystone's /v3/auth/tokens; implements PasswordConnector and RefreshConnector."""

    def __init__(self, connector_id: str, cfg: KeystoneConfig) -> None:
        self.id = connector_id
        self.cfg = cfg
        self.trust = TrustStore()

    def __repr__(self) -> str:
        return f"KeystoneConnector(id={self.id!r}, host={self.cfg.host!r})"

    def prompt(self) -> str:
        return "username"

    async def _token(self, keystone: Upstream, username: str, password: str) -> tuple[str, str] | None:
        """(token, user id) for a password, None for wrong credentials (Keystone answers 401)."""
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": username, "domain": dict(self.cfg.domain), "password": password}}}}}
        response = await keystone.request(
            "POST", f"{self.cfg.host}/v3/auth/tokens", json=body, expect=(201, 401)
        )
        if response.status_code == 401:
            return None
        token_obj = json_object(WHO, keystone.decode(response), "token").get("token")
        user = token_obj.get("user") if isinstance(token_obj, dict) else None
        user_id = text(user.get("id")) if isinstance(user, dict) else ""
        token = response.headers.get(TOKEN_HEADER, "")
        if not token or not user_id:
            raise ConnectorError("keystone: the token response lacks the token or the user id")
        return token, user_id

    async def login(self, scopes: Scopes, username: str, password: str) -> Identity | None:
        if not username or not password:
            return None
        async with plain_upstream(WHO, self.trust) as keystone:
            found = await self._token(keystone, username, password)
            if found is None:
                return None
            token, user_id = found
            identity = Identity(user_id=user_id, username=username)
            if scopes.groups:
                identity = replace(identity, groups=await self._groups(keystone, user_id, token))
            user = await self._user(keystone, user_id, token)
        email = text(user.get("email")) if user is not None else ""
        if email:
            identity = replace(identity, email=email, email_verified=True)
        return identity

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        async with plain_upstream(WHO, self.trust) as keystone:
            admin = await self._token(keystone, self.cfg.admin_username, self.cfg.admin_password)
            if admin is None:
                raise ConnectorError("keystone: failed to obtain admin token: admin credentials refused")
            token, _ = admin
            # The admin's answer is the verdict: a user deleted or disabled since the login is refused for
            # good (invalid_grant); the admin's own credentials failing is an outage (503).
            user = await self._user(keystone, identity.user_id, token)
            if user is None:
                raise UpstreamDenied(f"keystone: user {identity.user_id!r} does not exist")
            if user.get("enabled") is False:
                raise UpstreamDenied(f"keystone: user {identity.user_id!r} is disabled")
            if scopes.groups:
                identity = replace(identity, groups=await self._groups(keystone, identity.user_id, token))
        return identity

    async def _user(self, keystone: Upstream, user_id: str, token: str) -> dict[str, Any] | None:
        response = await keystone.request(
            "GET", f"{self.cfg.host}/v3/users/{quote(user_id, safe='')}", headers={AUTH_HEADER: token},
            expect=(200, 404),
        )
        if response.status_code == 404:
            return None
        user = json_object(WHO, keystone.decode(response), "user").get("user")
        return user if isinstance(user, dict) else {}

    async def _groups(self, keystone: Upstream, user_id: str, token: str) -> tuple[str, ...]:
        names: list[str] = []
        url: str | None = f"{self.cfg.host}/v3/users/{quote(user_id, safe='')}/groups"
        for _ in range(MAX_PAGES):
            if url is None:
                return tuple(names)
            answer = json_object(WHO, await keystone.json("GET", url, headers={AUTH_HEADER: token}), "groups")
            names += [text(g.get("name")) for g in answer.get("groups") or [] if isinstance(g, dict)]
            links = answer.get("links")
            link = links.get("next") if isinstance(links, dict) else None
            url = keystone.same_origin(self.cfg.host, link) if isinstance(link, str) and link else None
        raise ConnectorError(f"keystone: the groups of {user_id} span more than {MAX_PAGES} pages")


def open_keystone(connector_id: str, config: Mapping[str, Any]) -> KeystoneConnector:
    """The `keystone` factory (tests point keystoneHost at a fake Keystone)."""
    return KeystoneConnector(connector_id, parse_config(config))
