"""appliance.web.server.serve with an HTTPS listener next to a plain one, in process: one lifespan for
both, the scheme each answer saw, HSTS on HTTPS only, HTTP/2 by ALPN, requests in flight finished at
shutdown, and a listener that cannot open stopping the other one."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from adminutil import free_port
from quart import Quart, request
from tls_support import client_context, make_pair

from appliance.web.server import Listener, ListenError, ServerError, serve
from appliance.web.tls import DEFAULT_HSTS

pytestmark = pytest.mark.timeout(60)


class Events:
    started = 0
    stopped = 0


def demo(events: Events, *, fail_start: bool = False) -> Quart:
    app = Quart("tls-demo")

    @app.before_serving
    async def start() -> None:
        events.started += 1
        if fail_start:
            raise RuntimeError("cannot start")

    @app.after_serving
    async def stop() -> None:
        events.stopped += 1

    @app.route("/scheme")
    async def scheme() -> str:
        return request.scheme

    @app.route("/slow")
    async def slow() -> str:
        await asyncio.sleep(0.8)
        return "slept"

    return app


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("server", ["granian", "hypercorn"])
async def test_plain_and_https_listeners_share_one_lifespan(tmp_path: Path, server: str) -> None:
    pair = make_pair(tmp_path / "a")
    events = Events()
    plain, secure = free_port(), free_port()
    listeners = [Listener(f"127.0.0.1:{plain}"),
                 Listener(f"127.0.0.1:{secure}", str(pair.files.cert), str(pair.files.key))]
    shutdown, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(demo(events), listeners, shutdown, on_ready=ready.set, server=server))
    await asyncio.wait_for(ready.wait(), 20)
    try:
        assert accepts(plain) and accepts(secure)
        async with httpx.AsyncClient(verify=client_context(pair), http2=True, timeout=20) as https:
            answer = await https.get(f"https://127.0.0.1:{secure}/scheme")
            assert (answer.status_code, answer.text, answer.http_version) == (200, "https", "HTTP/2")
            assert answer.headers["strict-transport-security"] == DEFAULT_HSTS
            in_flight = asyncio.create_task(https.get(f"https://127.0.0.1:{secure}/slow"))
            async with httpx.AsyncClient(timeout=20) as http:
                answer = await http.get(f"http://127.0.0.1:{plain}/scheme")
            assert (answer.status_code, answer.text) == (200, "http")
            assert "strict-transport-security" not in answer.headers
            assert events.started == 1
            await asyncio.sleep(0.3)
            shutdown.set()  # the slow request started before: it is finished, not cut
            assert (await in_flight).text == "slept"
        await asyncio.wait_for(task, 30)
    finally:
        shutdown.set()
        if not task.done():
            await asyncio.wait_for(task, 30)
    assert (events.started, events.stopped) == (1, 1)
    assert not accepts(plain) and not accepts(secure)


async def test_a_plain_port_in_use_stops_the_https_listener_too(tmp_path: Path) -> None:
    pair = make_pair(tmp_path / "a")
    events = Events()
    secure = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listeners = [Listener(f"127.0.0.1:{taken.getsockname()[1]}"),
                     Listener(f"127.0.0.1:{secure}", str(pair.files.cert), str(pair.files.key))]
        with pytest.raises(ListenError, match="in use"):
            await asyncio.wait_for(serve(demo(events), listeners, asyncio.Event(), server="granian"), 30)
    assert not accepts(secure)
    assert (events.started, events.stopped) == (1, 1)


async def test_a_failing_startup_frees_the_https_port(tmp_path: Path) -> None:
    pair = make_pair(tmp_path / "a")
    secure = free_port()
    listener = Listener(f"127.0.0.1:{secure}", str(pair.files.cert), str(pair.files.key))
    with pytest.raises(ServerError, match="failed to start: cannot start"):
        await serve(demo(Events(), fail_start=True), [listener], asyncio.Event())
    assert not accepts(secure)


async def test_bad_files_are_a_listen_error_before_anything_starts(tmp_path: Path) -> None:
    pair = make_pair(tmp_path / "a")
    events = Events()
    listener = Listener(f"127.0.0.1:{free_port()}", str(pair.files.cert), str(tmp_path / "missing.key"))
    with pytest.raises(ListenError, match=r"TLS listener .*web\.tlsKey: cannot read"):
        await serve(demo(events), [listener], asyncio.Event())
    assert events.started == 0
    other = make_pair(tmp_path / "b")
    two = [listener, Listener(f"127.0.0.1:{free_port()}", str(other.files.cert), str(other.files.key))]
    with pytest.raises(ListenError, match="share one certificate"):
        await serve(demo(events), two, asyncio.Event())
