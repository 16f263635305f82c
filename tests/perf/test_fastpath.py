"""The fast path answers discovery and JWKS exactly as the Quart routes do (status, every header in
order, body), follows reloads and key rotations, and is counted by the telemetry middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from perf_support import Answer, Counting, Stack, call, config_text, make_stack, scope

from appliance.telemetry.context import RequestIds, is_sane_request_id
from appliance.telemetry.metrics import HTTPStats
from appliance.telemetry.middleware import TelemetryMiddleware, route_resolver
from appliance.web.fastpath import FastPath

ORIGIN = "https://spa.example"
CORS = f"""  allowedOrigins: ["{ORIGIN}", "https://other.example"]
  allowedHeaders: [Authorization, X-Custom]
  headers:
    X-Frame-Options: SAMEORIGIN
    Strict-Transport-Security: max-age=31536000
"""
CONFIGS = {
    "default": config_text(),
    "root-issuer": config_text(issuer="http://127.0.0.1:5556"),
    "cors-and-headers": config_text(web_extra=CORS),
    "cors-any": config_text(issuer="https://id.example/a/b", web_extra='  allowedOrigins: ["*"]\n'),
}
# Every request variant the fast path answers itself: (method, endpoint, request headers).
ANSWERED = [
    ("GET", "/.well-known/openid-configuration", []),
    ("GET", "/keys", []),
    ("GET", "/keys", [("Origin", ORIGIN)]),
    ("GET", "/.well-known/openid-configuration", [("Origin", ORIGIN)]),
    ("GET", "/keys", [("Origin", "https://evil.example")]),
    ("GET", "/keys", [("Origin", "")]),
    ("GET", "/keys", [("Origin", ORIGIN), ("Origin", "https://evil.example")]),
    ("OPTIONS", "/keys", [("Origin", ORIGIN), ("Access-Control-Request-Method", "GET")]),
    ("OPTIONS", "/.well-known/openid-configuration",
     [("Origin", ORIGIN), ("Access-Control-Request-Method", "GET"), ("Access-Control-Request-Headers", "x")]),
    ("OPTIONS", "/keys", [("Origin", ORIGIN)]),
    ("OPTIONS", "/keys", []),
]
# Requests on the same paths that stay the app's.
PASSED_ON = [
    ("HEAD", "/keys", []),
    ("POST", "/keys", []),
    ("PUT", "/.well-known/openid-configuration", []),
    ("GET", "/keys/", []),
    ("GET", "/keys", [("Origin", "https://\xe9.example")]),  # not UTF-8 on the wire: latin-1 below
    ("GET", "/keys", [("Content-Length", "5")]),  # a body: the app reads and drops it before answering
]


def _normalised(answer: Answer) -> Answer:
    """The same answer with the X-Request-Id value (new per request) blanked; checks there is one."""
    ids = [value for key, value in answer.headers if key == b"x-request-id"]
    assert len(ids) == 1 and len(ids[0]) == 16, answer.headers
    headers = [(k, b"<id>" if k == b"x-request-id" else v) for k, v in answer.headers]
    return Answer(answer.status, headers, answer.body)


class Pair:
    """The production stack (middleware → fast path → Quart) beside the same middleware over Quart."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        prefix = stack.deps.snapshot.issuer.path
        self.prefix = prefix
        self.stats = HTTPStats()
        self.inner = Counting(stack.app)
        self.fast = TelemetryMiddleware(FastPath(self.inner, stack.deps, stack.app.url_map.bind("x")
                                                 .allowed_methods), self.stats,
                                        route_resolver(stack.app.url_map, prefix))
        self.slow = TelemetryMiddleware(stack.app, HTTPStats(), route_resolver(stack.app.url_map, prefix))

    async def both(self, method: str, endpoint: str, headers: list[tuple[str, str]]) -> tuple[Answer, Answer]:
        request: Callable[[], dict[str, Any]] = lambda: scope(method, self.prefix + endpoint, headers)  # noqa: E731
        return await call(self.fast, request()), await call(self.slow, request())


@pytest.fixture(params=sorted(CONFIGS))
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    stack = await make_stack(CONFIGS[request.param])
    yield Pair(stack)
    await stack.close()


@pytest.mark.parametrize(("method", "endpoint", "headers"), ANSWERED)
async def test_fast_path_answers_exactly_as_the_quart_route(
        pair: Pair, method: str, endpoint: str, headers: list[tuple[str, str]]) -> None:
    fast, slow = await pair.both(method, endpoint, headers)
    assert pair.inner.calls == 0, "the fast path handed the request to the app"
    assert _normalised(fast) == _normalised(slow)
    assert fast.status == 200


async def test_answers_carry_the_expected_headers(pair: Pair) -> None:
    """Not only equal to the app's: the headers the issue names are there (so an app that lost them
    cannot make both sides agree on nothing)."""
    keys, _ = await pair.both("GET", "/keys", [("Origin", ORIGIN)])
    discovery, _ = await pair.both("GET", "/.well-known/openid-configuration", [])
    assert keys.header(b"content-type") == discovery.header(b"content-type") == b"application/json"
    assert keys.header(b"cache-control") == b"max-age=600, must-revalidate"
    assert discovery.header(b"cache-control") is None
    assert keys.header(b"x-content-type-options") == b"nosniff"
    assert keys.body == pair.stack.keys.jwks_bytes()
    assert discovery.body == pair.stack.deps.snapshot.discovery
    assert int(keys.header(b"content-length") or 0) == len(keys.body)
    cors = pair.stack.deps.snapshot.config.web.allowed_origins
    assert (keys.header(b"access-control-allow-origin") is not None) == bool(cors)


@pytest.mark.parametrize(("method", "endpoint", "headers"), PASSED_ON)
async def test_other_requests_go_to_the_app(
        pair: Pair, method: str, endpoint: str, headers: list[tuple[str, str]]) -> None:
    request = scope(method, pair.prefix + endpoint)
    request["headers"] = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers]
    answer = await call(pair.fast, request)
    assert pair.inner.calls == 1
    assert answer.status in (200, 404, 405, 500)


async def test_reload_and_rotation_apply_at_once(pair: Pair) -> None:
    before, _ = await pair.both("GET", "/.well-known/openid-configuration", [])
    old_keys, _ = await pair.both("GET", "/keys", [("Origin", ORIGIN)])
    issuer = pair.stack.deps.snapshot.issuer.url
    changed = config_text(issuer=issuer, web_extra=CORS.replace("SAMEORIGIN", "DENY"))
    await pair.stack.reload(changed + "oauth2:\n  responseTypes: [code, token]\n")
    await pair.stack.rotate()
    after, after_slow = await pair.both("GET", "/.well-known/openid-configuration", [])
    new_keys, new_keys_slow = await pair.both("GET", "/keys", [("Origin", ORIGIN)])
    assert pair.inner.calls == 0
    assert after.body != before.body and b'"token"' in after.body
    assert _normalised(after) == _normalised(after_slow)
    assert new_keys.body != old_keys.body
    assert _normalised(new_keys) == _normalised(new_keys_slow)
    assert new_keys.header(b"x-frame-options") == b"DENY"
    assert new_keys.header(b"access-control-allow-origin") == ORIGIN.encode()


async def test_keys_not_loaded_is_the_apps_answer() -> None:
    stack = await make_stack(config_text(), load_keys=False)
    try:
        pair = Pair(stack)
        fast, slow = await pair.both("GET", "/keys", [])
        assert pair.inner.calls == 1
        assert fast.status == slow.status == 500
        assert _normalised(fast) == _normalised(slow)
    finally:
        await stack.close()


def _requests_total(stats: HTTPStats) -> dict[tuple[str, str, str], float]:
    family = next(iter(stats.collect()))
    return {(s.labels["code"], s.labels["method"], s.labels["handler"]): s.value for s in family.samples}


async def test_the_middleware_counts_fast_answers_under_their_route(pair: Pair) -> None:
    for _ in range(3):
        await pair.both("GET", "/keys", [])
    await pair.both("GET", "/.well-known/openid-configuration", [])
    await pair.both("OPTIONS", "/keys", [("Origin", ORIGIN), ("Access-Control-Request-Method", "GET")])
    counts = _requests_total(pair.stats)
    assert counts[("200", "get", "/keys")] == 3
    assert counts[("200", "get", "/.well-known/openid-configuration")] == 1
    assert counts[("200", "options", "/keys")] == 1
    assert pair.stats.in_flight == 0


async def test_fast_answers_get_distinct_request_ids(pair: Pair) -> None:
    """The middleware's ids (a counter behind a random prefix, no system call) stay unique and sane."""
    seen = set()
    for _ in range(50):
        fast, _ = await pair.both("GET", "/keys", [])
        rid = (fast.header(b"x-request-id") or b"").decode()
        assert is_sane_request_id(rid) and len(rid) == 16 and int(rid, 16) >= 0
        seen.add(rid)
    assert len(seen) == 50
    # Two servers (processes, replicas) draw different random prefixes (equal once in 2**32).
    assert RequestIds()()[:8] != RequestIds()()[:8]
