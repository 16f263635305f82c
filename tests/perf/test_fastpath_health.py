"""The fast path answers Dex's GET /healthz exactly as the Quart route does (status, every header in order,
body), healthy or not, so that probes every few seconds never need the app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from perf_support import Answer, Counting, Stack, call, config_text, make_stack, scope

from appliance.telemetry.metrics import HTTPStats
from appliance.telemetry.middleware import TelemetryMiddleware, route_resolver
from appliance.web.fastpath import FastPath

pytestmark = pytest.mark.timeout(60)

ORIGIN = "https://spa.example"
HEADERS = f"""  allowedOrigins: ["{ORIGIN}"]
  headers:
    X-Frame-Options: SAMEORIGIN
    Strict-Transport-Security: max-age=31536000
"""
CONFIGS = {
    "default": config_text(),
    "root-issuer": config_text(issuer="http://127.0.0.1:5556"),
    "headers": config_text(web_extra=HEADERS),
}


class Pair:
    """The production stack (middleware → fast path → Quart) beside the middleware over Quart alone."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.path = stack.deps.snapshot.issuer.path + "/healthz"
        self.inner = Counting(stack.app)
        routes = route_resolver(stack.app.url_map, stack.deps.snapshot.issuer.path)
        self.fast_stats, self.slow_stats = HTTPStats(), HTTPStats()
        self.fast = TelemetryMiddleware(FastPath(self.inner, stack.deps), self.fast_stats, routes)
        self.slow = TelemetryMiddleware(stack.app, self.slow_stats, routes)

    async def both(self, method: str = "GET",
                   headers: list[tuple[str, str]] | None = None) -> tuple[Answer, Answer]:
        return (await call(self.fast, scope(method, self.path, headers)),
                await call(self.slow, scope(method, self.path, headers)))


def _blank_id(answer: Answer) -> Answer:
    ids = [value for key, value in answer.headers if key == b"x-request-id"]
    assert len(ids) == 1, answer.headers
    return Answer(answer.status, [(k, b"-" if k == b"x-request-id" else v) for k, v in answer.headers],
                  answer.body)


def _requests(stats: HTTPStats) -> list[tuple[str, str, str, float]]:
    """http_requests_total as (code, method, handler, count): the middleware labelled both alike."""
    family = next(iter(stats.collect()))
    return [(s.labels["code"], s.labels["method"], s.labels["handler"], s.value) for s in family.samples]


@pytest.fixture(params=sorted(CONFIGS))
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    stack = await make_stack(CONFIGS[request.param])
    yield Pair(stack)
    await stack.close()


@pytest.mark.parametrize("headers", [[], [("Origin", ORIGIN)], [("Origin", "https://other.example")]])
async def test_a_healthy_answer_is_the_routes(pair: Pair, headers: list[tuple[str, str]]) -> None:
    fast, slow = await pair.both(headers=headers)
    assert pair.inner.calls == 0, "the fast path handed /healthz to the app"
    assert _blank_id(fast) == _blank_id(slow)
    assert fast.status == 200 and fast.body == b"Health check passed"
    assert fast.header(b"content-type") == b"text/plain; charset=utf-8"
    assert fast.header(b"content-security-policy") is not None
    assert fast.header(b"access-control-allow-origin") is None  # not a cross-origin endpoint
    assert _requests(pair.fast_stats) == _requests(pair.slow_stats) == [("200", "get", "/healthz", 1.0)]


async def test_a_storage_that_does_not_answer_is_a_500_logged_alike(
        pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    await pair.stack.storage.close()  # what a database gone away looks like to the ping
    with caplog.at_level(logging.ERROR, logger="portico.web"):
        fast, slow = await pair.both()
    assert pair.inner.calls == 0
    assert _blank_id(fast) == _blank_id(slow)
    assert fast.status == 500 and fast.body == b"Health check failed."
    lines = [r.getMessage() for r in caplog.records if r.name == "portico.web"]
    assert lines == ["health check: the storage does not answer"] * 2


@pytest.mark.parametrize("method", ["HEAD", "POST", "OPTIONS"])
async def test_other_methods_stay_the_apps(pair: Pair, method: str) -> None:
    fast, slow = await pair.both(method)
    assert pair.inner.calls == 1
    assert _blank_id(fast) == _blank_id(slow)


async def test_a_get_with_a_body_stays_the_apps(pair: Pair) -> None:
    answer = await call(pair.fast, scope("GET", pair.path, [("Content-Length", "3")]))
    assert pair.inner.calls == 1 and answer.status == 200
