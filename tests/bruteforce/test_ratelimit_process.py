"""Rate limits on a real server: 429 with Retry-After on /token, /device/code and the login form, gone
after the wait; a forged X-Forwarded-For gains nothing; behind a trusted proxy each client has its own
bucket (applied by a live reload)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import yaml
from adminutil import Server, start_server
from bf_support import CLIENT_ID, CLIENT_SECRET, Browser, counter, server_config, telemetry_port

pytestmark = pytest.mark.timeout(180)

LIMIT = {"perIP": {"requestsPerMinute": 12, "burst": 2}}  # two at once, then one every 5 s
SECURITY = {"rateLimits": {"token": LIMIT, "deviceCode": LIMIT, "login": LIMIT}}


@pytest.fixture(scope="module")
def telemetry() -> str:
    return f"http://127.0.0.1:{telemetry_port()}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, telemetry: str) -> Iterator[Server]:
    port = int(telemetry.rsplit(":", 1)[1])
    running = start_server(tmp_path_factory.mktemp("ratelimit"),
                           lambda p: server_config(p, telemetry_port=port, security=SECURITY))
    yield running
    running.stop()


def token(server: Server, **headers: str) -> httpx.Response:
    # Any grant will do: the limit comes first (an unknown code is a 400, not a 429).
    return httpx.post(f"{server.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET), headers=headers, timeout=30,
                      data={"grant_type": "authorization_code", "code": "nope", "redirect_uri": "x"})


def device(server: Server, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.issuer}/device/code", auth=(CLIENT_ID, CLIENT_SECRET), headers=headers,
                      timeout=30, data={"scope": "openid"})


def exhaust(call: Callable[[], httpx.Response]) -> httpx.Response:
    answers = [call() for _ in range(3)]
    assert [a.status_code != 429 for a in answers[:2]] == [True, True], [a.text for a in answers]
    return answers[2]


def retry_after(answer: httpx.Response) -> int:
    assert answer.status_code == 429, answer.text[:300]
    seconds = int(answer.headers["Retry-After"])
    assert 1 <= seconds <= 5
    return seconds


def test_429_with_retry_after_then_served_again(server: Server, telemetry: str) -> None:
    browser = Browser(server.issuer)
    try:
        limited_token = exhaust(lambda: token(server))
        limited_device = exhaust(lambda: device(server))
        limited_login = exhaust(lambda: browser.post("jane@example.com", "wrong"))
        waits = [retry_after(a) for a in (limited_token, limited_device, limited_login)]
        for answer in (limited_token, limited_device):
            assert answer.headers["content-type"] == "application/json"
            assert answer.headers["cache-control"] == "no-store"
            body = answer.json()
            assert body["error"] == "invalid_request"
            wait = answer.headers["Retry-After"]
            assert body["error_description"] == f"too many requests, retry after {wait} seconds"
        assert limited_login.headers["content-type"].startswith("text/html")
        assert "Too many requests" in limited_login.text and "<form" not in limited_login.text
        # A header the client wrote itself changes nothing: no proxy is trusted.
        assert token(server, **{"X-Forwarded-For": "198.51.100.77"}).status_code == 429
        for name in ("token", "device_code", "login"):
            assert counter(telemetry, "portico_rate_limited_total", limit=name) >= 1
        time.sleep(max(waits) + 0.2)
        assert token(server).status_code == 400
        assert device(server).status_code == 200
        assert browser.post("jane@example.com", "wrong").status_code == 200
    finally:
        browser.close()


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(server: Server) -> None:
    config = yaml.safe_load(server.config_path.read_text())
    config["web"]["clientRemoteIP"] = {"header": "X-Forwarded-For", "trustedProxies": ["127.0.0.1/32"]}
    server.write_config(config)
    result = server.admin().post("/v1/reload")
    assert result["result"] == "applied", result
    first = {"X-Forwarded-For": "203.0.113.10"}
    assert retry_after(exhaust(lambda: token(server, **first))) >= 1
    assert token(server, **{"X-Forwarded-For": "203.0.113.11"}).status_code == 400  # another client
    # The limited client writing another address in front of what the proxy appends gains nothing.
    assert token(server, **{"X-Forwarded-For": "203.0.113.11, 203.0.113.10"}).status_code == 429
