"""The device, password, client_credentials and token-exchange grants through the real app, with the
negative cases each must answer exactly (wrong client, wrong secret, expired codes, bad parameters)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from grants_support import (
    APP_SECRET,
    DEVICE_GRANT,
    EXCHANGE_GRANT,
    ID_TOKEN_TYPE,
    SVC_SECRET,
    Upstream,
    app_auth,
    grants_config,
    make_upstream,
    post_json,
    registry_with_upstream,
)
from web_harness import CSRF_RE, Harness, HarnessFactory, basic, location, path_and_query, s256

from appliance.oidc.tokens import decode_sub, encode_sub


@pytest.fixture
async def env(make_harness: HarnessFactory) -> tuple[Harness, Upstream]:
    from appliance.clock import FrozenClock

    upstream = await make_upstream(FrozenClock())
    web = await make_harness(grants_config(), registry=registry_with_upstream(upstream))
    upstream.clock.set(web.clock.now())
    return web, upstream


# --- device flow (RFC 8628) -------------------------------------------------------------------------


async def device_code(web: Harness, client: str = "kubectl", **extra: str) -> dict[str, Any]:
    status, body = await post_json(web, "/dex/device/code", {"client_id": client, "scope": "openid email "
                                                             "offline_access", **extra})
    assert status == 200, body
    return body


async def poll(web: Harness, code: str, client: str = "kubectl", **extra: str) -> tuple[int, dict[str, Any]]:
    return await post_json(web, "/dex/token", {"grant_type": DEVICE_GRANT, "device_code": code,
                                               "client_id": client, **extra})


async def browser_approves(web: Harness, user_code: str, *, typed: str | None = None) -> Any:
    """The person's side: the code page (pre-filled), the login, the callback page."""
    page = await web.client.get("/dex/device", query_string={"user_code": user_code})
    text = await web.text(page)
    assert page.status_code == 200 and f'value="{user_code}"' in text
    token = CSRF_RE.search(text)
    assert token is not None
    verify = await web.client.post("/dex/device/auth/verify_code", form={
        "user_code": typed if typed is not None else user_code, "csrf_token": html.unescape(token.group(1))})
    assert verify.status_code == 302, await web.text(verify)
    start = await web.client.get(path_and_query(location(verify)))  # /auth: the connector picker
    assert start.status_code == 200, await web.text(start)
    local = re.search(r'href="([^"]+)" data-connector-id="local"', await web.text(start))
    assert local is not None
    login = await web.client.get(html.unescape(local.group(1)))  # /auth/local
    done = await web.password_login(location(login), "admin@example.com", "password")
    assert done.status_code == 303, await web.text(done)
    assert location(done).startswith("/dex/device/callback?")
    return await web.client.get(path_and_query(location(done)))


async def test_device_flow_public_client_with_pkce(env: tuple[Harness, Upstream]) -> None:
    web, _ = env
    verifier = "v" * 50
    body = await device_code(web, code_challenge=s256(verifier), code_challenge_method="S256")
    assert body["verification_uri"] == "http://127.0.0.1:5556/dex/device"
    assert body["verification_uri_complete"].endswith(f"/dex/device?user_code={body['user_code']}")
    assert body["interval"] == 5 and body["expires_in"] == 300
    assert len(body["user_code"]) == 9 and body["user_code"][4] == "-"
    web.clock.advance(timedelta(seconds=5))
    assert (await poll(web, body["device_code"]))[1]["error"] == "authorization_pending"
    # Polling again at once: slow_down, and the interval grows by 5 s.
    status, slow = await poll(web, body["device_code"])
    assert (status, slow["error"]) == (400, "slow_down")
    web.clock.advance(timedelta(seconds=6))
    assert (await poll(web, body["device_code"]))[1]["error"] == "slow_down"  # 6 s < the new 10 s
    # Typed in lower case without the dash: still the same code.
    success = await browser_approves(web, body["user_code"], typed=body["user_code"].lower().replace("-", ""))
    assert success.status_code == 200 and "Device connected" in await web.text(success)
    web.clock.advance(timedelta(seconds=16))  # two slow_downs: the interval is 15 s now
    status, wrong = await poll(web, body["device_code"], code_verifier="w" * 50)
    assert (status, wrong["error"]) == (400, "invalid_grant")
    web.clock.advance(timedelta(seconds=16))
    status, tokens = await poll(web, body["device_code"], code_verifier=verifier)
    assert status == 200, tokens
    claims = web.deps.keys.verify(tokens["id_token"], now=web.clock.now())
    assert claims["aud"] == "kubectl" and claims["email"] == "admin@example.com"
    assert "refresh_token" in tokens
    web.clock.advance(timedelta(seconds=30))
    status, again = await poll(web, body["device_code"], code_verifier=verifier)  # handed out once
    assert (status, again["error"]) == (400, "invalid_grant")


async def test_device_code_errors(env: tuple[Harness, Upstream]) -> None:
    web, _ = env
    # A confidential client must authenticate at /device/code.
    status, body = await post_json(web, "/dex/device/code", {"client_id": "app", "client_secret": "nope",
                                                             "scope": "openid"})
    assert (status, body["error"]) == (401, "invalid_client")
    status, body = await post_json(web, "/dex/device/code", {"client_id": "ghost", "scope": "openid"})
    assert (status, body["error"]) == (401, "invalid_client")
    status, body = await post_json(web, "/dex/device/code", {"client_id": "kubectl", "scope": "email"})
    assert (status, body["error"]) == (400, "invalid_scope")
    issued = await device_code(web)
    # Another client polling with this device code, and an unknown code.
    status, body = await poll(web, issued["device_code"], client="app", client_secret=APP_SECRET)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert (await poll(web, "no-such-code"))[1]["error"] == "invalid_grant"
    # Expired: expiry.deviceRequests is 5 minutes.
    web.clock.advance(timedelta(minutes=5, seconds=1))
    status, body = await poll(web, issued["device_code"])
    assert (status, body["error"]) == (400, "expired_token")
    page = await web.client.get("/dex/device")
    token = CSRF_RE.search(await web.text(page))
    assert token is not None
    late = await web.client.post("/dex/device/auth/verify_code", form={
        "user_code": issued["user_code"], "csrf_token": html.unescape(token.group(1))})
    assert late.status_code == 400 and "invalid or has expired" in await web.text(late)
    forged = await web.client.post("/dex/device/auth/verify_code", form={"user_code": issued["user_code"]})
    assert forged.status_code == 400  # no CSRF token


async def test_device_flow_denied(make_harness: HarnessFactory) -> None:
    from grants_support import make_upstream as mk

    from appliance.clock import FrozenClock

    registry = registry_with_upstream(await mk(FrozenClock()))
    web = await make_harness(grants_config(skip=False), registry=registry)
    body = await device_code(web, client="app", client_secret=APP_SECRET)
    page = await web.client.get("/dex/device", query_string={"user_code": body["user_code"]})
    token = CSRF_RE.search(await web.text(page))
    assert token is not None
    verify = await web.client.post("/dex/device/auth/verify_code", form={
        "user_code": body["user_code"], "csrf_token": html.unescape(token.group(1))})
    query = path_and_query(location(verify)).split("?", 1)[1]
    login = await web.client.get(f"/dex/auth/local?{query}")
    done = await web.password_login(location(login), "admin@example.com", "password")
    denied = await web.approve(location(done), "deny")
    assert denied.status_code == 303 and "error=access_denied" in location(denied)
    page = await web.client.get(path_and_query(location(denied)))
    assert page.status_code == 403
    web.clock.advance(timedelta(seconds=6))
    status, result = await poll(web, body["device_code"], client="app", client_secret=APP_SECRET)
    assert (status, result["error"]) == (400, "access_denied")


# --- password grant (ROPC) ----------------------------------------------------------------------------


async def test_password_grant(env: tuple[Harness, Upstream]) -> None:
    web, _ = env
    form = {"grant_type": "password", "username": "admin@example.com", "password": "password",
            "scope": "openid email groups offline_access"}
    status, body = await post_json(web, "/dex/token", form, app_auth())
    assert status == 200, body
    claims = web.deps.keys.verify(body["id_token"], now=web.clock.now())
    assert decode_sub(claims["sub"]) == ("fd9d7267-8f66-47a6-8e01-d26d687f7c77", "local")
    assert claims["groups"] == ["admins", "developers"] and "refresh_token" in body
    again = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    status, refreshed = await post_json(web, "/dex/token", again, app_auth())
    assert status == 200, refreshed
    status, err = await post_json(web, "/dex/token", {**form, "password": "wrong"}, app_auth())
    assert (status, err["error"]) == (401, "access_denied")
    status, err = await post_json(web, "/dex/token", form, basic("app", "wrong-secret"))
    assert (status, err["error"]) == (401, "invalid_client")
    status, err = await post_json(web, "/dex/token", {**form, "scope": "email"}, app_auth())
    assert (status, err["error"]) == (400, "invalid_scope")


async def test_password_grant_off_without_password_connector(make_harness: HarnessFactory) -> None:
    web = await make_harness()  # BASE_CONFIG: no oauth2.passwordConnector
    status, err = await post_json(web, "/dex/token", {"grant_type": "password",
                                                      "username": "admin@example.com",
                                                      "password": "password", "scope": "openid"},
                                  basic("web-app", "s3cret/with+special&chars"))
    assert (status, err["error"]) == (400, "unsupported_grant_type")


# --- client_credentials ---------------------------------------------------------------------------------


async def test_client_credentials(env: tuple[Harness, Upstream]) -> None:
    web, _ = env
    form = {"grant_type": "client_credentials", "scope": "openid profile groups"}
    status, body = await post_json(web, "/dex/token", form, basic("svc", SVC_SECRET))
    assert status == 200, body
    assert "refresh_token" not in body
    claims = web.deps.keys.verify(body["id_token"], now=web.clock.now())
    assert claims["sub"] == encode_sub("svc", "") and decode_sub(claims["sub"]) == ("svc", "")
    assert claims["name"] == "Service" and claims["groups"] == ["robots"] and claims["aud"] == "svc"
    status, err = await post_json(web, "/dex/token", form, basic("svc", "wrong"))
    assert (status, err["error"]) == (401, "invalid_client")
    status, err = await post_json(web, "/dex/token", {**form, "client_id": "kubectl"})
    assert (status, err["error"]) == (400, "unauthorized_client")
    status, err = await post_json(web, "/dex/token", {**form, "scope": "openid offline_access"},
                                  basic("svc", SVC_SECRET))
    assert (status, err["error"]) == (400, "invalid_scope")


async def test_client_credentials_is_opt_in(make_harness: HarnessFactory) -> None:
    web = await make_harness()
    status, err = await post_json(web, "/dex/token", {"grant_type": "client_credentials", "scope": "openid"},
                                  basic("web-app", "s3cret/with+special&chars"))
    assert (status, err["error"]) == (400, "unsupported_grant_type")


# --- token exchange (RFC 8693) -------------------------------------------------------------------------


async def test_token_exchange(env: tuple[Harness, Upstream]) -> None:
    web, upstream = env
    form = {"grant_type": EXCHANGE_GRANT, "subject_token": upstream.id_token(),
            "subject_token_type": ID_TOKEN_TYPE,
            "connector_id": "upstream", "scope": "openid email groups"}
    status, body = await post_json(web, "/dex/token", form, app_auth())
    assert status == 200, body
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["token_type"] == "bearer" and "refresh_token" not in body
    claims = web.deps.keys.verify(body["access_token"], now=web.clock.now())
    assert decode_sub(claims["sub"]) == ("upstream-user", "upstream")
    assert claims["email"] == "ci@example.com" and claims["groups"] == ["ci"] and claims["aud"] == "app"
    status, as_id = await post_json(web, "/dex/token", {**form, "requested_token_type": ID_TOKEN_TYPE},
                                    app_auth())
    assert status == 200 and as_id["issued_token_type"] == ID_TOKEN_TYPE
    assert "at_hash" in web.deps.keys.verify(as_id["access_token"], now=web.clock.now())


async def test_token_exchange_errors(env: tuple[Harness, Upstream]) -> None:
    web, upstream = env
    form = {"grant_type": EXCHANGE_GRANT, "subject_token": upstream.id_token(),
            "subject_token_type": ID_TOKEN_TYPE,
            "connector_id": "upstream", "scope": "openid"}
    # A token signed by a third key set (not the upstream's) is refused: real verification.
    stranger = await make_upstream(upstream.clock)
    forged = {**form, "subject_token": stranger.id_token()}
    status, err = await post_json(web, "/dex/token", forged, app_auth())
    assert (status, err["error"]) == (401, "access_denied")
    status, err = await post_json(web, "/dex/token", {**form, "subject_token": upstream.id_token(
        exp=int(upstream.clock.now().timestamp()) - 1)}, app_auth())
    assert (status, err["error"]) == (401, "access_denied")
    status, err = await post_json(web, "/dex/token", {**form, "subject_token_type": "urn:x"}, app_auth())
    assert (status, err["error"]) == (400, "request_not_supported")
    # A password connector verifies no tokens (mockCallback does, as Dex's: any token is its user).
    status, err = await post_json(web, "/dex/token", {**form, "connector_id": "local"}, app_auth())
    assert (status, err["error"]) == (400, "invalid_request")
    status, err = await post_json(web, "/dex/token", form, basic("app", "wrong"))
    assert (status, err["error"]) == (401, "invalid_client")
    status, err = await post_json(web, "/dex/token", {**form, "client_id": "ghost"})
    assert (status, err["error"]) == (401, "invalid_client")


async def test_allowed_connectors_bind_the_password_and_exchange_grants(
    env: tuple[Harness, Upstream],
) -> None:
    web, upstream = env
    other = basic("other", "other-secret")  # allowedConnectors: [mock]
    form = {"grant_type": "password", "username": "admin@example.com", "password": "password",
            "scope": "openid"}
    status, err = await post_json(web, "/dex/token", form, other)
    assert (status, err["error"]) == (400, "unauthorized_client")
    status, err = await post_json(web, "/dex/token", {
        "grant_type": EXCHANGE_GRANT, "subject_token": upstream.id_token(),
        "subject_token_type": ID_TOKEN_TYPE, "connector_id": "upstream", "scope": "openid"}, other)
    assert (status, err["error"]) == (400, "invalid_request")
    page = await web.client.get("/dex/auth", query_string={
        "client_id": "other", "redirect_uri": "https://other.example/callback", "response_type": "code",
        "scope": "openid", "connector_id": "local"})
    assert page.status_code == 303 and "error=invalid_request" in location(page)
