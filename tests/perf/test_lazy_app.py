"""The Quart app behind the fast path is built on the first request that needs it, once: concurrent first
requests share one build, a cancelled one does not stop it, a failed one is retried; the lifespan and
the telemetry's route labels work as they did with an app built at start."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from perf_support import Answer, Stack, call, config_text, make_stack, scope
from quart import Quart

from appliance.telemetry.metrics import HTTPStats
from appliance.telemetry.middleware import route_resolver
from appliance.web import fastpath
from appliance.web.app import MAX_BODY_BYTES
from appliance.web.lazy import LazyApp
from appliance.web.lifespan import Lifespan
from appliance.web.public import PublicApp, lazy_routes, public_app

pytestmark = pytest.mark.timeout(60)

FORM = "application/x-www-form-urlencoded"
GRANTS = "oauth2:\n  grantTypes: [authorization_code, refresh_token, client_credentials]\n"


class Events:
    """What a small Quart app saw: its lifespan hooks and the requests it served."""

    def __init__(self) -> None:
        self.started = 0
        self.stopped = 0
        self.served = 0


def small_app(events: Events, *, fail_start: bool = False) -> Quart:
    app = Quart("lazy-test")

    @app.before_serving
    async def start() -> None:
        events.started += 1
        if fail_start:
            raise RuntimeError("cannot start")

    @app.after_serving
    async def stop() -> None:
        events.stopped += 1

    @app.route("/hello")
    async def hello() -> str:
        events.served += 1
        return "hello"

    return app


async def post(app: Any, path: str, body: bytes, content_type: str = FORM) -> Answer:
    """One POST with `body` in one message."""
    request = scope("POST", path, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return await call(app, request, body)


async def server_lifespan(app: Any) -> Lifespan:
    lifespan = Lifespan(app)
    await lifespan.startup()
    return lifespan


# --- LazyApp on its own --------------------------------------------------------------------------


async def test_concurrent_first_requests_build_once_while_the_loop_keeps_serving() -> None:
    events = Events()
    loading = threading.Event()

    def load() -> None:  # what the imports are: blocking work, in a thread
        loading.set()
        time.sleep(0.3)

    lazy = LazyApp(lambda: small_app(events), load=load)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    answers = await asyncio.gather(*(call(lazy, scope("GET", "/hello")) for _ in range(20)))
    ticking.cancel()
    assert loading.is_set()
    assert [a.status for a in answers] == [200] * 20 and {a.body for a in answers} == {b"hello"}
    assert lazy.builds == 1 and events.started == 1 and events.served == 20
    assert ticks >= 10, "the event loop stood still while the app was imported"
    assert lazy.app is not None
    await lazy.aclose()
    assert events.stopped == 1


async def test_a_cancelled_first_request_does_not_cancel_the_build() -> None:
    events = Events()
    release = threading.Event()
    lazy = LazyApp(lambda: small_app(events), load=lambda: release.wait(10))
    first = asyncio.create_task(call(lazy, scope("GET", "/hello")))
    await asyncio.sleep(0.05)
    first.cancel()  # its client left while the app was being imported
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    answer = await call(lazy, scope("GET", "/hello"))
    assert answer.status == 200 and answer.body == b"hello"
    assert lazy.builds == 1 and events.started == 1
    await lazy.aclose()


async def test_a_failed_build_answers_500_and_the_next_request_tries_again(
        caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    attempts = 0

    def build() -> Quart:
        nonlocal attempts
        attempts += 1
        return small_app(events, fail_start=attempts == 1)

    lazy = LazyApp(build)
    with caplog.at_level(logging.ERROR, logger="portico.web"):
        failed = await call(lazy, scope("GET", "/hello"))
    assert failed.status == 500 and failed.body == b"Internal Server Error\n"
    assert failed.header(b"content-length") == b"22" and failed.header(b"cache-control") == b"no-store"
    assert lazy.app is None
    assert any("could not be built" in r.getMessage() and r.exc_info and "cannot start" in str(r.exc_info[1])
               for r in caplog.records)
    answer = await call(lazy, scope("GET", "/hello"))
    assert answer.status == 200 and lazy.builds == 2 and events.started == 2 and events.stopped == 1
    await lazy.aclose()
    assert events.stopped == 2


async def test_the_servers_lifespan_builds_nothing_and_ends_the_built_apps() -> None:
    never = Events()
    lazy_never = LazyApp(lambda: small_app(never))
    lifespan = await server_lifespan(lazy_never)
    await lifespan.shutdown()
    assert lazy_never.builds == 0 and never.started == never.stopped == 0

    events = Events()
    lazy = LazyApp(lambda: small_app(events))
    lifespan = await server_lifespan(lazy)
    assert lazy.builds == 0 and events.started == 0
    assert (await call(lazy, scope("GET", "/hello"))).status == 200
    assert events.started == 1 and events.stopped == 0
    await lifespan.shutdown()  # the server stops: the app's after_serving runs, once
    assert events.stopped == 1


# --- the public stack over a real app ------------------------------------------------------------


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    built = await make_stack(config_text(web_extra='  allowedOrigins: ["https://spa.example"]\n') + GRANTS)
    yield built
    await built.close()


@pytest.fixture
async def public(stack: Stack) -> AsyncIterator[PublicApp]:
    app = public_app(stack.deps, stack.tokens, HTTPStats())
    lifespan = await server_lifespan(app.asgi)
    yield app
    await lifespan.shutdown()


async def test_machine_endpoints_and_probes_leave_the_app_unbuilt(public: PublicApp) -> None:
    asgi = public.asgi
    assert (await call(asgi, scope("GET", "/dex/.well-known/openid-configuration"))).status == 200
    assert (await call(asgi, scope("GET", "/dex/keys"))).status == 200
    health = await call(asgi, scope("GET", "/dex/healthz"))
    assert health.status == 200 and health.body == b"Health check passed"
    credentials = b"grant_type=client_credentials&client_id=app&client_secret=app-secret"
    token = await post(asgi, "/dex/token", credentials)
    assert token.status == 200 and b"access_token" in token.body
    refused = await post(asgi, "/dex/token", b"grant_type=client_credentials&client_id=app&client_secret=x")
    assert refused.status == 401 and b"invalid_client" in refused.body
    assert (await post(asgi, "/dex/token/introspect", b"token=x")).status == 401
    assert (await call(asgi, scope("GET", "/dex/userinfo"))).status == 401
    assert public.lazy.app is None and public.lazy.builds == 0


async def test_concurrent_first_pages_build_the_real_app_once(public: PublicApp) -> None:
    paths = ["/dex/device", "/dex/nowhere", "/dex/auth", "/dex/device"] * 3
    answers = await asyncio.gather(*(call(public.asgi, scope("GET", p)) for p in paths))
    assert [a.status for a in answers] == [200, 404, 400, 200] * 3
    assert all(a.header(b"content-security-policy") for a in answers)
    assert public.lazy.builds == 1 and public.lazy.app is not None
    again = await call(public.asgi, scope("GET", "/dex/device"))
    assert again.status == 200 and public.lazy.builds == 1


async def test_options_wait_for_the_app_then_take_the_fast_path(public: PublicApp) -> None:
    preflight = [("Origin", "https://spa.example"), ("Access-Control-Request-Method", "POST")]
    first = await call(public.asgi, scope("OPTIONS", "/dex/token", preflight))
    assert public.lazy.builds == 1  # the route's methods come from the app: it was built for this
    again = await call(public.asgi, scope("OPTIONS", "/dex/token", preflight))
    assert first.status == again.status == 200
    blank = [(k, v) for k, v in first.headers if k != b"x-request-id"]
    assert blank == [(k, v) for k, v in again.headers if k != b"x-request-id"]
    assert first.header(b"allow") and b"POST" in (first.header(b"allow") or b"")
    assert first.header(b"access-control-allow-origin") == b"https://spa.example"


async def test_the_fast_path_uses_the_apps_body_limits_before_it_is_built(public: PublicApp) -> None:
    app = Quart("limits")  # Quart's own default for the body timeout
    assert fastpath._MAX_BODY == MAX_BODY_BYTES and fastpath._BODY_TIMEOUT == app.config["BODY_TIMEOUT"]
    padding = b"&pad=" + b"x" * (MAX_BODY_BYTES - 100)
    form = b"grant_type=client_credentials&client_id=app&client_secret=app-secret"
    within = await post(public.asgi, "/dex/token", (form + padding)[:MAX_BODY_BYTES])
    assert within.status == 200 and public.lazy.builds == 0
    over = await post(public.asgi, "/dex/token", form + padding + b"x" * 200)
    assert over.status == 413 and public.lazy.builds == 1  # too large: the app's answer


METHODS = ("GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "BREW")


async def test_route_labels_match_the_apps_map_before_and_after_the_build(
        stack: Stack, public: PublicApp) -> None:
    prefix = stack.deps.snapshot.issuer.path
    expected = route_resolver(stack.app.url_map, prefix)
    labels = lazy_routes(public.lazy, prefix, public.fast.paths)
    for path in sorted(public.fast.paths):
        for method in METHODS:
            assert labels(method, path) == expected(method, path), (method, path)
    assert labels("GET", "/dex/auth/local") == "other"  # nothing built: nothing asked for it yet
    await call(public.asgi, scope("GET", "/dex/device"))
    for path in ("/dex/auth/local", "/dex/auth/local/login", "/dex/static/main.css", "/dex/nowhere",
                 "/dex/token/revoke", "/dex/keys/"):
        for method in METHODS:
            assert labels(method, path) == expected(method, path), (method, path)
