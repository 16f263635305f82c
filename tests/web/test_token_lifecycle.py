"""Introspection (RFC 7662), revocation (RFC 7009), replayed codes and reused refresh tokens revoking
what they issued, one refresh token per device, garbage collection, remembered consent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from grants_support import (
    APP_SECRET,
    app_auth,
    grants_config,
    make_upstream,
    post_json,
    registry_with_upstream,
)
from web_harness import Harness, HarnessFactory, basic, location, query_of

from appliance.clock import FrozenClock
from appliance.oidc.consent import list_consents, revoke_consent
from appliance.oidc.refreshstore import list_refresh_tokens, revoke_refresh_token_by_id
from appliance.oidc.tokens import decode_refresh_token

REDIRECT = "https://app.example/callback"


async def harness(make_harness: HarnessFactory, **kw: Any) -> Harness:
    upstream = await make_upstream(FrozenClock())
    return await make_harness(grants_config(**kw), registry=registry_with_upstream(upstream))


@pytest.fixture
async def web(make_harness: HarnessFactory) -> Harness:
    return await harness(make_harness)


async def login_tokens(web: Harness, scope: str = "openid email offline_access") -> dict[str, Any]:
    code = await web.code_via_local(client_id="app", redirect_uri=REDIRECT, scope=scope)
    status, body = await post_json(web, "/dex/token", {"grant_type": "authorization_code", "code": code,
                                                       "redirect_uri": REDIRECT}, app_auth())
    assert status == 200, body
    return body


async def introspect(web: Harness, token: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return await post_json(web, "/dex/token/introspect", {"token": token},
                           app_auth() if headers is None else headers)


async def userinfo_status(web: Harness, access_token: str) -> int:
    response = await web.client.get("/dex/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    return int(response.status_code)


async def refresh(web: Harness, token: str, **extra: str) -> tuple[int, dict[str, Any]]:
    form = {"grant_type": "refresh_token", "refresh_token": token, **extra}
    return await post_json(web, "/dex/token", form,
                           app_auth())


async def test_introspection_active_and_inactive(web: Harness) -> None:
    tokens = await login_tokens(web)
    status, active = await introspect(web, tokens["access_token"])
    assert status == 200 and active["active"] is True
    assert active["client_id"] == "app" and active["token_use"] == "access_token"
    assert active["iss"] == "http://127.0.0.1:5556/dex" and active["ext"]["email"] == "admin@example.com"
    status, rt = await introspect(web, tokens["refresh_token"])
    assert rt["active"] is True and rt["token_use"] == "refresh_token" and rt["client_id"] == "app"
    assert rt["scope"] == "openid email offline_access" and rt["sub"] == active["sub"]
    for junk in ("", "garbage", tokens["access_token"][:-4] + "AAAA", "Cg.x.y"):
        assert (await introspect(web, junk))[1] == {"active": False}
    web.clock.advance(timedelta(hours=24, seconds=1))  # expiry.idTokens
    assert (await introspect(web, tokens["access_token"]))[1] == {"active": False}


async def test_introspection_needs_an_authenticated_confidential_client(web: Harness) -> None:
    tokens = await login_tokens(web)
    status, err = await post_json(web, "/dex/token/introspect", {"token": tokens["access_token"]})
    assert (status, err["error"]) == (401, "invalid_client")
    status, err = await introspect(web, tokens["access_token"], basic("app", "wrong"))
    assert (status, err["error"]) == (401, "invalid_client")
    status, err = await post_json(web, "/dex/token/introspect", {"token": tokens["access_token"],
                                                                 "client_id": "kubectl"})
    assert (status, err["error"]) == (401, "invalid_client")  # a public client proves nothing


async def test_introspection_unauthenticated_when_configured(make_harness: HarnessFactory) -> None:
    web = await harness(make_harness, extra_oauth2="  introspection:\n    allowUnauthenticated: true")
    tokens = await login_tokens(web)
    status, body = await post_json(web, "/dex/token/introspect", {"token": tokens["access_token"]})
    assert status == 200 and body["active"] is True


async def test_revoking_a_refresh_token_ends_its_family_and_offline_session(web: Harness) -> None:
    tokens = await login_tokens(web)
    assert len(await web.storage.offline_sessions.list()) == 1
    # Another client cannot revoke it (silently: RFC 7009 answers 200 either way).
    response = await web.client.post("/dex/token/revoke", form={"token": tokens["refresh_token"]},
                                     headers=basic("other", "other-secret"))
    assert response.status_code == 200
    assert (await introspect(web, tokens["refresh_token"]))[1]["active"] is True
    response = await web.client.post("/dex/token/revoke", form={"token": tokens["refresh_token"],
                                                                "token_type_hint": "refresh_token"},
                                     headers=app_auth())
    assert response.status_code == 200
    status, err = await refresh(web, tokens["refresh_token"])
    assert (status, err["error"]) == (400, "invalid_grant")
    assert (await introspect(web, tokens["refresh_token"]))[1] == {"active": False}
    assert (await introspect(web, tokens["access_token"]))[1] == {"active": False}  # same grant
    assert await userinfo_status(web, tokens["access_token"]) == 401
    assert await web.storage.offline_sessions.list() == []
    wrong = await web.client.post("/dex/token/revoke", form={"token": "x"}, headers=basic("app", "nope"))
    assert wrong.status_code == 401


async def test_revoking_an_access_token(web: Harness) -> None:
    tokens = await login_tokens(web)
    assert await userinfo_status(web, tokens["access_token"]) == 200
    response = await web.client.post("/dex/token/revoke", form={"token": tokens["access_token"]},
                                     headers=app_auth())
    assert response.status_code == 200
    assert await userinfo_status(web, tokens["access_token"]) == 401
    assert (await refresh(web, tokens["refresh_token"]))[0] == 200  # the refresh token lives on


async def test_replayed_code_revokes_what_it_issued(web: Harness) -> None:
    code = await web.code_via_local(client_id="app", redirect_uri=REDIRECT, scope="openid offline_access")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    status, first = await post_json(web, "/dex/token", form, app_auth())
    assert status == 200
    status, err = await post_json(web, "/dex/token", form, app_auth())
    assert (status, err["error"]) == (400, "invalid_grant")
    assert (await refresh(web, first["refresh_token"]))[1]["error"] == "invalid_grant"
    assert await userinfo_status(web, first["access_token"]) == 401
    # Wrong client and expired code.
    code = await web.code_via_local(client_id="app", redirect_uri=REDIRECT)
    status, err = await post_json(web, "/dex/token", form | {"code": code}, basic("other", "other-secret"))
    assert (status, err["error"]) == (400, "invalid_grant")
    web.clock.advance(timedelta(minutes=30))
    status, err = await post_json(web, "/dex/token", form | {"code": code}, app_auth())
    assert (status, err["error"]) == (400, "invalid_grant")


async def test_reuse_outside_the_window_revokes_the_family(web: Harness) -> None:
    tokens = await login_tokens(web)
    web.clock.advance(timedelta(seconds=10))
    status, second = await refresh(web, tokens["refresh_token"])
    assert status == 200
    web.clock.advance(timedelta(seconds=10))
    status, err = await refresh(web, tokens["refresh_token"])  # the old one again: a theft signal
    assert (status, err["error"]) == (400, "invalid_grant")
    assert (await refresh(web, second["refresh_token"]))[1]["error"] == "invalid_grant"
    assert await userinfo_status(web, second["access_token"]) == 401
    assert await userinfo_status(web, tokens["access_token"]) == 401


async def test_scope_escalation_on_refresh(web: Harness) -> None:
    tokens = await login_tokens(web)
    status, err = await refresh(web, tokens["refresh_token"], scope="openid email groups")
    assert (status, err["error"]) == (400, "invalid_scope")
    status, err = await refresh(web, tokens["refresh_token"], client_id="app", client_secret="bad")
    assert status == 200 or err["error"] == "invalid_client"  # Basic wins over the form: still app
    status, err = await post_json(web, "/dex/token", {"grant_type": "refresh_token",
                                                      "refresh_token": tokens["refresh_token"]},
                                  basic("app", "bad"))
    assert (status, err["error"]) == (401, "invalid_client")


async def test_one_refresh_token_per_device_listed_and_revoked_one_by_one(
    make_harness: HarnessFactory,
) -> None:
    web = await harness(make_harness)
    laptop = await login_tokens(web)
    web.client.cookie_jar.clear()  # another browser: another login, another device
    phone = await login_tokens(web)
    listed = await list_refresh_tokens(web.deps, "fd9d7267-8f66-47a6-8e01-d26d687f7c77", "app")
    assert {t.id for t in listed} == {decode_refresh_token(laptop["refresh_token"])[0],
                                     decode_refresh_token(phone["refresh_token"])[0]}
    assert await revoke_refresh_token_by_id(web.deps, decode_refresh_token(laptop["refresh_token"])[0])
    assert (await refresh(web, laptop["refresh_token"]))[1]["error"] == "invalid_grant"
    assert (await refresh(web, phone["refresh_token"]))[0] == 200


async def test_expired_refresh_tokens_are_garbage_collected(make_harness: HarnessFactory) -> None:
    expiry = "expiry:\n  refreshTokens:\n    validIfNotUsedFor: 1h\noauth2:\n"
    text = grants_config().replace("oauth2:\n", expiry)
    upstream = await make_upstream(FrozenClock())
    web = await make_harness(text, registry=registry_with_upstream(upstream))
    tokens = await login_tokens(web)
    assert len(await web.storage.refresh_tokens.list()) == 1
    web.clock.advance(timedelta(minutes=59))
    assert (await web.storage.garbage_collect(web.clock.now())).refresh_tokens == 0
    web.clock.advance(timedelta(minutes=2))
    result = await web.storage.garbage_collect(web.clock.now())
    assert result.refresh_tokens == 1 and await web.storage.refresh_tokens.list() == []
    assert (await refresh(web, tokens["refresh_token"]))[1]["error"] == "invalid_grant"


async def test_consent_is_remembered_when_asked_and_revocable(make_harness: HarnessFactory) -> None:
    web = await harness(make_harness, skip=False)

    async def authorize() -> Any:
        return await web.start("local", client_id="app", redirect_uri=REDIRECT)

    first = await web.code_via_local(client_id="app", redirect_uri=REDIRECT)  # approves, not remembered
    assert first
    again = await authorize()  # SSO: no login, but the approval page again
    assert again.status_code == 303 and "/dex/approval" in location(again)
    page = await web.client.get(location(again).replace("http://127.0.0.1:5556", ""))
    text = await web.text(page)
    assert 'name="remember"' in text
    from web_harness import CSRF_RE, HMAC_RE, REQ_RE

    token, mac, req = CSRF_RE.search(text), HMAC_RE.search(text), REQ_RE.search(text)
    assert token and mac and req
    done = await web.client.post("/dex/approval", form={"csrf_token": token.group(1), "req": req.group(1),
                                                        "hmac": mac.group(1), "approval": "approve",
                                                        "remember": "on"})
    assert done.status_code == 303 and "code" in query_of(location(done))
    remembered = await authorize()
    assert remembered.status_code == 303 and "code" in query_of(location(remembered))
    consents = await list_consents(web.deps, "fd9d7267-8f66-47a6-8e01-d26d687f7c77")
    assert [(c.client_id, c.connector_id) for c in consents] == [("app", "local")]
    assert await revoke_consent(web.deps, "fd9d7267-8f66-47a6-8e01-d26d687f7c77", "local", "app")
    asked = await authorize()
    assert "/dex/approval" in location(asked)
    assert APP_SECRET
