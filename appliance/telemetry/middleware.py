"""The ASGI middleware around the public app: request ids, and Dex's per-route HTTP metrics."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from appliance.telemetry.context import RequestIds, is_sane_request_id, request_id_var
from appliance.telemetry.metrics import HTTPStats

if TYPE_CHECKING:  # werkzeug comes with the Quart app, which may be built after start (web/lazy.py)
    from werkzeug.routing import Map

__all__ = ["DEX_VARIABLES", "OTHER", "ASGIApp", "TelemetryMiddleware", "TrustedProxies", "route_resolver"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]  # Any: frameworks type the scope more narrowly

OTHER = "other"  # the handler label of paths no route matches, and the method label of unknown methods
_HEADER = b"x-request-id"
# promhttp's method labels are lowercase; anything else is folded so a client cannot mint new series.
_METHODS = {m: m.lower() for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
# Route variables named differently from Dex's routes, renamed so that Dex dashboards match.
DEX_VARIABLES: Mapping[str, str] = {"connector_id": "connector"}


def route_resolver(url_map: Map, prefix: str, cache_size: int = 4096,
                   names: Mapping[str, str] = DEX_VARIABLES) -> Callable[[str, str], str]:
    """(method, path) → the route pattern as Dex labels it: "/auth/{connector}", without the issuer's
    path. Matching costs ~20 µs, so answers are cached (bounded, so random paths cannot grow memory)."""
    from werkzeug.exceptions import HTTPException, MethodNotAllowed
    from werkzeug.routing import RequestRedirect

    adapter = url_map.bind("localhost")

    def variable(match: re.Match[str]) -> str:
        return "{" + names.get(match.group(1), match.group(1)) + "}"

    @lru_cache(maxsize=cache_size)
    def resolve(method: str, path: str) -> str:
        try:
            rule, _ = adapter.match(path, method, return_rule=True)
        except MethodNotAllowed as exc:  # the route exists: label the 405 with it
            allowed = list(exc.valid_methods or ())
            if not allowed:
                return OTHER
            try:
                rule, _ = adapter.match(path, allowed[0], return_rule=True)
            except (HTTPException, RequestRedirect):
                return OTHER
        except (HTTPException, RequestRedirect):
            return OTHER
        pattern = _VARIABLE.sub(variable, rule.rule)
        if prefix and pattern.startswith(prefix):
            pattern = pattern[len(prefix):] or "/"
        return pattern

    return resolve


class TrustedProxies:
    """Whether a peer address is one of `web.clientRemoteIP.trustedProxies` (read per call, so a reload
    applies; the parsed networks are cached while the list is unchanged)."""

    def __init__(self, current: Callable[[], tuple[str, ...]]) -> None:
        self._current = current
        self._source: tuple[str, ...] = ()
        self._networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def __call__(self, host: str) -> bool:
        source = self._current()
        if not source:
            return False
        if source is not self._source:
            self._networks = tuple(_networks(source))
            self._source = source
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


def _networks(entries: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue  # config validation reports it; a bad entry trusts nobody
    return out


class TelemetryMiddleware:
    """Wraps an ASGI app. For every HTTP request: a request id in `request_id_var` for the app's log
    lines and in the X-Request-Id response header, and one observation in `HTTPStats`.

    The id is our own unless the request comes from a trusted proxy with a well-formed X-Request-Id
    (so a proxy's access log and ours share it); a client cannot choose the id another client's
    lines carry. The request body is never read here.
    """

    def __init__(self, app: ASGIApp, stats: HTTPStats, route: Callable[[str, str], str], *,
                 trusted: Callable[[str], bool] | None = None,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self._stats = stats
        self._route = route
        self._trusted = trusted
        self._timer = timer
        self._new_id = RequestIds()

    def _request_id(self, scope: Scope) -> str:
        client = scope.get("client")
        if self._trusted is not None and client and self._trusted(str(client[0])):
            for name, value in scope.get("headers", ()):
                if name.lower() == _HEADER:
                    incoming = bytes(value).decode("latin-1")
                    if is_sane_request_id(incoming):
                        return incoming
                    break
        return self._new_id()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        token = request_id_var.set(request_id)
        header = (_HEADER, request_id.encode())
        status = 500  # what the server answers when the app fails before starting a response
        size = 0
        started = self._timer()
        self._stats.in_flight += 1

        async def send_and_count(message: Message) -> None:
            nonlocal status, size
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                # ASGI response header names are lowercase, so a plain comparison finds the app's own.
                headers = [item for item in message.get("headers", ()) if item[0] != _HEADER]
                headers.append(header)
                message = {**message, "headers": headers}
            elif kind == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            self._stats.in_flight -= 1
            method = str(scope.get("method", ""))
            self._stats.observe(status, _METHODS.get(method, OTHER), self._route(method, str(scope["path"])),
                                self._timer() - started, size)
            request_id_var.reset(token)
