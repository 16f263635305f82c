"""The `openshift` connector: logins through an OpenShift cluster's OAuth server, its groups (Dex's keys)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.clock import Clock, SystemClock
from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.schemas import OPENSHIFT as SCHEMA
from appliance.connectors.social_config import filter_groups, read_config
from appliance.connectors.social_http import (
    OAuth2App,
    OAuthSession,
    TrustStore,
    callback_code,
    check_redirect,
    json_object,
    oauth_session,
    plain_upstream,
    text,
)
from appliance.connectors.social_token import UpstreamToken, dump_oauth2_token, load_oauth2_token
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.openshift")

WHO = "openshift"
SCOPES = ("user:info",)
WELL_KNOWN = "/.well-known/oauth-authorization-server"  # RFC 8414, served by the API server
USER_PATH = "/apis/user.openshift.io/v1/users/~"  # "~" is the user the token belongs to
_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


@dataclass(frozen=True)
class OpenShiftConfig:
    issuer: str  # the cluster's API server URL
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    groups: tuple[str, ...] = ()
    insecure_ca: bool = False
    root_ca: bytes | None = None


def parse_config(config: Mapping[str, Any]) -> OpenShiftConfig:
    reader = read_config(WHO, config, _KEYS)
    cfg = OpenShiftConfig(
        issuer=reader.required("issuer").rstrip("/"),
        client_id=reader.required("clientID"),
        client_secret=reader.required("clientSecret"),
        redirect_uri=reader.required("redirectURI"),
        groups=reader.strings("groups"),
        insecure_ca=reader.boolean("insecureCA"),
        root_ca=reader.pem_file("rootCA"),
    )
    reader.check()
    if cfg.insecure_ca:
        log.warning("openshift: insecureCA is set: the cluster's TLS certificate is not verified")
    return cfg


@dataclass(frozen=True)
class _Endpoints:
    auth_url: str
    token_url: str


class OpenShiftConnector:
    """Logs in with an OpenShift OAuth client; implements CallbackConnector and RefreshConnector.

    Dex reads the cluster's OAuth metadata when the connector opens; Portico reads it on first use
    (factories do no network I/O), then keeps it.
    """

    def __init__(self, connector_id: str, cfg: OpenShiftConfig, clock: Clock | None = None) -> None:
        self.id = connector_id
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.trust = TrustStore(cfg.root_ca, insecure_skip_verify=cfg.insecure_ca)
        self._endpoints: _Endpoints | None = None

    def __repr__(self) -> str:
        return f"OpenShiftConnector(id={self.id!r}, issuer={self.cfg.issuer!r})"

    async def _discover(self) -> _Endpoints:
        if self._endpoints is None:
            async with plain_upstream(WHO, self.trust) as upstream:
                meta = json_object(WHO, await upstream.json("GET", self.cfg.issuer + WELL_KNOWN), WELL_KNOWN)
            auth, token = text(meta.get("authorization_endpoint")), text(meta.get("token_endpoint"))
            if not auth or not token:
                raise ConnectorError(f"openshift: {WELL_KNOWN} names no authorization or token endpoint")
            self._endpoints = _Endpoints(auth, token)
        return self._endpoints

    async def _app(self) -> OAuth2App:
        found = await self._discover()
        return OAuth2App(
            client_id=self.cfg.client_id, client_secret=self.cfg.client_secret, auth_url=found.auth_url,
            token_url=found.token_url, redirect_uri=self.cfg.redirect_uri,
        )

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        check_redirect(WHO, self.cfg.redirect_uri, callback_url)
        return (await self._app()).login_url(SCOPES, state)

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        code = callback_code(WHO, params)
        async with oauth_session(WHO, await self._app(), self.trust, self.clock) as session:
            token = await session.exchange(code)
            return await self._identity(session, scopes, token)

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        stored = load_oauth2_token(WHO, identity.connector_data)
        async with oauth_session(WHO, await self._app(), self.trust, self.clock) as session:
            token, _ = await session.fresh(stored)
            return await self._identity(session, scopes, token)

    async def _identity(self, session: OAuthSession, scopes: Scopes, token: UpstreamToken) -> Identity:
        user = json_object(WHO, await session.json("GET", self.cfg.issuer + USER_PATH), USER_PATH)
        meta = user.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        name, uid = text(meta.get("name")), text(meta.get("uid"))
        if not uid:
            raise ConnectorError("openshift: the user object has no metadata.uid")
        groups = tuple(g for g in user.get("groups") or [] if isinstance(g, str))
        if self.cfg.groups and not filter_groups(groups, self.cfg.groups):
            raise UserNotInRequiredGroupsError(
                f"openshift: user {name!r} is not in any of the required groups"
            )
        # OpenShift users carry no email: Dex puts the user name there, unverified.
        identity = Identity(user_id=uid, username=name, preferred_username=name, email=name, groups=groups)
        if scopes.offline_access:
            identity = replace(identity, connector_data=dump_oauth2_token(token))
        return identity


def open_openshift(
    connector_id: str, config: Mapping[str, Any], *, clock: Clock | None = None
) -> OpenShiftConnector:
    """The `openshift` factory (tests point issuer at a fake cluster)."""
    return OpenShiftConnector(connector_id, parse_config(config), clock)
