"""An upstream OpenID Provider's metadata: discovery of the issuer, Dex's overrides and issuerAlias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.connectors.upstream_http import UpstreamHTTP
from appliance.errors import ConnectorError


@dataclass(frozen=True)
class Overrides:
    """providerDiscoveryOverrides: endpoints used instead of the discovered ones."""

    token_url: str = ""
    auth_url: str = ""
    jwks_url: str = ""
    userinfo_url: str = ""
    end_session_url: str = ""


@dataclass(frozen=True)
class ProviderMetadata:
    """What Portico uses of an upstream's discovery document (after overrides)."""

    issuer: str  # the `iss` its tokens must carry: the discovered issuer, or issuerAlias when set
    discovered_issuer: str  # as the document says it (RFC 9207's `iss` parameter carries this one)
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    end_session_endpoint: str = ""
    code_challenge_methods: tuple[str, ...] = ()
    id_token_algorithms: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] | None = None  # None: not advertised
    grant_types: tuple[str, ...] | None = None
    iss_parameter_supported: bool = False

    def supports_refresh(self) -> bool:
        """Whether asking for offline_access can get a refresh token (unknown counts as yes)."""
        if self.scopes_supported is not None and "offline_access" not in self.scopes_supported:
            return False
        return self.grant_types is None or "refresh_token" in self.grant_types


def _strings(document: dict[str, Any], key: str) -> tuple[str, ...] | None:
    value = document.get(key)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return None


def _endpoint(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    return value if isinstance(value, str) else ""


async def discover(http: UpstreamHTTP, issuer: str, issuer_alias: str,
                   overrides: Overrides) -> ProviderMetadata:
    """Fetch `issuer`/.well-known/openid-configuration and check it as go-oidc does.

    Without issuerAlias the document's issuer must be exactly the configured one. With it (providers
    whose discovery document names another issuer, e.g. Azure AD and Oracle IDCS), the document's issuer
    is not checked and tokens must carry issuerAlias.
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = await http.get_json(url, "discovery document")
    discovered = _endpoint(document, "issuer")
    if not issuer_alias and discovered != issuer:
        raise ConnectorError(f"{http.label}: the issuer in {url} is {discovered!r}, not the configured "
                             f"{issuer!r} (set issuerAlias when the provider is known to differ)")
    meta = ProviderMetadata(
        issuer=issuer_alias or discovered,
        discovered_issuer=discovered,
        authorization_endpoint=overrides.auth_url or _endpoint(document, "authorization_endpoint"),
        token_endpoint=overrides.token_url or _endpoint(document, "token_endpoint"),
        jwks_uri=overrides.jwks_url or _endpoint(document, "jwks_uri"),
        userinfo_endpoint=overrides.userinfo_url or _endpoint(document, "userinfo_endpoint"),
        end_session_endpoint=overrides.end_session_url or _endpoint(document, "end_session_endpoint"),
        code_challenge_methods=_strings(document, "code_challenge_methods_supported") or (),
        id_token_algorithms=_strings(document, "id_token_signing_alg_values_supported") or ("RS256",),
        scopes_supported=_strings(document, "scopes_supported"),
        grant_types=_strings(document, "grant_types_supported"),
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported") is True,
    )
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not getattr(meta, name):
            raise ConnectorError(f"{http.label}: the discovery document at {url} has no {name}")
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint",
                 "end_session_endpoint"):
        value = getattr(meta, name)
        if value and not value.startswith(("https://", "http://")):
            raise ConnectorError(f"{http.label}: {name} {value!r} must use http or https")
    return meta
