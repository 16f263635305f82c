"""Verifying an upstream's ID tokens: its JWKS, cached and refetched once on an unknown key (rollover)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from appliance.clock import Clock, SystemClock
from appliance.connectors.upstream_http import UpstreamHTTP
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.upstream")

# Asymmetric algorithms only (as go-oidc): an HS256 ID token would be "signed" with the client secret.
SAFE_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_S = 30  # clock skew allowed between the upstream and this host


class TokenRejected(ConnectorError):
    """An upstream token failed verification (signature, issuer, audience, expiry or nonce)."""


class _NoKey(Exception):
    """No key of the cached set verifies this token: maybe the upstream rotated its keys."""


class JWKSCache:
    """The upstream's signing keys, fetched on first use and again when a token names an unknown key."""

    def __init__(self, http: UpstreamHTTP, jwks_uri: str) -> None:
        self._http = http
        self.jwks_uri = jwks_uri
        self._keys: KeySet | None = None
        self.generation = 0  # how many times the set was fetched; concurrent misses refetch only once
        self.fetches = 0

    async def get(self) -> KeySet:
        if self._keys is None:
            await self.refetch(self.generation)
        assert self._keys is not None
        return self._keys

    async def refetch(self, seen_generation: int) -> KeySet:
        """Fetch the set again unless another caller already did since `seen_generation`."""
        if self._keys is not None and self.generation != seen_generation:
            return self._keys
        document = await self._http.get_json(self.jwks_uri, "JWKS")
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise ConnectorError(f"{self._http.label}: the JWKS at {self.jwks_uri} has no keys list")
        usable = []
        for item in keys:
            # Encryption keys and key types this library cannot use are skipped, not fatal.
            if not isinstance(item, dict) or item.get("use", "sig") != "sig":
                continue
            try:
                usable.append(KeySet.import_key_set({"keys": [item]}).keys[0])
            except (JoseError, ValueError, TypeError):
                log.warning("%s: skipping an unusable key in %s (kid %r)", self._http.label, self.jwks_uri,
                            item.get("kid"))
        self._keys = KeySet(usable)
        self.generation += 1
        self.fetches += 1
        return self._keys


class TokenVerifier:
    """Checks an upstream JWT: signature by the JWKS, allowed alg, iss, exp, and optionally aud and nonce."""

    def __init__(self, keys: JWKSCache, issuer: str, algorithms: Sequence[str], label: str,
                 clock: Clock | None = None) -> None:
        self.keys = keys
        self._issuer = issuer
        self._label = label
        self._clock = clock or SystemClock()
        self.algorithms = [alg for alg in algorithms if alg in SAFE_ALGORITHMS] or ["RS256"]

    async def verify(self, raw: str, *, audience: str | None, nonce: str | None) -> dict[str, Any]:
        """The claims of a valid token; TokenRejected with the reason otherwise."""
        try:
            header = extract_compact(raw.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise TokenRejected(f"{self._label}: the ID token is not a signed JWT") from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise TokenRejected(f"{self._label}: the ID token is signed with {alg!r}; "
                                f"accepted: {', '.join(self.algorithms)}")
        generation = self.keys.generation
        try:
            claims = self._decode(raw, header, await self.keys.get())
        except _NoKey:
            # A key we have not seen: the upstream may have rotated. Fetch the set once more, not in a loop.
            claims = self._decode_or_reject(raw, header, await self.keys.refetch(generation))
        self._validate(claims, audience, nonce)
        return claims

    def _decode_or_reject(self, raw: str, header: dict[str, Any], keys: KeySet) -> dict[str, Any]:
        try:
            return self._decode(raw, header, keys)
        except _NoKey as exc:
            kid = header.get("kid")
            raise TokenRejected(f"{self._label}: no key of the upstream's JWKS verifies the ID token"
                                + (f" (kid {kid!r})" if kid else "")) from exc

    def _decode(self, raw: str, header: dict[str, Any], keys: KeySet) -> dict[str, Any]:
        if header.get("kid") is not None or len(keys.keys) == 1:
            try:
                return dict(jwt.decode(raw, keys, algorithms=self.algorithms).claims)
            except InvalidKeyIdError as exc:
                raise _NoKey from exc
            except (JoseError, ValueError) as exc:
                raise TokenRejected(f"{self._label}: the ID token's signature is invalid ({exc})") from exc
        # No kid and several keys: the one that verifies is the signer (as go-oidc does).
        for key in keys.keys:
            try:
                return dict(jwt.decode(raw, key, algorithms=self.algorithms).claims)
            except (JoseError, ValueError):
                continue
        raise _NoKey

    def _validate(self, claims: dict[str, Any], audience: str | None, nonce: str | None) -> None:
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self._issuer},
            "exp": {"essential": True},
            "sub": {"essential": True},
        }
        if audience is not None:
            options["aud"] = {"essential": True, "value": audience}
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(now=lambda: int(self._clock.now().timestamp()), leeway=LEEWAY_S,
                                         **options)
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise TokenRejected(f"{self._label}: the ID token has expired") from exc
        except JoseError as exc:
            raise TokenRejected(f"{self._label}: the ID token is not valid here: {exc}") from exc
