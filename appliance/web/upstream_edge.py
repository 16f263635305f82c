"""The web edge of upstream logins: authproxy headers trusted on one path only, refusals shown as a 403."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from appliance.connectors.base import UserRefusedError
from appliance.errors import DisplayedError
from appliance.oidc.deps import Deps, Snapshot

if TYPE_CHECKING:  # the fast path imports this module, and never needs Quart
    from quart import Quart

log = logging.getLogger("portico.web.upstream")

# Where UpstreamRefusedError lives. It is not imported here: that module pulls in the HTTP client stack
# (authlib, httpx: a tenth of a second at start-up), which only the upstream connectors need, and they
# import it when the configuration has one. Until then no such error can have been raised.
_UPSTREAM_HTTP = "appliance.connectors.upstream_http"

T = TypeVar("T")

ACCESS_DENIED = DisplayedError(
    "Access denied",
    "You cannot log in to this application with this account. If you think you should, ask your "
    "administrator for access.",
    403,
)


@runtime_checkable
class TrustsHeaders(Protocol):
    """A connector that believes request headers (authproxy): it names them."""

    def trusted_headers(self) -> tuple[str, ...]: ...


async def refusals_shown(call: Awaitable[T]) -> T:
    """Await a login step; an upstream that refuses the user (not in the allowed groups, consent or
    email refused, the user cancelled upstream) becomes the generic 403 page. The reason goes to the
    log only; every other ConnectorError goes on to the app's "Login failed" page."""
    try:
        return await call
    except UserRefusedError as exc:
        log.warning("login refused by the upstream: %s", exc)
        raise ACCESS_DENIED from None
    except Exception as exc:
        if not _upstream_refusal(exc):
            raise
        log.warning("login refused by the upstream: %s", exc)
        raise ACCESS_DENIED from None


def _upstream_refusal(exc: Exception) -> bool:
    """An upstream's OAuth error answer access_denied (appliance.connectors.upstream_http)."""
    module = sys.modules.get(_UPSTREAM_HTTP)
    refusal = getattr(module, "UpstreamRefusedError", None) if module is not None else None
    return refusal is not None and isinstance(exc, refusal) and exc.error == "access_denied"


class _HeaderRule:
    """For one snapshot: which header names (lowercase bytes) each path may carry."""

    def __init__(self, snap: Snapshot, callback_prefix: str) -> None:
        self.snap = snap
        self.by_path: dict[str, frozenset[bytes]] = {}
        every: set[bytes] = set()
        for conn in snap.connectors.values():
            if isinstance(conn.instance, TrustsHeaders):
                names = frozenset(n.lower().encode("latin-1") for n in conn.instance.trusted_headers())
                self.by_path[callback_prefix + conn.id] = names
                every |= names
        self.every = frozenset(every)

    def dropped(self, path: str) -> frozenset[bytes]:
        """The trusted names to drop on `path`: all, but those of the connector the path belongs to."""
        return self.every - self.by_path.get(path, frozenset())


def trusted_header_names(snap: Snapshot) -> frozenset[bytes]:
    """Every header name (lowercase bytes) an authproxy connector of `snap` believes: what
    `strip_untrusted_headers` removes on any path but the connector's callback. (The fast path hands a
    request carrying one to the app, which strips it.)"""
    return _HeaderRule(snap, "").every


def strip_untrusted_headers(app: Quart, deps: Deps) -> None:
    """Wrap the app (ASGI) so that an authproxy connector's headers reach only /callback/{its id}.

    The proxy in front authenticates that path and overwrites the headers there; on any other path a
    client may have set them itself, so they are removed before any Portico code (or a log line) sees
    them. A config reload that adds or changes an authproxy connector applies to the next request.
    """
    inner = app.asgi_app
    callback_prefix = deps.snapshot.issuer.path + "/callback/"
    current: list[_HeaderRule] = []

    def rule() -> _HeaderRule:
        snap = deps.snapshot
        if not current or current[0].snap is not snap:
            current[:] = [_HeaderRule(snap, callback_prefix)]
        return current[0]

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            dropped = rule().dropped(str(scope.get("path", "")))
            if dropped:
                headers = [(name, value) for name, value in scope.get("headers", ())
                           if bytes(name).lower() not in dropped]
                scope = {**scope, "headers": headers}
        await inner(scope, receive, send)

    app.asgi_app = asgi_app  # type: ignore[method-assign]
