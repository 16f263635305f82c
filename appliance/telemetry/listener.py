"""The telemetry listener's ASGI app: /metrics, /healthz, /healthz/live and /healthz/ready."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from appliance.telemetry.health import Check, Readiness
from appliance.telemetry.metrics import CONTENT_TYPE
from appliance.telemetry.middleware import Receive, Scope, Send

__all__ = ["TelemetryApp"]

_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


class TelemetryApp:
    """A plain ASGI app (no framework: four fixed routes, served beside the public app).

    /metrics: the registry in the Prometheus text format. /healthz: Dex's storage check as JSON
    (200 or 503). /healthz/live: 200 while the process runs its event loop. /healthz/ready: 200 only
    when the configuration is loaded, the process is not stopping and the database answers.
    """

    def __init__(self, render: Callable[[], bytes], readiness: Readiness) -> None:
        self._render = render
        self._readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path not in ("/metrics", "/healthz", "/healthz/live", "/healthz/ready"):
            await _respond(send, 404, _TEXT, b"404 page not found\n", method)
            return
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, _TEXT, b"method not allowed\n", method, allow="GET, HEAD")
            return
        if path == "/metrics":
            # Reading /proc for the process metrics is file work: off the event loop.
            body = await asyncio.to_thread(self._render)
            await _respond(send, 200, CONTENT_TYPE, body, method)
        elif path == "/healthz/live":
            await _respond(send, 200, _TEXT, b"ok\n", method)
        elif path == "/healthz":
            storage = await self._readiness.probe.check()
            await _respond_checks(send, {"storage": storage}, method)
        else:
            await _respond_checks(send, await self._readiness.checks(), method)


async def _respond_checks(send: Send, checks: Mapping[str, Check], method: str) -> None:
    healthy = all(check.ok for check in checks.values())
    body = json.dumps({name: check.as_json() for name, check in checks.items()}, indent=2).encode() + b"\n"
    await _respond(send, 200 if healthy else 503, _JSON, body, method)


async def _respond(send: Send, status: int, content_type: str, body: bytes, method: str,
                   allow: str = "") -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    if allow:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message: Mapping[str, Any] = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
