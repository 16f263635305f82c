"""The bare-ASGI fast path in front of the Quart app: the discovery document and the JWKS from bytes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from appliance.oidc.deps import Deps, Snapshot
from appliance.web.responses import SECURITY_HEADERS

__all__ = ["FastPath"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Header = tuple[bytes, bytes]

_JSON = b"application/json"
_KEYS_CACHE = b"max-age=600, must-revalidate"
# Quart's automatic OPTIONS answer: an empty text/html body with an Allow header.
_OPTIONS_TYPE = b"text/html; charset=utf-8"
_PREFLIGHT_METHODS = b"GET, POST, OPTIONS"
_PREFLIGHT_BASE = ("Accept", "Accept-Language", "Content-Language", "Content-Type", "Origin")


def _set(headers: list[Header], name: bytes, value: bytes) -> None:
    """Werkzeug's `headers[name] = value`: replaces the first header of that name in place (dropping
    later ones), or appends."""
    for i, (key, _) in enumerate(headers):
        if key == name:
            headers[i] = (name, value)
            headers[i + 1:] = [item for item in headers[i + 1:] if item[0] != name]
            return
    headers.append((name, value))


def _finish(headers: list[Header], snap: Snapshot) -> list[Header]:
    """What the app's after_request adds to every response before CORS: the security headers unless
    set, then web.headers over them (names lowercased and values UTF-8, as Quart sends them)."""
    present = {key for key, _ in headers}
    for name, value in SECURITY_HEADERS.items():
        key = name.lower().encode()
        if key not in present:
            headers.append((key, value.encode()))
            present.add(key)
    for name, value in snap.config.web.headers.items():
        _set(headers, name.lower().encode(), value.encode())
    return headers


def _cors(snap: Snapshot, origin: str, preflight: bool) -> list[Header]:
    """The headers `apply_cors` adds for this Origin (none when the origin is not allowed)."""
    allowed = snap.config.web.allowed_origins
    if not origin or not allowed or ("*" not in allowed and origin not in allowed):
        return []
    out = [(b"access-control-allow-origin", b"*" if "*" in allowed else origin.encode()),
           (b"vary", b"Origin")]
    if preflight:
        extra = snap.config.web.allowed_headers or ("Authorization",)
        out += [(b"access-control-allow-methods", _PREFLIGHT_METHODS),
                (b"access-control-allow-headers", ", ".join([*_PREFLIGHT_BASE, *extra]).encode()),
                (b"access-control-max-age", b"600")]
    return out


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
            headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
            if self._cache_control:
                headers.append((b"cache-control", self._cache_control))
            self._headers = _finish(headers, snap)
            self._source = (snap, body)
        return self._headers


class FastPath:
    """Wraps the Quart app. GET {prefix}/.well-known/openid-configuration and GET {prefix}/keys (and
    their OPTIONS, CORS preflights included) are answered here from precomputed bytes, with the headers
    the Quart routes send; everything else, HEAD and any failure go to the app.

    The snapshot is read per request, so a reload applies at once; the JWKS is read per request from the
    key manager, so a rotation does too. The X-Request-Id header is the telemetry middleware's (it
    wraps this and replaces whatever the app sends). tests/perf compares both paths byte for byte.
    """

    def __init__(self, app: Callable[[Any, Any, Any], Awaitable[None]], deps: Deps,
                 allowed_methods: Callable[[str], Iterable[str]] | None = None) -> None:
        self.app = app
        self._deps = deps
        prefix = deps.snapshot.issuer.path
        self._discovery_path = prefix + "/.well-known/openid-configuration"
        self._keys_path = prefix + "/keys"
        self._discovery = _Document(b"")
        self._keys = _Document(_KEYS_CACHE)
        # Quart answers OPTIONS with Allow listing the route's methods, in the order werkzeug's set of
        # them iterates; asking the same url_map once gives the same string.
        url_map = getattr(app, "url_map", None)
        if allowed_methods is None and url_map is not None:
            allowed_methods = url_map.bind("localhost").allowed_methods
        self._allow: dict[str, bytes | None] = {}
        for path in (self._discovery_path, self._keys_path):
            methods = list(allowed_methods(path)) if allowed_methods is not None else []
            self._allow[path] = ", ".join(methods).encode() if methods else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == self._discovery_path or path == self._keys_path:
                method = scope["method"]
                if method == "GET" or method == "OPTIONS":
                    answer = self._answer(path, method, scope["headers"])
                    if answer is not None:
                        headers, body = answer
                        await send({"type": "http.response.start", "status": 200, "headers": headers})
                        await send({"type": "http.response.body", "body": body})
                        return
        await self.app(scope, receive, send)

    def _answer(self, path: str, method: str, raw: Iterable[Header]) -> tuple[list[Header], bytes] | None:
        """(headers, body), or None to let the app answer (it logs and renders the failure)."""
        snap = self._deps.snapshot
        origin: bytes | None = None
        request_method: bytes | None = None
        for name, value in raw:  # the first of each, as werkzeug's headers.get
            if name == b"origin" and origin is None:
                origin = value
            elif name == b"access-control-request-method" and request_method is None:
                request_method = value
        try:
            # As Quart decodes headers: a value that is not UTF-8 is the app's to refuse.
            origin_text = origin.decode() if origin else ""
        except UnicodeDecodeError:
            return None
        if method == "OPTIONS":
            allow = self._allow[path]
            if allow is None:
                return None
            headers = [(b"allow", allow), (b"content-type", _OPTIONS_TYPE), (b"content-length", b"0")]
            headers = _finish(headers, snap)
            return headers + _cors(snap, origin_text, bool(request_method)), b""
        if path == self._keys_path:
            try:
                body = self._deps.keys.jwks_bytes()
            except Exception:  # keys not loaded yet: the app's route logs it and answers 500
                return None
            headers = self._keys.headers(snap, body)
        else:
            body = snap.discovery
            headers = self._discovery.headers(snap, body)
        if origin_text and snap.config.web.allowed_origins:
            return headers + _cors(snap, origin_text, False), body
        return list(headers), body
