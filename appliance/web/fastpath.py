"""The bare-ASGI fast path in front of the Quart app: discovery and JWKS from bytes, the machine endpoints
(/token, /token/introspect, /userinfo) through the protocol core, and /healthz, without the framework."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.token import TokenEndpoint
from appliance.web.fastpath_api import ApiRoutes
from appliance.web.fastpath_headers import JSON, Header, Receive, Scope, Send, cors, finish
from appliance.web.fastpath_shared import HEALTH_TYPE, health
from appliance.web.upstream_edge import trusted_header_names

__all__ = ["FastPath"]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
# The methods a path's route allows (for the Allow header of OPTIONS); None while not known yet (the
# app not built: see appliance/web/lazy.py), and the OPTIONS request goes to the app.
AllowedMethods = Callable[[str], "Iterable[str] | None"]

_KEYS_CACHE = b"max-age=600, must-revalidate"
# Quart's automatic OPTIONS answer: an empty text/html body with an Allow header.
_OPTIONS_TYPE = b"text/html; charset=utf-8"
_HEALTH_TYPE = HEALTH_TYPE.encode()
# The app's limits (create_app's MAX_CONTENT_LENGTH, Quart's BODY_TIMEOUT), used when the app has no
# config to read them from: not built yet (a LazyApp) or wrapped (tests). tests/perf checks they agree.
_MAX_BODY = 64 * 1024
_BODY_TIMEOUT = 60.0


class _Document:
    """One precomputed document: its body and headers, rebuilt only when the snapshot or the bytes
    change (a reload swaps the snapshot, a key rotation the JWKS bytes)."""

    def __init__(self, cache_control: bytes) -> None:
        self._cache_control = cache_control
        self._source: tuple[Snapshot, bytes] | None = None
        self._headers: list[Header] = []

    def headers(self, snap: Snapshot, body: bytes) -> list[Header]:
        source = self._source
        if source is None or source[0] is not snap or source[1] is not body:
            headers = [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
            if self._cache_control:
                headers.append((b"cache-control", self._cache_control))
            self._headers = finish(headers, snap)
            self._source = (snap, body)
        return self._headers


class FastPath:
    """Wraps the Quart app and answers, without it, the requests that make up almost all of an IdP's
    traffic, exactly as its routes would (status, headers in order, body; tests/perf compares both):

    - GET discovery and GET /keys from precomputed bytes, GET /healthz (Dex's storage check);
    - POST /token (when given the app's `token_endpoint`), POST /token/introspect, GET and POST
      /userinfo, through the same protocol calls as the routes (appliance/web/fastpath_shared.py);
    - OPTIONS on all of them (Quart's automatic answer, CORS preflights included) once the methods of
      their routes are known (`allowed_methods`, or the app's url_map).

    Everything else goes to the app: other paths and methods (HEAD, a 405), requests carrying a header
    an authproxy connector trusts (the app strips those first), and whatever the handlers leave to it
    (a body that is not form-encoded or is too large, keys not loaded yet). `api=False` serves the two
    documents and /healthz only.

    The app may be a LazyApp (appliance/web/lazy.py): then only what is handed to it builds it, and a
    server that answered nothing else never imports Quart.

    The snapshot is read per request, so a reload applies at once; the JWKS is read per request from
    the key manager, so a rotation does too. Request ids, metrics and the X-Request-Id header are the
    telemetry middleware's, which wraps this.
    """

    def __init__(self, app: Callable[[Any, Any, Any], Awaitable[None]], deps: Deps,
                 allowed_methods: AllowedMethods | None = None, *,
                 token_endpoint: TokenEndpoint | None = None, api: bool = True) -> None:
        self.app = app
        self._deps = deps
        prefix = deps.snapshot.issuer.path
        self._discovery_path = prefix + "/.well-known/openid-configuration"
        self._keys_path = prefix + "/keys"
        self._discovery = _Document(b"")
        self._keys = _Document(_KEYS_CACHE)
        config = getattr(app, "config", None)
        max_body = config.get("MAX_CONTENT_LENGTH") if config is not None else None
        timeout = config.get("BODY_TIMEOUT") if config is not None else None
        api_routes = ApiRoutes(app, deps, token_endpoint, max_body=max_body or _MAX_BODY,
                               body_timeout=float(timeout or _BODY_TIMEOUT))
        self._routes: dict[str, dict[str, Handler]] = {
            self._discovery_path: {"GET": self._document},
            self._keys_path: {"GET": self._document},
            prefix + "/healthz": {"GET": self._health},
        }
        if api:
            self._routes[prefix + "/token"] = {"POST": api_routes.token}
            self._routes[prefix + "/token/introspect"] = {"POST": api_routes.introspect}
            self._routes[prefix + "/userinfo"] = {"GET": api_routes.userinfo, "POST": api_routes.userinfo}
        # Quart answers OPTIONS with Allow listing the route's methods, in the order werkzeug's set of
        # them iterates; asking the same url_map once gives the same string.
        url_map = getattr(app, "url_map", None)
        if allowed_methods is None and url_map is not None:
            allowed_methods = url_map.bind("localhost").allowed_methods
        self._proxy_headers: tuple[Snapshot | None, frozenset[bytes]] = (None, frozenset())
        self._allowed_methods = allowed_methods
        self._allow: dict[str, bytes | None] = {}  # filled per path once its methods are known

    @property
    def paths(self) -> frozenset[str]:
        """The paths answered here (for some methods): their routes are fixed, whatever the app."""
        return frozenset(self._routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self._routes.get(scope["path"])
            if route is not None and not self._carries_proxy_headers(scope):
                method = scope["method"]
                handler = route.get(method)
                if handler is not None:
                    await handler(scope, receive, send)
                    return
                if method == "OPTIONS" and await self._options(scope, send):
                    return
        await self.app(scope, receive, send)

    def _carries_proxy_headers(self, scope: Scope) -> bool:
        """Whether the request has a header an authproxy connector believes (none are configured, mostly)."""
        snap = self._deps.snapshot
        source, names = self._proxy_headers
        if source is not snap:
            names = trusted_header_names(snap)
            self._proxy_headers = (snap, names)
        return bool(names) and any(bytes(name).lower() in names for name, _ in scope["headers"])

    async def _options(self, scope: Scope, send: Send) -> bool:
        """Quart's automatic OPTIONS answer (with the CORS preflight headers); False to leave it to
        the app (a header value that is not UTF-8, no route methods known)."""
        allow = self._allow_header(scope["path"])
        origin_text, request_method, _ = _origin(scope["headers"])
        if allow is None or origin_text is None:
            return False
        snap = self._deps.snapshot
        headers = finish([(b"allow", allow), (b"content-type", _OPTIONS_TYPE), (b"content-length", b"0")],
                         snap)
        headers += cors(snap, origin_text, bool(request_method))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # As Quart sends an empty body: an empty chunk, then the end. (Given the end at once, Granian
        # writes its own Content-Length after its other headers instead of the one above, in place.)
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return True

    def _allow_header(self, path: str) -> bytes | None:
        if path in self._allow:
            return self._allow[path]
        methods = self._allowed_methods(path) if self._allowed_methods is not None else []
        if methods is None:
            return None  # not known yet: the app answers, and is built for it
        listed = list(methods)
        self._allow[path] = ", ".join(listed).encode() if listed else None
        return self._allow[path]

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dex's GET /healthz, as the app's route answers it (no CORS: it is not a cross-origin endpoint)."""
        _, _, has_body = _origin(scope["headers"])
        if has_body:  # the app reads and drops it first
            await self.app(scope, receive, send)
            return
        status, text = await health(self._deps)
        body = text.encode()
        headers = finish([(b"content-type", _HEALTH_TYPE), (b"content-length", str(len(body)).encode())],
                         self._deps.snapshot)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _document(self, scope: Scope, receive: Receive, send: Send) -> None:
        snap = self._deps.snapshot
        origin_text, _, has_body = _origin(scope["headers"])
        if origin_text is None or has_body:  # a GET with a body: the app reads and drops it first
            await self.app(scope, receive, send)
            return
        if scope["path"] == self._keys_path:
            try:
                body = self._deps.keys.jwks_bytes()
            except Exception:  # keys not loaded yet: the app's route logs it and answers 500
                await self.app(scope, receive, send)
                return
            headers = self._keys.headers(snap, body)
        else:
            body = snap.discovery
            headers = self._discovery.headers(snap, body)
        # Always a new list: the cached one stays as it is whatever the server does with the one sent.
        allowed = snap.config.web.allowed_origins
        headers = headers + cors(snap, origin_text, False) if origin_text and allowed else list(headers)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _origin(raw: Iterable[Header]) -> tuple[str | None, bytes | None, bool]:
    """(Origin as text, Access-Control-Request-Method, whether a body is announced), the first of each
    header as werkzeug's headers.get. The origin is None when it is not UTF-8: such a request is the
    app's to refuse."""
    origin: bytes | None = None
    request_method: bytes | None = None
    has_body = False
    for name, value in raw:
        if name == b"origin" and origin is None:
            origin = value
        elif name == b"access-control-request-method" and request_method is None:
            request_method = value
        elif name == b"transfer-encoding" or (name == b"content-length" and value.strip(b" ") != b"0"):
            has_body = True
    try:
        return (origin.decode() if origin else ""), request_method, has_body
    except UnicodeDecodeError:
        return None, request_method, has_body
