"""The `oauth` connector: a generic OAuth 2.0 upstream whose userinfo endpoint names the user (Dex's keys)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.integrations.base_client import OAuthError as AuthlibOAuthError  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # type: ignore[import-untyped]

from appliance.connectors.base import Identity, Scopes
from appliance.connectors.schemas import OAUTH
from appliance.connectors.upstream_claims import go_value_string, groups_from_object
from appliance.connectors.upstream_config import ConfigBlock, check, http_url, read_root_cas, required
from appliance.connectors.upstream_http import UpstreamHTTP, UpstreamRefusedError
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.oauth")

# The keys of each block come from the schema, the one list the console's form is built from too.
_TOP_KEYS = OAUTH.names()
_MAPPING_KEYS = OAUTH.names("claimMapping")


@dataclass(frozen=True)
class OAuthConfig:
    """A checked `oauth` connector config, with Dex's defaults for the claim keys."""

    client_id: str
    redirect_uri: str
    token_url: str
    authorization_url: str
    userinfo_url: str
    client_secret: str = field(default="", repr=False)
    scopes: tuple[str, ...] = ()
    root_cas: tuple[bytes, ...] = ()
    insecure_skip_verify: bool = False
    user_id_key: str = "id"
    user_name_key: str = "user_name"
    preferred_username_key: str = "preferred_username"
    groups_key: str = "groups"
    email_key: str = "email"
    email_verified_key: str = "email_verified"


def parse_oauth_config(config: Mapping[str, Any]) -> OAuthConfig:
    problems: list[str] = []
    top = ConfigBlock(config, "", _TOP_KEYS, problems)
    mapping = top.block("claimMapping", _MAPPING_KEYS)
    required(top, "clientID")
    parsed = OAuthConfig(
        client_id=top.string("clientID"),
        client_secret=top.string("clientSecret"),
        redirect_uri=http_url(top, "redirectURI", needed=True),
        token_url=http_url(top, "tokenURL", needed=True),
        authorization_url=http_url(top, "authorizationURL", needed=True),
        userinfo_url=http_url(top, "userInfoURL", needed=True),
        scopes=top.strings("scopes"),
        root_cas=read_root_cas(top),
        insecure_skip_verify=top.boolean("insecureSkipVerify"),
        user_id_key=top.string("userIDKey") or "id",
        user_name_key=mapping.string("userNameKey") or "user_name",
        preferred_username_key=mapping.string("preferredUsernameKey") or "preferred_username",
        groups_key=mapping.string("groupsKey") or "groups",
        email_key=mapping.string("emailKey") or "email",
        email_verified_key=mapping.string("emailVerifiedKey") or "email_verified",
    )
    check("oauth", problems)
    return parsed


class OAuthConnector:
    """A CallbackConnector only: Dex's oauth connector has no refresh."""

    def __init__(self, connector_id: str, config: OAuthConfig) -> None:
        self.id = connector_id
        self.config = config
        self.label = f'oauth connector "{connector_id}"'
        self._http = UpstreamHTTP(self.label, config.root_cas, config.insecure_skip_verify)
        # Like Go's oauth2 AuthStyleAutoDetect: try the Basic header, fall back to the body, remember.
        self._auth_methods = ["client_secret_basic", "client_secret_post"]

    def __repr__(self) -> str:
        return f"OAuthConnector(id={self.id!r}, authorizationURL={self.config.authorization_url!r})"

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        if callback_url != self.config.redirect_uri:
            raise ConnectorError(f"{self.label}: expected callback URL {callback_url!r} did not match "
                                 f"the URL in the config {self.config.redirect_uri!r}")
        url: str = prepare_grant_uri(self.config.authorization_url, self.config.client_id, "code",
                                     redirect_uri=self.config.redirect_uri,
                                     scope=list(self.config.scopes) or None, state=state)
        return url

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        error = params.get("error", "")
        if error:
            description = params.get("error_description", "")
            raise UpstreamRefusedError(f"{self.label}: the upstream refused the login: {error}"
                                       + (f": {description}" if description else ""), error)
        code = params.get("code", "")
        if not code:
            raise ConnectorError(f"{self.label}: the upstream's answer has no code")
        token = await self._exchange(code)
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ConnectorError(f"{self.label}: the token response has no access_token")
        info = await self._http.get_json(self.config.userinfo_url, "userinfo endpoint", bearer=access_token)
        return self._identity(scopes, info, access_token)

    def _identity(self, scopes: Scopes, info: Mapping[str, Any], access_token: str) -> Identity:
        cfg = self.config
        if cfg.user_id_key not in info:
            raise ConnectorError(f"{self.label}: not found {cfg.user_id_key} claim")
        user_id = go_value_string(info[cfg.user_id_key])
        if user_id is None:
            raise ConnectorError(f"{self.label}: {cfg.user_id_key} claim should be string or number, "
                                 f"got {type(info[cfg.user_id_key]).__name__}")
        groups: list[str] = []
        if scopes.groups:
            # From userinfo, then from the access token's payload when it is a JWT (as Dex, unverified:
            # it came straight from the token endpoint over the connection this connector opened).
            groups = groups_from_object(info, cfg.groups_key) + groups_from_object(_jwt_payload(access_token),
                                                                                   cfg.groups_key)
        data = json.dumps({"AccessToken": access_token}).encode() if scopes.offline_access else None
        verified = info.get(cfg.email_verified_key)
        return Identity(
            user_id=user_id,
            username=_str(info, cfg.user_name_key),
            preferred_username=_str(info, cfg.preferred_username_key),
            email=_str(info, cfg.email_key),
            email_verified=verified if isinstance(verified, bool) else False,
            groups=tuple(dict.fromkeys(groups)),
            connector_data=data,
        )

    async def _exchange(self, code: str) -> dict[str, Any]:
        url = self.config.token_url
        last: ConnectorError | None = None
        for method in list(self._auth_methods):
            client = await self._http.oauth_client(self.config.client_id, self.config.client_secret, method,
                                                   self.config.redirect_uri)
            async with client:
                try:
                    token = await client.fetch_token(url, grant_type="authorization_code", code=code)
                except httpx.HTTPStatusError as exc:
                    raise ConnectorError(f"{self.label}: the token endpoint {url} answered HTTP "
                                         f"{exc.response.status_code}") from exc
                except httpx.HTTPError as exc:
                    raise self._http.unreachable("token endpoint", url, exc) from exc
                except ValueError as exc:
                    raise ConnectorError(f"{self.label}: the token endpoint {url} did not answer JSON") \
                        from exc
                except AuthlibOAuthError as exc:
                    last = ConnectorError(f"{self.label}: failed to get token: {exc.error}"
                                          + (f": {exc.description}" if exc.description else ""))
                    if exc.error != "invalid_client" or not self.config.client_secret:
                        raise last from exc
                    continue
            self._auth_methods = [method]
            return dict(token)
        assert last is not None
        raise last


def _str(info: Mapping[str, Any], key: str) -> str:
    value = info.get(key)
    return value if isinstance(value, str) else ""


def _jwt_payload(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) < 2:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return payload if isinstance(payload, dict) else {}


def open_oauth(connector_id: str, config: Mapping[str, Any]) -> OAuthConnector:
    """Check the config (ValueError naming every bad key) and build the connector; no network here."""
    return OAuthConnector(connector_id, parse_oauth_config(config))
