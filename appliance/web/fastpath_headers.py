"""Response headers of the bare-ASGI fast path, byte for byte as the Quart app's after_request sends them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from appliance.oidc.deps import Snapshot
from appliance.web.headers import SECURITY_HEADERS

__all__ = ["JSON", "NO_STORE", "Header", "Message", "Receive", "Scope", "Send", "cors", "finish",
           "first_headers", "json_headers"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Header = tuple[bytes, bytes]

JSON = b"application/json"
# What json_response(..., no_store=True) adds after the content headers (Quart sends names lowercased).
NO_STORE: tuple[Header, ...] = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
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


def finish(headers: list[Header], snap: Snapshot) -> list[Header]:
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


def cors(snap: Snapshot, origin: str, preflight: bool) -> list[Header]:
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


def json_headers(body: bytes, snap: Snapshot, extra: Iterable[tuple[str, str]] = ()) -> list[Header]:
    """The headers of `json_response(body, no_store=True)` with `extra` set on it (an OAuth error's), after
    the app's after_request (before CORS)."""
    added = [(name.lower().encode(), value.encode()) for name, value in extra]
    return finish([(b"content-type", JSON), (b"content-length", str(len(body)).encode()), *NO_STORE, *added],
                  snap)


def first_headers(raw: Iterable[Header], *names: bytes) -> list[bytes | None]:
    """The first value of each header in `names` (as werkzeug's `headers.get`), None when absent."""
    found: list[bytes | None] = [None] * len(names)
    for name, value in raw:
        if name in names:
            i = names.index(name)
            if found[i] is None:
                found[i] = value
    return found
