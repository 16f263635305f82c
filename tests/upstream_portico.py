"""A connector type for tests only: verifies ID tokens issued by another, real Portico (its JWKS), so
token exchange (RFC 8693) runs against a real upstream without the `oidc` connector."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from appliance.connectors.base import Identity
from appliance.errors import ConnectorError

ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
JWKSSource = Callable[[], Awaitable[dict[str, Any]]]


def http_jwks(issuer: str) -> JWKSSource:
    """The upstream's /keys, fetched over HTTP (in a thread: urllib blocks)."""

    def fetch() -> dict[str, Any]:
        with urllib.request.urlopen(f"{issuer}/keys", timeout=5) as response:
            return dict(json.loads(response.read()))

    async def source() -> dict[str, Any]:
        return await asyncio.to_thread(fetch)

    return source


class UpstreamPorticoConnector:
    """Token identity only: an ID token of `issuer`, signature checked against its JWKS, iss and exp."""

    def __init__(self, issuer: str, jwks: JWKSSource, now: Callable[[], float] = time.time) -> None:
        self.issuer = issuer
        self._jwks = jwks
        self._now = now

    async def token_identity(self, subject_token_type: str, subject_token: str) -> Identity:
        if subject_token_type != ID_TOKEN_TYPE:
            raise ConnectorError("only ID tokens can be exchanged here")
        keys = KeySet.import_key_set(await self._jwks())  # type: ignore[arg-type]
        try:
            token = jwt.decode(subject_token, keys, algorithms=["RS256", "ES256"])
        except (JoseError, ValueError) as exc:
            raise ConnectorError(f"subject token rejected: {type(exc).__name__}") from None
        claims = token.claims
        if claims.get("iss") != self.issuer:
            raise ConnectorError("subject token from another issuer")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self._now():
            raise ConnectorError("subject token expired")
        return Identity(
            user_id=str(claims["sub"]), username=str(claims.get("name", "")),
            preferred_username=str(claims.get("preferred_username", "")), email=str(claims.get("email", "")),
            email_verified=bool(claims.get("email_verified", False)),
            groups=tuple(claims.get("groups", ())),
        )


def open_upstream_portico(connector_id: str, config: Mapping[str, Any]) -> UpstreamPorticoConnector:
    """The factory for config {issuer}: JWKS fetched from the issuer's /keys."""
    issuer = str(config.get("issuer", ""))
    if not issuer:
        raise ValueError("issuer is required")
    return UpstreamPorticoConnector(issuer, http_jwks(issuer))
