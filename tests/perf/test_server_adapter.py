"""appliance.web.server.serve with Granian (and Hypercorn where both must agree): listeners, readiness,
bind errors, TLS, one lifespan, graceful shutdown and its bound, and the fast path on the wire."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from perf_support import config_text, make_config, make_stack, self_signed
from quart import Quart

from appliance.config.load import parse_config
from appliance.telemetry.metrics import HTTPStats
from appliance.telemetry.middleware import TelemetryMiddleware, route_resolver
from appliance.web.fastpath import FastPath
from appliance.web.server import DEFAULT_SERVER, Listener, ListenError, ServerError, resolve_server, serve

pytestmark = pytest.mark.timeout(60)
SERVERS = ["granian", "hypercorn"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


class Events:
    def __init__(self) -> None:
        self.started = 0
        self.stopped = 0


def demo_app(events: Events, *, fail_start: bool = False) -> Quart:
    app = Quart("demo")

    @app.before_serving
    async def start() -> None:
        events.started += 1
        if fail_start:
            raise RuntimeError("the app cannot start")

    @app.after_serving
    async def stop() -> None:
        events.stopped += 1

    @app.route("/hello")
    async def hello() -> str:
        return "hello"

    @app.route("/slow/<float:seconds>")
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    return app


class Running:
    def __init__(self, task: asyncio.Task[None], shutdown: asyncio.Event, ports: list[int],
                 ready: list[bool]) -> None:
        self.task, self.shutdown, self.ports, self.ready = task, shutdown, ports, ready

    def url(self, path: str, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[i]}{path}"

    async def stop(self) -> float:
        started = time.monotonic()
        self.shutdown.set()
        await asyncio.wait_for(self.task, 30)
        return time.monotonic() - started


async def start(app: Any, server: str, listeners: int = 1, **options: Any) -> Running:
    ports = [free_port() for _ in range(listeners)]
    shutdown = asyncio.Event()
    ready: list[bool] = []

    def on_ready() -> None:  # every listener accepts before this runs
        ready.append(all(accepts(port) for port in ports))

    task = asyncio.create_task(serve(app, [Listener(f"127.0.0.1:{p}") for p in ports], shutdown,
                                     on_ready=on_ready, server=server, **options))
    for _ in range(200):
        if ready or task.done():
            break
        await asyncio.sleep(0.02)
    if task.done():
        task.result()  # raises what serve raised
    return Running(task, shutdown, ports, ready)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20) as http:
        yield http


def test_web_server_is_a_config_key() -> None:
    assert make_config(config_text()).web.server == "granian"
    assert make_config(config_text(web_extra="  server: hypercorn\n")).web.server == "hypercorn"
    config, problems = parse_config(config_text(web_extra="  server: uvicorn\n"))
    assert config is None and any("web.server" in str(p) and "granian, hypercorn" in str(p) for p in problems)


def test_granian_is_the_default_and_names_are_checked() -> None:
    assert DEFAULT_SERVER == "granian"
    assert resolve_server("") == "granian"  # installed here: pinned in the report
    assert resolve_server("hypercorn") == "hypercorn"
    with pytest.raises(ServerError, match="unknown web server"):
        resolve_server("nginx")


@pytest.mark.parametrize("server", SERVERS)
async def test_serves_every_listener_once_ready_with_one_lifespan(server: str,
                                                                  client: httpx.AsyncClient) -> None:
    events = Events()
    running = await start(demo_app(events), server, listeners=2)
    assert running.ready == [True]
    for i in range(2):
        answer = await client.get(running.url("/hello", i))
        assert answer.status_code == 200 and answer.text == "hello"
    if server == "granian":
        assert answer.headers["server"] == "granian"
    assert events.started == 1
    await running.stop()
    assert events.stopped == 1
    assert not any(accepts(port) for port in running.ports)


@pytest.mark.parametrize("server", SERVERS)
async def test_an_address_in_use_is_a_listen_error(server: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match="in use"):
            await serve(demo_app(Events()), [Listener(f"127.0.0.1:{port}")], asyncio.Event(), server=server)


async def test_a_second_granian_on_the_same_port_fails() -> None:
    """Granian on its own binds with SO_REUSEPORT, which would let a second process share the port."""
    running = await start(demo_app(Events()), "granian")
    try:
        with pytest.raises(ListenError, match="in use"):
            await serve(demo_app(Events()), [Listener(f"127.0.0.1:{running.ports[0]}")], asyncio.Event(),
                        server="granian")
    finally:
        await running.stop()


@pytest.mark.parametrize("server", SERVERS)
async def test_shutdown_finishes_requests_in_flight(server: str, client: httpx.AsyncClient) -> None:
    running = await start(demo_app(Events()), server)
    in_flight = asyncio.create_task(client.get(running.url("/slow/0.8")))
    await asyncio.sleep(0.3)
    took = await running.stop()
    answer = await in_flight
    assert answer.status_code == 200 and answer.text == "slept 0.8"
    assert 0.3 < took < 5
    with pytest.raises(httpx.ConnectError):
        await client.get(running.url("/hello"))


async def test_the_graceful_timeout_bounds_the_wait(client: httpx.AsyncClient) -> None:
    running = await start(demo_app(Events()), "granian", graceful_timeout=0.5)
    stuck = asyncio.create_task(client.get(running.url("/slow/20.0")))
    await asyncio.sleep(0.3)
    took = await running.stop()
    assert 0.4 < took < 5
    stuck.cancel()


async def test_a_failing_startup_is_a_server_error_and_frees_the_port() -> None:
    port = free_port()
    with pytest.raises(ServerError, match="failed to start"):
        await serve(demo_app(Events(), fail_start=True), [Listener(f"127.0.0.1:{port}")], asyncio.Event(),
                    server="granian")
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


async def test_tls_listener_and_minimum_version(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    events = Events()
    for minimum, tls12_works in (("", True), ("1.3", False)):
        port = free_port()
        shutdown = asyncio.Event()
        ready = asyncio.Event()
        listener = Listener(f"127.0.0.1:{port}", cert, key, minimum)
        task = asyncio.create_task(serve(demo_app(events), [listener], shutdown, on_ready=ready.set,
                                         server="granian"))
        await asyncio.wait_for(ready.wait(), 10)
        try:
            async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=cert)) as https:
                answer = await https.get(f"https://127.0.0.1:{port}/hello")
            assert answer.status_code == 200 and answer.text == "hello"
            only12 = ssl.create_default_context(cafile=cert)
            only12.maximum_version = ssl.TLSVersion.TLSv1_2
            async with httpx.AsyncClient(verify=only12) as old:
                if tls12_works:
                    assert (await old.get(f"https://127.0.0.1:{port}/hello")).status_code == 200
                else:
                    with pytest.raises(httpx.ConnectError):
                        await old.get(f"https://127.0.0.1:{port}/hello")
        finally:
            shutdown.set()
            await task


async def test_unreadable_tls_files_are_a_listen_error(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ListenError, match="TLS"):
        listener = Listener(f"127.0.0.1:{free_port()}", cert, str(tmp_path / "bad.pem"))
        await serve(demo_app(Events()), [listener], asyncio.Event(), server="granian")


async def _raw_get(port: int, path: str, headers: str = "") -> tuple[list[bytes], bytes]:
    """The exact header lines and body of one HTTP/1.1 answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")[:-2]
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
    body = await reader.readexactly(length)
    writer.close()
    return lines, body


async def test_fast_and_quart_answers_are_equal_on_the_wire() -> None:
    stack = await make_stack(config_text(web_extra='  allowedOrigins: ["https://spa.example"]\n'))
    routes = route_resolver(stack.app.url_map, "/dex")
    fast = TelemetryMiddleware(FastPath(stack.app, stack.deps), HTTPStats(), routes)
    plain = TelemetryMiddleware(stack.app, HTTPStats(), routes)
    both: list[Running] = []
    try:
        for app in (fast, plain):
            both.append(await start(app, "granian"))
        varying: Callable[[bytes], bool] = lambda line: line.lower().startswith((b"date:", b"x-request-id:"))  # noqa: E731
        for path, headers in (("/dex/keys", ""), ("/dex/.well-known/openid-configuration",
                                                  "Origin: https://spa.example\r\n")):
            (fast_lines, fast_body), (app_lines, app_body) = [
                await _raw_get(running.ports[0], path, headers) for running in both]
            assert [line for line in fast_lines if not varying(line)] == [
                line for line in app_lines if not varying(line)]
            assert fast_body == app_body
            assert sum(varying(line) for line in fast_lines) == 2
    finally:
        for running in both:
            await running.stop()
        await stack.close()
