"""The `oidc` connector: logins through an upstream OpenID Provider (Dex's keys), refresh, token exchange.

Login binding. The web layer keeps nothing for this connector across the redirect: the PKCE verifier
and the nonce are derived from `state` (Portico's auth request id) with HMAC-SHA256 under a key of this
connector. So a code or an ID token obtained for one auth request cannot be used to finish another, and
no verifier is stored. The key is derived from clientSecret (plus connector id, issuer, client id), so
every replica and every config reload computes the same one; only a public upstream client (no
clientSecret) falls back to a random key per process, unless the caller passes `state_key`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.common.urls import add_params_to_uri  # type: ignore[import-untyped]
from authlib.integrations.base_client import OAuthError as AuthlibOAuthError  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]

from appliance.clock import Clock
from appliance.connectors.base import Identity, Scopes, UserRefusedError
from appliance.connectors.upstream_claims import decode_refresh_data, encode_refresh_data, map_identity
from appliance.connectors.upstream_discovery import ProviderMetadata, discover
from appliance.connectors.upstream_http import UpstreamHTTP, UpstreamRefusedError
from appliance.connectors.upstream_jwks import JWKSCache, TokenRejected, TokenVerifier
from appliance.connectors.upstream_oidc_config import OIDCConfig, parse_oidc_config
from appliance.errors import ConnectorError
from appliance.ids import new_hmac_key

log = logging.getLogger("portico.connectors.oidc")

__all__ = ["ACCESS_TOKEN_TYPE", "ID_TOKEN_TYPE", "OIDCConnector", "UpstreamRefusedError", "open_oidc"]

ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 (a type name, not a secret)
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
# Providers known to refuse client_secret_basic (Dex's list): basicAuthUnsupported defaults to true there.
_BROKEN_BASIC_AUTH = ("okta.com", "oktapreview.com")


class OIDCConnector:
    """A CallbackConnector and RefreshConnector over an upstream OP; discovery happens on first use."""

    def __init__(self, connector_id: str, config: OIDCConfig, *, state_key: bytes | None = None,
                 clock: Clock | None = None) -> None:
        self.id = connector_id
        self.config = config
        self.label = f'oidc connector "{connector_id}"'
        self._rules = replace(config.rules, label=self.label)
        self._http = UpstreamHTTP(self.label, config.root_cas, config.insecure_skip_verify)
        self._clock = clock
        self._state_key = state_key or _derive_state_key(connector_id, config)
        self._meta: ProviderMetadata | None = None
        self._verifier: TokenVerifier | None = None
        host = urlsplit(config.issuer).hostname or ""
        broken = any(host == d or host.endswith("." + d) for d in _BROKEN_BASIC_AUTH)
        post = config.basic_auth_unsupported if config.basic_auth_unsupported is not None else broken
        self._auth_method = "client_secret_post" if post else "client_secret_basic"

    def __repr__(self) -> str:  # the config's repr leaves the client secret out
        return f"OIDCConnector(id={self.id!r}, issuer={self.config.issuer!r})"

    async def open(self) -> None:
        """Discover the upstream now (optional: every method does it on first use). ConnectorError if down."""
        await self._provider()

    @property
    def jwks_fetches(self) -> int:
        """How often the upstream's JWKS was fetched (once, then once per key rollover seen)."""
        return self._verifier.keys.fetches if self._verifier else 0

    async def metadata(self) -> ProviderMetadata:
        return (await self._provider())[0]

    async def _provider(self) -> tuple[ProviderMetadata, TokenVerifier]:
        if self._meta is None or self._verifier is None:
            # Two logins racing here both discover; the results are equal, so no lock is needed.
            cfg = self.config
            meta = await discover(self._http, cfg.issuer, cfg.issuer_alias, cfg.overrides)
            keys = JWKSCache(self._http, meta.jwks_uri)
            self._verifier = TokenVerifier(keys, meta.issuer, meta.id_token_algorithms, self.label,
                                           self._clock)
            self._meta = meta
        return self._meta, self._verifier

    def _bound(self, purpose: str, state: str) -> str:
        """A per-auth-request secret (PKCE verifier, nonce): 43 base64url characters."""
        mac = hmac.new(self._state_key, f"{purpose}\0{state}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def _pkce_method(self, meta: ProviderMetadata) -> str:
        if self.config.pkce_challenge:
            return self.config.pkce_challenge
        for method in ("S256", "plain"):
            if method in meta.code_challenge_methods:
                return method
        return ""

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        if callback_url != self.config.redirect_uri:
            raise ConnectorError(f"{self.label}: expected callback URL {callback_url!r} did not match "
                                 f"the URL in the config {self.config.redirect_uri!r}")
        meta, _ = await self._provider()
        scope = list(self.config.scopes)
        params: dict[str, str] = {"nonce": self._bound("nonce", state)}
        if self.config.acr_values:
            params["acr_values"] = " ".join(self.config.acr_values)
        if scopes.offline_access:
            if "offline_access" not in scope and meta.supports_refresh():
                scope.append("offline_access")
            params["access_type"] = "offline"  # Google's way of asking for a refresh token, sent as Dex does
            if self.config.prompt_type:
                params["prompt"] = self.config.prompt_type
        method = self._pkce_method(meta)
        if method:
            verifier = self._bound("pkce", state)
            params["code_challenge"] = create_s256_code_challenge(verifier) if method == "S256" else verifier
            params["code_challenge_method"] = method
        url: str = prepare_grant_uri(meta.authorization_endpoint, self.config.client_id, "code",
                                     redirect_uri=self.config.redirect_uri, scope=scope, state=state,
                                     **params)
        return url

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        error = params.get("error", "")
        if error:
            description = params.get("error_description", "")
            raise UpstreamRefusedError(f"{self.label}: the upstream refused the login: {error}"
                                       + (f": {description}" if description else ""), error)
        code, state = params.get("code", ""), params.get("state", "")
        if not code or not state:
            missing = "code" if not code else "state"
            raise ConnectorError(f"{self.label}: the upstream's answer has no {missing}")
        meta, verifier = await self._provider()
        self._check_iss_parameter(meta, params)
        pkce = self._bound("pkce", state) if self._pkce_method(meta) else None
        token = await self._token(meta, "authorization_code", code=code, code_verifier=pkce)
        raw_id = token.get("id_token")
        if not isinstance(raw_id, str) or not raw_id:
            raise ConnectorError(f"{self.label}: no id_token in token response")
        nonce = self._bound("nonce", state)
        claims = await verifier.verify(raw_id, audience=self.config.client_id, nonce=nonce)
        claims = await self._with_userinfo(meta, claims, _text(token, "access_token"))
        data = encode_refresh_data(_text(token, "refresh_token"), raw_id)
        return map_identity(self._rules, claims, data)

    def _check_iss_parameter(self, meta: ProviderMetadata, params: Mapping[str, str]) -> None:
        """RFC 9207: the authorization response names its issuer, which defeats mix-up attacks."""
        iss = params.get("iss")
        if iss is None:
            if meta.iss_parameter_supported:
                raise ConnectorError(f"{self.label}: the upstream's answer has no iss parameter, "
                                     "though it advertises one")
            return
        if not hmac.compare_digest(iss.encode(), meta.discovered_issuer.encode()):
            raise ConnectorError(f"{self.label}: the answer comes from issuer {iss!r}, not from "
                                 f"{meta.discovered_issuer!r}")

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        """Re-check the user with the upstream refresh token kept in connector_data; claims re-mapped."""
        refresh_token, old_id_token = decode_refresh_data(identity.connector_data)
        if not refresh_token:
            raise UserRefusedError(f"{self.label}: no upstream refresh token for this session "
                                 "(the upstream issued none at login)")
        meta, verifier = await self._provider()
        token = await self._token(meta, "refresh_token", refresh_token=refresh_token)
        raw_id = _text(token, "id_token")
        data = encode_refresh_data(_text(token, "refresh_token") or refresh_token, raw_id or old_id_token)
        claims: dict[str, Any] | None = None
        try:
            if raw_id:
                claims = await verifier.verify(raw_id, audience=self.config.client_id, nonce=None)
            if self.config.get_user_info:
                claims = await self._with_userinfo(meta, claims, _text(token, "access_token"))
        except ConnectorError as exc:
            exc.connector_data = data  # the upstream may have rotated its refresh token: keep the new one
            raise
        if claims is None:
            # Neither an ID token nor userinfo: nothing to re-map, so the user stays as they were.
            return replace(identity, connector_data=data)
        fresh = map_identity(self._rules, claims, data)
        if fresh.user_id != identity.user_id:
            raise UserRefusedError(f"{self.label}: the upstream answered the refresh for another user")
        return fresh

    async def token_identity(self, subject_token_type: str, subject_token: str) -> Identity:
        """The user behind an upstream token (RFC 8693 token exchange), as Dex's TokenIdentity.

        An ID token is verified against the upstream's keys and issuer, without an audience check (as
        Dex: tokens minted for other clients, e.g. CI jobs, are the point). An access token needs
        getUserInfo: the upstream's userinfo endpoint is what vouches for it.
        """
        meta, verifier = await self._provider()
        if subject_token_type == ID_TOKEN_TYPE:
            claims = await verifier.verify(subject_token, audience=None, nonce=None)
        elif subject_token_type == ACCESS_TOKEN_TYPE:
            if not self.config.get_user_info:
                raise ConnectorError(f"{self.label}: getUserInfo is required for access token exchange")
            claims = await self._with_userinfo(meta, None, subject_token)
        else:
            raise ConnectorError(f"{self.label}: unknown token type for token exchange: {subject_token_type}")
        return map_identity(self._rules, claims, None)

    async def verify_id_token(self, raw_id_token: str, nonce: str | None = None) -> dict[str, Any]:
        """The claims of an ID token issued to this connector's client (audience checked)."""
        _, verifier = await self._provider()
        return await verifier.verify(raw_id_token, audience=self.config.client_id, nonce=nonce)

    async def end_session_url(self, id_token_hint: str = "",
                              post_logout_redirect_uri: str = "") -> str | None:
        """The upstream's RP-initiated logout URL, or None when it advertises no end_session_endpoint."""
        meta, _ = await self._provider()
        if not meta.end_session_endpoint:
            return None
        params: list[tuple[str, str]] = []
        if id_token_hint:
            params.append(("id_token_hint", id_token_hint))
        if post_logout_redirect_uri:
            params.append(("post_logout_redirect_uri", post_logout_redirect_uri))
            params.append(("client_id", self.config.client_id))
        if not params:
            return meta.end_session_endpoint
        url: str = add_params_to_uri(meta.end_session_endpoint, params)
        return url

    @staticmethod
    def upstream_id_token(connector_data: bytes | None) -> str:
        """The upstream ID token kept in connector_data at login/refresh (for id_token_hint), or ""."""
        try:
            return decode_refresh_data(connector_data)[1]
        except ConnectorError:
            return ""

    async def _token(self, meta: ProviderMetadata, grant_type: str, **kwargs: str | None) -> dict[str, Any]:
        """One token-endpoint call through authlib; ConnectorError with the upstream's reason on failure."""
        url = meta.token_endpoint
        fields = {key: value for key, value in kwargs.items() if value is not None}
        client = await self._http.oauth_client(self.config.client_id, self.config.client_secret,
                                               self._auth_method, self.config.redirect_uri)
        async with client:
            try:
                if grant_type == "refresh_token":
                    token = await client.refresh_token(url, **fields)
                else:
                    token = await client.fetch_token(url, grant_type=grant_type, **fields)
            except httpx.HTTPStatusError as exc:
                raise ConnectorError(f"{self.label}: the token endpoint {url} answered HTTP "
                                     f"{exc.response.status_code}") from exc
            except httpx.HTTPError as exc:
                raise self._http.unreachable("token endpoint", url, exc) from exc
            except AuthlibOAuthError as exc:
                what = "refresh" if grant_type == "refresh_token" else "code exchange"
                # An upstream refresh token that is no longer honoured ends the grant: no outage.
                refused = grant_type == "refresh_token" and exc.error == "invalid_grant"
                raise (UserRefusedError if refused else ConnectorError)(
                    f"{self.label}: the upstream refused the {what}: {exc.error}"
                    + (f": {exc.description}" if exc.description else "")) from exc
            except ValueError as exc:
                raise ConnectorError(f"{self.label}: the token endpoint {url} did not answer JSON") from exc
        return dict(token)

    async def _with_userinfo(self, meta: ProviderMetadata, claims: dict[str, Any] | None,
                             access_token: str) -> dict[str, Any]:
        """getUserInfo: the userinfo claims merged over the ID token's (which must be about the same sub)."""
        if not self.config.get_user_info:
            return claims or {}
        if not meta.userinfo_endpoint:
            raise ConnectorError(f"{self.label}: getUserInfo is on but the upstream has no userinfo "
                                 "endpoint")
        if not access_token:
            raise ConnectorError(f"{self.label}: getUserInfo is on but the token response has no access "
                                 "token")
        info = await self._http.get_json(meta.userinfo_endpoint, "userinfo endpoint", bearer=access_token)
        if claims is not None and info.get("sub") != claims.get("sub"):
            raise TokenRejected(f"{self.label}: the userinfo answer is about another subject than the "
                                "ID token")
        return {**(claims or {}), **info}


def _text(token: Mapping[str, Any], key: str) -> str:
    value = token.get(key)
    return value if isinstance(value, str) else ""


def _derive_state_key(connector_id: str, config: OIDCConfig) -> bytes:
    if not config.client_secret:
        log.warning("oidc connector %s: no clientSecret, so logins are bound with a key of this process "
                    "only; a login started on one replica cannot finish on another", connector_id)
        return new_hmac_key()
    context = "\0".join(("portico oidc login binding v1", connector_id, config.issuer, config.client_id))
    return hmac.new(config.client_secret.encode(), context.encode(), hashlib.sha256).digest()


def open_oidc(connector_id: str, config: Mapping[str, Any], *, state_key: bytes | None = None,
              clock: Clock | None = None) -> OIDCConnector:
    """Check the config (ValueError naming every bad key) and build the connector; no network here."""
    parsed = parse_oidc_config(connector_id, config)
    return OIDCConnector(connector_id, parsed, state_key=state_key, clock=clock)
