"""The issuer as the kubectl plugin sees it: discovery, the token endpoint and ID-token validation."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from appliance.clock import Clock
from appliance.errors import PorticoError

# Only asymmetric algorithms: an HS256 ID token would be "signed" with the client secret, which a
# public client does not have and which proves nothing about the issuer.
SAFE_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA")
LEEWAY_S = 60  # clock skew between this machine and the issuer, for exp/iat
DISCOVERY_PATH = "/.well-known/openid-configuration"


class LoginError(PorticoError):
    """A login or refresh failed; the message names the step and never holds a token or secret."""


class TokenEndpointError(LoginError):
    """The token (or device) endpoint answered an OAuth 2.0 error (RFC 6749 5.2)."""

    def __init__(self, error: str, description: str, status: int) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class Settings:
    """Who logs in where: the issuer, the client, the scopes it asks for."""

    issuer: str
    client_id: str
    scopes: tuple[str, ...]
    client_secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    device_authorization: str
    jwks_uri: str
    algorithms: tuple[str, ...]


@dataclass(frozen=True)
class Tokens:
    """A validated ID token, its refresh token (may be empty) and the ID token's iat/exp (epoch s)."""

    id_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expiry: int
    issued_at: int


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise LoginError(f"{what} answered HTTP {response.status_code} without a JSON object")
    return body


class Provider:
    """One issuer and one client. Synchronous on purpose: a CLI that does one thing at a time."""

    def __init__(self, settings: Settings, http: httpx.Client, clock: Clock) -> None:
        self.settings = settings
        self._http = http
        self._clock = clock
        self._endpoints: Endpoints | None = None

    def _get(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise LoginError(f"cannot reach the {what} at {url}: {exc}") from exc
        if response.status_code != 200:
            raise LoginError(f"the {what} at {url} answered HTTP {response.status_code}")
        return _json(response, f"the {what} at {url}")

    def endpoints(self) -> Endpoints:
        """Discovery, once per run; the document must name this very issuer (OIDC Discovery 4.3)."""
        if self._endpoints is not None:
            return self._endpoints
        issuer = self.settings.issuer
        base = issuer.rstrip("/")
        doc = self._get(base + DISCOVERY_PATH, "discovery document")
        if doc.get("issuer") != issuer:
            raise LoginError(f"the discovery document names the issuer {doc.get('issuer')!r}, not {issuer!r}")
        urls: dict[str, str] = {}
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(key)
            if not isinstance(value, str) or not value:
                raise LoginError(f"the discovery document has no {key}")
            urls[key] = value
        device = doc.get("device_authorization_endpoint")
        offered = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(a for a in offered if isinstance(a, str) and a in SAFE_ALGORITHMS)
        if not algorithms:
            raise LoginError(f"the issuer signs ID tokens only with algorithms refused here: {offered}")
        self._endpoints = Endpoints(
            authorization=urls["authorization_endpoint"],
            token=urls["token_endpoint"],
            # Dex's path, for an issuer that does not advertise it.
            device_authorization=device if isinstance(device, str) and device else base + "/device/code",
            jwks_uri=urls["jwks_uri"],
            algorithms=algorithms,
        )
        return self._endpoints

    def post_form(self, url: str, form: dict[str, str], what: str) -> dict[str, Any]:
        """POST a form with the client's credentials; the JSON answer, or TokenEndpointError."""
        data = dict(form)
        headers = {"Accept": "application/json"}
        if self.settings.client_secret:
            # client_secret_basic with both parts form-URL-encoded first (RFC 6749 2.3.1).
            pair = f"{quote(self.settings.client_id, safe='')}:{quote(self.settings.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            data["client_id"] = self.settings.client_id
        try:
            response = self._http.post(url, data=data, headers=headers)
        except httpx.HTTPError as exc:
            raise LoginError(f"cannot reach the {what} at {url}: {exc}") from exc
        body = _json(response, f"the {what} at {url}")
        if response.status_code != 200 or "error" in body:
            raise TokenEndpointError(str(body.get("error") or f"HTTP {response.status_code}"),
                                     str(body.get("error_description") or ""), response.status_code)
        return body

    def token(self, form: dict[str, str]) -> dict[str, Any]:
        return self.post_form(self.endpoints().token, form, "token endpoint")

    def tokens_from(self, body: dict[str, Any], *, nonce: str | None, previous_refresh: str = "") -> Tokens:
        """The validated tokens of a token response; a response without a refresh token keeps the old one
        (an issuer that does not rotate refresh tokens)."""
        raw = body.get("id_token")
        if not isinstance(raw, str) or not raw:
            raise LoginError("the token response has no id_token (is the openid scope requested?)")
        claims = self.verify_id_token(raw, nonce)
        refresh = body.get("refresh_token")
        return Tokens(
            id_token=raw,
            refresh_token=refresh if isinstance(refresh, str) and refresh else previous_refresh,
            expiry=int(claims["exp"]),
            issued_at=int(claims.get("iat") or self._clock.now().timestamp()),
        )

    def _keys(self) -> KeySet:
        doc = self._get(self.endpoints().jwks_uri, "JWKS")
        items = doc.get("keys")
        if not isinstance(items, list):
            raise LoginError("the issuer's JWKS has no keys list")
        usable = []
        for item in items:
            if not isinstance(item, dict) or item.get("use", "sig") != "sig":
                continue
            try:
                usable.append(KeySet.import_key_set({"keys": [item]}).keys[0])
            except (JoseError, ValueError, TypeError):
                continue  # a key type this library cannot use is not fatal while another one verifies
        return KeySet(usable)

    def verify_id_token(self, raw: str, nonce: str | None) -> dict[str, Any]:
        """The claims of an ID token whose signature (by the issuer's JWKS), iss, aud, azp, exp and nonce
        all check out; LoginError otherwise."""
        allowed = self.endpoints().algorithms
        try:
            header = extract_compact(raw.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise LoginError("the ID token is not a signed JWT") from exc
        if header.get("alg") not in allowed:
            raise LoginError(f"the ID token is signed with {header.get('alg')!r}; "
                             f"accepted: {', '.join(allowed)}")
        keys = self._keys()
        candidates: list[Any] = [keys] if header.get("kid") is not None else list(keys.keys)
        claims: dict[str, Any] | None = None
        for key in candidates:
            try:
                claims = dict(jwt.decode(raw, key, algorithms=list(allowed)).claims)
                break
            except (JoseError, ValueError):
                continue
        if claims is None:
            raise LoginError("no key of the issuer's JWKS verifies the ID token's signature")
        self._check_claims(claims, nonce)
        return claims

    def _check_claims(self, claims: dict[str, Any], nonce: str | None) -> None:
        client_id = self.settings.client_id
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self.settings.issuer},
            "aud": {"essential": True, "value": client_id},
            "exp": {"essential": True},
            "sub": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(now=lambda: int(self._clock.now().timestamp()), leeway=LEEWAY_S,
                                         **options)
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise LoginError("the issuer sent an ID token that has already expired "
                             "(is this machine's clock right?)") from exc
        except JoseError as exc:
            raise LoginError(f"the ID token is not valid for this issuer and client: {exc}") from exc
        audience = claims["aud"]
        # OIDC Core 3.1.3.7: with several audiences, azp must name this client.
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
            raise LoginError("the ID token has several audiences and its azp is not this client")
