"""The telemetry listener and the logs of a real `portico serve` process (SQLite, JSON logs at debug):
metrics after real requests, health endpoints, request ids, and no secret in any log line."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx
import pytest
from e2e.e2e_support import FormLogin, find_form, is_approval_page, query
from telemetry_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    EMAIL,
    PASSWORD,
    REDIRECT_URI,
    config_maker,
    json_lines,
    scrape,
    telemetry_url,
    value,
)

if TYPE_CHECKING:
    from conftest import ServerLauncher, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def server(portico_module_launcher: ServerLauncher,
           tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    state = tmp_path_factory.mktemp("telemetry-state")
    storage = {"type": "sqlite3", "config": {"file": str(state / "portico.db")}}
    return portico_module_launcher.start(config_maker(storage), name="telemetry")


@pytest.fixture(scope="module")
def telemetry(server: ServerProcess) -> str:
    return telemetry_url(server.config_path)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


def test_health_endpoints(telemetry: str, http: httpx.Client) -> None:
    live = http.get(f"{telemetry}/healthz/live")
    assert live.status_code == 200 and live.text == "ok\n"
    ready = http.get(f"{telemetry}/healthz/ready")
    assert ready.status_code == 200, ready.text
    checks = ready.json()
    assert checks["config"]["message"] == "configuration loaded"
    assert checks["storage"]["num_failures"] == 0 and checks["storage"]["first_failure_time"] is None
    dex = http.get(f"{telemetry}/healthz")
    assert dex.status_code == 200 and set(dex.json()) == {"storage"}
    assert http.head(f"{telemetry}/healthz/live").status_code == 200
    assert http.post(f"{telemetry}/metrics").status_code == 405
    assert http.get(f"{telemetry}/dex/keys").status_code == 404


def test_counters_move_with_route_patterns_as_handlers(server: ServerProcess, telemetry: str,
                                                       http: httpx.Client) -> None:
    before = scrape(telemetry)
    assert http.get(f"{server.issuer}/keys").status_code == 200
    assert http.get(f"{server.issuer}/auth/local").status_code in (302, 303, 400)
    assert http.get(f"{server.issuer}/auth/nosuchconnector/login").status_code >= 400
    for _ in range(3):
        assert http.post(f"{server.issuer}/token", data={"grant_type": "authorization_code", "code": "x"},
                         auth=(CLIENT_ID, CLIENT_SECRET)).status_code == 400
    assert http.get(f"{server.issuer}/no/such/{secrets.token_hex(4)}").status_code == 404
    after = scrape(telemetry)

    def moved(**labels: str) -> float:
        return (value(after, "http_requests_total", **labels)
                - value(before, "http_requests_total", **labels))

    assert moved(handler="/keys", method="get", code="200") == 1
    assert moved(handler="/token", method="post", code="400") == 3
    assert moved(handler="/auth/{connector}") == 1
    assert moved(handler="/auth/{connector}/login") == 1
    assert moved(handler="other", code="404") == 1
    handlers = {dict(labels)["handler"] for labels in after["http_requests_total"]}
    assert not any("nosuchconnector" in h or "local" in h or h.startswith("/dex") for h in handlers), handlers
    # Histograms: the count of each series equals its +Inf bucket and its requests_total.
    keys = (("code", "200"), ("handler", "/keys"), ("method", "get"))
    assert after["request_duration_seconds_count"][keys] == after["http_requests_total"][keys]
    assert after["request_duration_seconds_bucket"][(*keys[:2], ("le", "+Inf"), keys[2])] == \
        after["http_requests_total"][keys]
    assert after["response_size_bytes_sum"][keys] > 100  # the JWKS is a few hundred bytes
    build = after["portico_build_info"]
    assert len(build) == 1 and next(iter(build.values())) == 1.0
    labels = dict(next(iter(build)))
    assert labels["version"] and labels["python_version"].startswith("3.")
    assert value(after, "portico_config_reloads_total", result="applied") == 0
    assert value(after, "portico_key_rotations_total", result="success") == 1  # the first key set
    assert value(after, "portico_signing_key_next_rotation_timestamp_seconds") > 1.7e9
    assert value(after, "process_start_time_seconds") > 1.7e9


def test_json_log_lines_carry_the_response_s_request_id(server: ServerProcess, http: httpx.Client) -> None:
    response = http.post(f"{server.issuer}/token", data={"grant_type": "authorization_code", "code": "nope"},
                         auth=(CLIENT_ID, CLIENT_SECRET))
    rid = response.headers["x-request-id"]
    assert response.status_code == 400 and len(rid) == 16
    entries = json_lines(server.stderr_text())
    mine = [e for e in entries if e.get("request_id") == rid]
    assert mine, f"no log line with request id {rid}"
    assert any("/dex/token: invalid_grant" in e["msg"] for e in mine)
    for entry in entries:
        assert {"time", "level", "logger", "msg"} <= set(entry)
    assert any("request_id" not in e and e["msg"].startswith("ready in") for e in entries)


def _login(issuer: str, password: str) -> tuple[FormLogin, httpx.Response, str]:
    flow = FormLogin(issuer, REDIRECT_URI)
    page = flow.login_page({"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code",
                            "scope": "openid email profile offline_access", "state": secrets.token_hex(8),
                            "nonce": secrets.token_hex(8)})
    form = find_form(page.text, "password")
    data = {k: v for k, v in form.inputs.items() if form.input_types.get(k) == "hidden"}
    data.update({"login": EMAIL, "password": password})
    response = flow.http.post(urljoin(str(page.url), form.action or str(page.url)), data=data)
    return flow, response, data.get("csrf_token", "")


def test_full_login_flow_leaves_no_secret_in_the_logs(server: ServerProcess, telemetry: str,
                                                      http: httpx.Client) -> None:
    before = scrape(telemetry)
    secrets_seen: list[str] = [PASSWORD, CLIENT_SECRET]
    wrong = "Wr0ng-" + secrets.token_hex(6)
    flow, failed, csrf = _login(server.issuer, wrong)
    flow.close()
    assert failed.status_code in (200, 401), failed.status_code  # the form again
    secrets_seen += [wrong, csrf]

    flow, response, csrf = _login(server.issuer, PASSWORD)
    secrets_seen.append(csrf)
    try:
        response = flow.follow_to_page(response)
        if response.status_code == 200 and is_approval_page(response.text):
            approval = find_form(response.text, "approval", "approve")
            secrets_seen += [approval.inputs["hmac"], approval.inputs["csrf_token"]]
            response = flow.follow_to_page(flow.submit_approval(response))
        callback = response.headers.get("location", "")
        assert callback.startswith(REDIRECT_URI), callback
        code = query(callback)["code"]
        secrets_seen.append(code)
    finally:
        flow.close()
    tokens: dict[str, Any] = http.post(
        f"{server.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}).json()
    secrets_seen += [tokens["access_token"], tokens["id_token"], tokens["refresh_token"]]
    info = http.get(f"{server.issuer}/userinfo",
                    headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 200 and info.json()["email"] == EMAIL
    refreshed = http.post(
        f"{server.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}).json()
    secrets_seen += [refreshed["access_token"], refreshed["id_token"], refreshed["refresh_token"]]
    bad = http.get(f"{server.issuer}/userinfo", headers={"Authorization": f"Bearer {tokens['id_token']}x"})
    assert bad.status_code == 401
    # A replayed code is refused and revokes what it issued; logged as a warning, without the code.
    replay = http.post(f"{server.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET),
                       data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI})
    assert replay.status_code == 400

    after = scrape(telemetry)
    assert value(after, "portico_logins_total", connector="local", result="success") - \
        value(before, "portico_logins_total", connector="local", result="success") == 1
    assert value(after, "portico_logins_total", connector="local", result="invalid_credentials") - \
        value(before, "portico_logins_total", connector="local", result="invalid_credentials") == 1
    for grant in ("authorization_code", "refresh_token"):
        assert value(after, "portico_tokens_issued_total", grant=grant) - \
            value(before, "portico_tokens_issued_total", grant=grant) == 1

    log = server.stderr_text()
    json_lines(log)
    assert "login successful: connector local" in log  # the flow was logged, at debug level even
    for secret in secrets_seen:
        assert secret and secret not in log, f"a secret reached the logs: {secret[:12]}…"
    # Refresh tokens are opaque strings in several parts; none of their parts may appear either.
    for part in tokens["refresh_token"].split("."):
        if len(part) >= 16:
            assert part not in log

