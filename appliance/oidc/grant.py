"""What every grant of the token endpoint gets and implements: the request context and the hook."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from appliance.connectors.base import RefreshConnector
from appliance.oidc import scopes as sc
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.discovery import GRANT_REFRESH_TOKEN
from appliance.store.models import Client


@dataclass(frozen=True)
class TokenContext:
    """One token request, after the shared steps ran: the grant only reads it."""

    deps: Deps
    snap: Snapshot
    client: Client
    form: Mapping[str, str]
    client_ip: str = ""  # as the front derived it (web.clientRemoteIP); "" when unknown

    def get(self, name: str) -> str:
        return self.form.get(name, "")


class Grant(Protocol):
    """One grant type. The endpoint authenticates the client before `exchange` runs, so no grant can
    skip that step; `exchange` returns the JSON body or raises OAuthError."""

    grant_type: str

    async def exchange(self, ctx: TokenContext) -> dict[str, object]: ...


def may_issue_refresh(snap: Snapshot, connector: object, scopes: tuple[str, ...]) -> bool:
    """A refresh token is never mandatory (RFC 6749 1.5): only with offline_access, a connector that
    can refresh and the refresh_token grant enabled."""
    return (
        sc.OFFLINE_ACCESS in scopes
        and isinstance(connector, RefreshConnector)
        and GRANT_REFRESH_TOKEN in snap.grant_types
    )
