"""The OpenID Provider discovery document (OIDC Discovery 1.0 section 3), serialised once per config."""

from __future__ import annotations

import json

from appliance.config.schema import Config
from appliance.oidc.urls import IssuerURL

GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH_TOKEN = "refresh_token"  # noqa: S105 (a grant name, not a secret)
GRANT_IMPLICIT = "implicit"
GRANT_PASSWORD = "password"  # noqa: S105
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
GRANT_CLIENT_CREDENTIALS = "client_credentials"

_SCOPES = ["openid", "email", "groups", "profile", "offline_access"]
_CLAIMS = [
    "iss", "sub", "aud", "iat", "exp", "email", "email_verified", "locale", "name",
    "preferred_username", "at_hash", "groups", "federated_claims", "sid", "jti", "auth_time",
]
_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def supported_response_types(config: Config) -> frozenset[str]:
    """The individual response types (`code`, `token`, `id_token`) /auth accepts."""
    types: set[str] = set()
    for item in config.oauth2.response_types or ("code",):
        types.update(item.split())
    return frozenset(types)


def supported_grant_types(config: Config) -> tuple[str, ...]:
    """The grant types served and advertised: oauth2.grantTypes, plus implicit when a token response
    type is configured and password when oauth2.passwordConnector is set (Dex's rules), sorted."""
    grants = set(config.oauth2.grant_types)
    # A response type that hands out an access token at /auth is the implicit grant (as Dex).
    if any("token" in item.split() for item in config.oauth2.response_types):
        grants.add(GRANT_IMPLICIT)
    if config.oauth2.password_connector:
        grants.add(GRANT_PASSWORD)
    return tuple(sorted(grants))


def build_discovery(
    config: Config, issuer: IssuerURL, response_types: frozenset[str], grant_types: tuple[str, ...]
) -> bytes:
    """The document, with Dex's field order and indentation, as bytes ready to serve."""
    configured = sorted({" ".join(item.split()) for item in config.oauth2.response_types or ("code",)})
    document = {
        "issuer": issuer.url,
        "authorization_endpoint": issuer.abs_url("/auth"),
        "token_endpoint": issuer.abs_url("/token"),
        "jwks_uri": issuer.abs_url("/keys"),
        "userinfo_endpoint": issuer.abs_url("/userinfo"),
        "device_authorization_endpoint": issuer.abs_url("/device/code"),
        "introspection_endpoint": issuer.abs_url("/token/introspect"),
        "grant_types_supported": list(grant_types),
        "response_types_supported": configured,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [config.signer.algorithm],
        "code_challenge_methods_supported": list(config.oauth2.pkce.code_challenge_methods_supported),
        "scopes_supported": list(_SCOPES),
        "token_endpoint_auth_methods_supported": list(_AUTH_METHODS),
        "claims_supported": list(_CLAIMS),
        # Portico's additions (Dex's main branch advertises the logout ones with sessions on).
        "revocation_endpoint": issuer.abs_url("/token/revoke"),
        "revocation_endpoint_auth_methods_supported": list(_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(_AUTH_METHODS),
        "end_session_endpoint": issuer.abs_url("/logout"),
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
    }
    return json.dumps(document, indent=2).encode()
