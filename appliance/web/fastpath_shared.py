"""What the fast path and the Quart routes share at /token, /token/introspect, /userinfo and /healthz: one
value per form parameter, and the one call into the protocol core of each endpoint.

Both paths go through these, so whatever a core call needs from the request (the client address the
token endpoint's limits count, say) is derived in one place for both; tests/perf checks that the two
paths answer alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from appliance.errors import OAuthError
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.introspect import introspect
from appliance.oidc.token import TokenEndpoint
from appliance.oidc.userinfo import userinfo
from appliance.security.clientip import ClientAddress

__all__ = ["HEALTH_TYPE", "HeaderLookup", "MachineCalls", "form_values", "health"]

log = logging.getLogger("portico.web")

HEALTH_TIMEOUT = 5.0
HEALTH_TYPE = "text/plain; charset=utf-8"
HeaderLookup = Callable[[str], "str | None"]  # a request header by name (case-insensitive), first value
_SHOWN_NAME = 64  # a repeated parameter is named in the error up to this length


def form_values(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The form as one value per name. A repeated parameter is invalid_request (RFC 6749 3.1 and 3.2:
    "parameters MUST NOT be included more than once"): taking one of the values silently would let
    two readers of a request disagree about it."""
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            shown = f" {name!r}" if len(name) <= _SHOWN_NAME and name.isprintable() else ""
            raise OAuthError("invalid_request", f"Parameter{shown} included more than once.")
        form[name] = value
    return form


class MachineCalls:
    """The protocol call of each endpoint, with what it takes from the request. One per front (the
    Quart blueprint, the fast path): the client address resolver caches the parsed proxy list."""

    def __init__(self, deps: Deps, tokens: TokenEndpoint) -> None:
        self._deps = deps
        self._tokens = tokens
        self._addresses = ClientAddress()

    async def token(self, snap: Snapshot, form: Mapping[str, str], authorization: str,
                    scope: Mapping[str, Any], header: HeaderLookup) -> dict[str, object]:
        """POST /token. `scope` is the ASGI scope (the peer address), `header` its header lookup."""
        client_ip = self._addresses.of_scope(snap.config.web.client_remote_ip, scope, header)
        return await self._tokens.handle(self._deps, snap, form, authorization, client_ip=client_ip)

    async def introspect(self, snap: Snapshot, form: Mapping[str, str], authorization: str,
                         scope: Mapping[str, Any], header: HeaderLookup) -> dict[str, object]:
        """POST /token/introspect."""
        return await introspect(self._deps, snap, form, authorization)

    async def userinfo(self, snap: Snapshot, authorization: str, scope: Mapping[str, Any],
                       header: HeaderLookup) -> dict[str, Any]:
        """GET or POST /userinfo."""
        return await userinfo(self._deps, snap, authorization)


async def health(deps: Deps) -> tuple[int, str]:
    """Dex's GET /healthz as (status, plain text): whether the storage answers a ping in time."""
    try:
        await asyncio.wait_for(deps.storage.ping(), HEALTH_TIMEOUT)
    except Exception:
        log.exception("health check: the storage does not answer")
        return 500, "Health check failed."
    return 200, "Health check passed"
