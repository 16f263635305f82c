"""OIDC scope values: what each means, the connector view of them, and cross-client audiences."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from appliance.connectors.base import Scopes

OPENID = "openid"
OFFLINE_ACCESS = "offline_access"
EMAIL = "email"
PROFILE = "profile"
GROUPS = "groups"
FEDERATED_ID = "federated:id"
CROSS_CLIENT_PREFIX = "audience:server:client_id:"

# The scopes every client may ask for without any trust relation.
STANDARD_SCOPES = frozenset({OPENID, OFFLINE_ACCESS, EMAIL, PROFILE, GROUPS, FEDERATED_ID})

# What the approval page says for each scope (Dex's wording); unknown scopes are not listed.
_DESCRIPTIONS = {
    OFFLINE_ACCESS: "Have offline access",
    PROFILE: "View basic profile information",
    EMAIL: "View your email address",
    GROUPS: "View your groups",
}


def split_scopes(value: str) -> tuple[str, ...]:
    """A space-separated scope parameter; extra whitespace is tolerated (old go-oidc sends it)."""
    return tuple(value.split())


def cross_client_peer(scope: str) -> str | None:
    """The peer client id of an `audience:server:client_id:X` scope, else None."""
    if scope.startswith(CROSS_CLIENT_PREFIX):
        return scope[len(CROSS_CLIENT_PREFIX):]
    return None


def connector_scopes(scopes: Iterable[str]) -> Scopes:
    """What a connector needs to know of the requested scopes."""
    wanted = set(scopes)
    return Scopes(offline_access=OFFLINE_ACCESS in wanted, groups=GROUPS in wanted)


def audience(client_id: str, scopes: Sequence[str]) -> tuple[list[str], str]:
    """The `aud` list and `azp` for a token: cross-client peers first, the requester last; azp only
    when there are several audiences (Dex's GetAudience)."""
    aud: list[str] = []
    for scope in scopes:
        peer = cross_client_peer(scope)
        if peer is not None and peer not in aud:
            aud.append(peer)
    if not aud:
        return [client_id], ""
    if client_id not in aud:
        aud.append(client_id)
    return aud, (client_id if len(aud) > 1 else "")


def describe(scopes: Iterable[str]) -> list[str]:
    """Human-readable lines for the approval page, sorted as Dex sorts them."""
    return sorted({_DESCRIPTIONS[scope] for scope in scopes if scope in _DESCRIPTIONS})
