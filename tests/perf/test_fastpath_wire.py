"""The fast path's machine endpoints on a real server (Granian, and Hypercorn): the same bytes on the wire
as the Quart routes, and a keep-alive connection that goes on serving after bodies the fast path did not
read, bodies over the limit and errors."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from perf_support import config_text, make_stack
from test_server_adapter import Running, start

from appliance.telemetry.metrics import HTTPStats
from appliance.telemetry.middleware import TelemetryMiddleware, route_resolver
from appliance.web.fastpath import FastPath

pytestmark = pytest.mark.timeout(90)

BASIC = "Basic " + base64.b64encode(b"app:app-secret").decode()
CONFIG = config_text(web_extra='  allowedOrigins: ["https://spa.example"]\n') + (
    "oauth2:\n  grantTypes: [authorization_code, refresh_token, client_credentials]\n")


class Connection:
    """One keep-alive HTTP/1.1 connection, read answer by answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def ask(self, method: str, path: str, headers: dict[str, str] | None = None,
                  body: bytes = b"") -> tuple[int, list[bytes], bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 20)
        status_line, *header_lines = head.split(b"\r\n")[:-2]
        length = next((int(line.split(b":")[1]) for line in header_lines
                       if line.lower().startswith(b"content-length:")), 0)
        payload = await asyncio.wait_for(self.reader.readexactly(length), 20) if method != "HEAD" else b""
        return int(status_line.split()[1]), header_lines, payload

    def close(self) -> None:
        self.writer.close()


def _stable(lines: list[bytes], *, closing: bool = False) -> list[bytes]:
    """The header lines without those that differ per answer; `closing`: without Connection: close too
    (the server adds it, or not, when it ends a connection whose body the app left unread)."""
    varying = (b"date:", b"x-request-id:", *((b"connection: close",) if closing else ()))
    return [line for line in lines if not line.lower().startswith(varying)]


@pytest.mark.parametrize("server", ["granian", "hypercorn"])
async def test_machine_endpoints_on_the_wire(server: str) -> None:
    stack = await make_stack(CONFIG)
    routes = route_resolver(stack.app.url_map, "/dex")
    fast = TelemetryMiddleware(FastPath(stack.app, stack.deps, token_endpoint=stack.tokens), HTTPStats(),
                               routes)
    plain = TelemetryMiddleware(stack.app, HTTPStats(), routes)
    running: list[Running] = []
    connections: list[Connection] = []
    try:
        for app in (fast, plain):
            running.append(await start(app, server))
        connections = [await Connection.open(item.ports[0]) for item in running]
        form = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": BASIC}
        status, _, issued = await connections[0].ask("POST", "/dex/token", form,
                                                     b"grant_type=client_credentials&scope=openid+email")
        assert status == 200
        token = json.loads(issued)["access_token"]
        bearer = {"Authorization": f"Bearer {token}", "Origin": "https://spa.example"}
        # Each step on both servers, on the same two connections, in order: the answers must agree
        # and every connection must still serve the next request.
        steps: list[tuple[str, str, dict[str, str], bytes, int]] = [
            ("GET", "/dex/userinfo", bearer, b"", 200),
            # A body the endpoint does not need, read and dropped on both paths: the connection goes on.
            ("POST", "/dex/userinfo", {**bearer, "Content-Type": "text/plain"}, b"u" * 3000, 200),
            ("POST", "/dex/token/introspect", form, f"token={token}".encode(), 200),
            ("POST", "/dex/token", form, b"grant_type=client_credentials&grant_type=x", 400),
            ("POST", "/dex/token", form, b"grant_type=client_credentials&pad=" + b"p" * 70_000, 413),
            ("POST", "/dex/token", {"Authorization": BASIC, "Content-Type": "application/json"}, b"{}", 400),
            ("GET", "/dex/token", {}, b"", 405),
            ("OPTIONS", "/dex/token",
             {"Origin": "https://spa.example", "Access-Control-Request-Method": "POST"}, b"", 200),
            ("GET", "/dex/userinfo", {"Authorization": "Bearer nope"}, b"", 401),
            ("GET", "/dex/userinfo", bearer, b"", 200),
        ]
        for method, path, headers, body, expected in steps:
            answers = [await connection.ask(method, path, headers, body) for connection in connections]
            (fast_status, fast_lines, fast_body), (app_status, app_lines, app_body) = answers
            assert fast_status == app_status == expected, (method, path, answers)
            closing = expected == 413
            assert _stable(fast_lines, closing=closing) == _stable(app_lines, closing=closing), (method, path)
            assert fast_body == app_body, (method, path)
            if expected == 413:  # the app refused to read it all: the server may end the connection
                for connection in connections:
                    connection.close()
                connections = [await Connection.open(item.ports[0]) for item in running]
        # A body neither path reads (userinfo takes its token from a header), larger than the limit: the
        # same answer. What becomes of the connection afterwards is the server's choice, on both paths
        # alike (Granian may close it), so this goes last, on new connections.
        for connection in connections:
            connection.close()
        connections = [await Connection.open(item.ports[0]) for item in running]
        answers = [await connection.ask("POST", "/dex/userinfo", {**bearer, "Content-Type": "text/plain"},
                                        b"u" * 100_000) for connection in connections]
        assert answers[0][0] == answers[1][0] == 200
        assert _stable(answers[0][1], closing=True) == _stable(answers[1][1], closing=True)
        assert answers[0][2] == answers[1][2]
    finally:
        for connection in connections:
            connection.close()
        for item in running:
            await item.stop()
        await stack.close()


async def test_many_concurrent_requests_on_granian() -> None:
    """Fifty clients at once through the fast path: every answer right, nothing left in flight."""
    stack = await make_stack(CONFIG)
    stats = HTTPStats()
    app: Any = TelemetryMiddleware(FastPath(stack.app, stack.deps, token_endpoint=stack.tokens), stats,
                                   route_resolver(stack.app.url_map, "/dex"))
    running = await start(app, "granian")
    try:
        async def client(i: int) -> None:
            connection = await Connection.open(running.ports[0])
            try:
                form = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": BASIC}
                status, _, issued = await connection.ask("POST", "/dex/token", form,
                                                         b"grant_type=client_credentials&scope=openid")
                assert status == 200
                token = json.loads(issued)["access_token"]
                for _ in range(3):
                    status, _, claims = await connection.ask("GET", "/dex/userinfo",
                                                             {"Authorization": f"Bearer {token}"})
                    assert status == 200 and json.loads(claims)["aud"] == "app"
            finally:
                connection.close()

        await asyncio.gather(*(client(i) for i in range(50)))
        family = next(iter(stats.collect()))
        counts = {(s.labels["code"], s.labels["handler"]): s.value for s in family.samples}
        assert counts[("200", "/token")] == 50 and counts[("200", "/userinfo")] == 150
        assert stats.in_flight == 0
    finally:
        await running.stop()
        await stack.close()
