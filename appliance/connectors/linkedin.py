"""The `linkedin` connector: "Sign In with LinkedIn using OpenID Connect", profile from its userinfo."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.clock import Clock, SystemClock
from appliance.connectors.base import Identity, Scopes
from appliance.connectors.schemas import LINKEDIN as SCHEMA
from appliance.connectors.social_config import read_config
from appliance.connectors.social_http import (
    OAuth2App,
    OAuthSession,
    TrustStore,
    UpstreamDenied,
    callback_code,
    check_redirect,
    json_object,
    oauth_session,
    text,
)
from appliance.connectors.social_token import UpstreamToken, load_token_data
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.linkedin")

WHO = "linkedin"
# LinkedIn retired r_liteprofile/r_emailaddress (which Dex's connector still asks for) for OpenID Connect.
SCOPES = ("openid", "profile", "email")
_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


@dataclass(frozen=True)
class LinkedInEndpoints:
    """LinkedIn's fixed endpoints (tests point them at a fake)."""

    auth_url: str = "https://www.linkedin.com/oauth/v2/authorization"
    token_url: str = "https://www.linkedin.com/oauth/v2/accessToken"  # noqa: S105 (a URL, not a secret)
    userinfo_url: str = "https://api.linkedin.com/v2/userinfo"


LINKEDIN = LinkedInEndpoints()


@dataclass(frozen=True)
class LinkedInConfig:
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str


def parse_config(config: Mapping[str, Any]) -> LinkedInConfig:
    reader = read_config(WHO, config, _KEYS)
    cfg = LinkedInConfig(
        reader.required("clientID"), reader.required("clientSecret"), reader.required("redirectURI")
    )
    reader.check()
    return cfg


class LinkedInConnector:
    """Logs in with LinkedIn; implements CallbackConnector and RefreshConnector."""

    def __init__(
        self, connector_id: str, cfg: LinkedInConfig, endpoints: LinkedInEndpoints = LINKEDIN,
        clock: Clock | None = None,
    ) -> None:
        self.id = connector_id
        self.cfg = cfg
        self.endpoints = endpoints
        self.clock = clock or SystemClock()
        self.trust = TrustStore()

    def __repr__(self) -> str:
        return f"LinkedInConnector(id={self.id!r})"

    def _app(self) -> OAuth2App:
        # LinkedIn's token endpoint wants the client credentials in the form body.
        return OAuth2App(
            client_id=self.cfg.client_id, client_secret=self.cfg.client_secret,
            auth_url=self.endpoints.auth_url, token_url=self.endpoints.token_url,
            redirect_uri=self.cfg.redirect_uri, auth_method="client_secret_post",
        )

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        check_redirect(WHO, self.cfg.redirect_uri, callback_url)
        return self._app().login_url(SCOPES, state)

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        code = callback_code(WHO, params)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            token = await session.exchange(code)
            profile = await self._profile(session)
        identity = Identity(
            user_id=text(profile.get("sub")),
            username=_full_name(profile),
            email=text(profile.get("email")),
            email_verified=True,
        )
        if not identity.user_id:
            raise ConnectorError("linkedin: the userinfo has no sub")
        if scopes.offline_access:
            identity = replace(identity, connector_data=_dump(token))
        return identity

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        # LinkedIn access tokens live 60 days and come without a refresh token: reuse it while it works.
        stored = load_token_data(WHO, identity.connector_data)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            session.use(stored)
            profile = await self._profile(session)
        return replace(identity, username=_full_name(profile), email=text(profile.get("email")))

    async def _profile(self, session: OAuthSession) -> dict[str, Any]:
        profile = json_object(WHO, await session.json("GET", self.endpoints.userinfo_url), "userinfo")
        if not text(profile.get("email")):
            raise UpstreamDenied("linkedin: the profile has no email address (was the email scope granted?)")
        # LinkedIn lists only addresses the member confirmed; an explicit false is still refused.
        if profile.get("email_verified") is False:
            raise UpstreamDenied("linkedin: the member's email address is not verified")
        return profile


def _full_name(profile: Mapping[str, Any]) -> str:
    """The member's name; else given + family name; else the email (Dex's fallback)."""
    name = text(profile.get("name")).strip()
    if not name:
        name = f"{text(profile.get('given_name'))} {text(profile.get('family_name'))}".strip()
    return name or text(profile.get("email"))


def _dump(token: UpstreamToken) -> bytes:
    return json.dumps({"accessToken": token.access_token}, separators=(",", ":")).encode()


def open_linkedin(
    connector_id: str, config: Mapping[str, Any], *, endpoints: LinkedInEndpoints = LINKEDIN,
    clock: Clock | None = None,
) -> LinkedInConnector:
    """The `linkedin` factory. `endpoints` points LinkedIn's fixed hosts elsewhere (tests)."""
    return LinkedInConnector(connector_id, parse_config(config), endpoints, clock)
