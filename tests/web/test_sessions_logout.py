"""Browser SSO sessions (prompt, max_age, id_token_hint, auth_time, sid), RP-initiated and back-channel
logout, implicit and hybrid responses in the fragment, and the discovery fields that announce them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from backchannel import backchannel_listener
from grants_support import (
    app_auth,
    grants_config,
    jwt_claims,
    make_upstream,
    post_json,
    registry_with_upstream,
)
from web_harness import Harness, HarnessFactory, location, path_and_query, query_of

from appliance.clock import FrozenClock
from appliance.oidc.sessions import cookie_name

REDIRECT = "https://app.example/callback"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


async def harness(make_harness: HarnessFactory, **kw: Any) -> Harness:
    registry = registry_with_upstream(await make_upstream(FrozenClock()))
    return await make_harness(grants_config(**kw), registry=registry)


async def code_tokens(web: Harness, **params: str) -> dict[str, Any]:
    code = await web.code_via_local(client_id="app", redirect_uri=REDIRECT, **params)
    status, body = await post_json(web, "/dex/token", {"grant_type": "authorization_code", "code": code,
                                                       "redirect_uri": REDIRECT}, app_auth())
    assert status == 200, body
    return body


async def authorize(web: Harness, **params: str) -> Any:
    return await web.start(None, client_id="app", redirect_uri=REDIRECT, **params)


def fragment_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).fragment).items()}


async def test_session_cookie_and_prompt_none(make_harness: HarnessFactory) -> None:
    web = await harness(make_harness)
    none = await authorize(web, prompt="none")
    assert none.status_code == 303 and query_of(location(none))["error"] == "login_required"
    start = await web.start("local", client_id="app", redirect_uri=REDIRECT)
    login = await web.client.get(path_and_query(location(start)))
    done = await web.password_login(location(login), "admin@example.com", "password")
    cookie = done.headers.get("Set-Cookie", "")
    assert cookie_name(False) + "=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    code = query_of(location(done))["code"]
    status, tokens = await post_json(web, "/dex/token", {"grant_type": "authorization_code", "code": code,
                                                         "redirect_uri": REDIRECT}, app_auth())
    claims = web.deps.keys.verify(tokens["id_token"], now=web.clock.now())
    assert claims["auth_time"] == int(web.clock.now().timestamp()) and claims["sid"] and claims["jti"]
    web.clock.advance(timedelta(minutes=10))
    silent = await authorize(web, prompt="none")  # SSO: a code without any page
    assert silent.status_code == 303 and "code" in query_of(location(silent))
    status, again = await post_json(web, "/dex/token", {"grant_type": "authorization_code",
                                                        "code": query_of(location(silent))["code"],
                                                        "redirect_uri": REDIRECT}, app_auth())
    assert status == 200, again
    again_claims = web.deps.keys.verify(again["id_token"], now=web.clock.now())
    assert again_claims["auth_time"] == claims["auth_time"] and again_claims["sid"] == claims["sid"]
    # max_age shorter than the session's age, prompt=login: a login form again; prompt=none + max_age:
    # login_required.
    assert (await authorize(web, max_age="60")).status_code == 200  # the login choices
    assert (await authorize(web, prompt="login")).status_code == 200
    stale = await authorize(web, prompt="none", max_age="60")
    assert query_of(location(stale))["error"] == "login_required"
    fresh = await authorize(web, prompt="none", max_age="3600")
    assert "code" in query_of(location(fresh))
    # id_token_hint: ours for this user passes; for somebody else (client_credentials' sub) not.
    hinted = await authorize(web, prompt="none", id_token_hint=tokens["id_token"])
    assert "code" in query_of(location(hinted))
    _, svc = await post_json(web, "/dex/token", {"grant_type": "client_credentials", "scope": "openid",
                                                      "client_id": "svc", "client_secret": "svc-secret"})
    other = await authorize(web, prompt="none", id_token_hint=svc["id_token"])
    assert query_of(location(other))["error"] == "login_required"


async def test_prompt_none_needs_consent_when_the_screen_is_on(make_harness: HarnessFactory) -> None:
    web = await harness(make_harness, skip=False)
    await web.code_via_local(client_id="app", redirect_uri=REDIRECT)
    response = await authorize(web, prompt="none")
    assert query_of(location(response))["error"] == "consent_required"


async def test_rp_initiated_logout_with_backchannel(make_harness: HarnessFactory) -> None:
    with backchannel_listener() as listener:
        web = await harness(make_harness, backchannel=listener.url)
        tokens = await code_tokens(web)
        sid = jwt_claims(tokens["id_token"])["sid"]
        bad = await web.client.get("/dex/logout", query_string={
            "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.example/"})
        assert bad.status_code == 400
        response = await web.client.get("/dex/logout", query_string={
            "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://app.example/bye",
            "state": "s-1"})
        assert response.status_code == 303 and location(response) == "https://app.example/bye?state=s-1"
        assert "Max-Age=0" in response.headers.get("Set-Cookie", "")
        assert listener.received.wait(5)
        logout_token = listener.bodies[0]["logout_token"][0]
        claims = web.deps.keys.verify(logout_token, now=web.clock.now())
        assert claims["aud"] == "app" and claims["sid"] == sid and "nonce" not in claims
        assert claims["events"] == {BACKCHANNEL_EVENT: {}}
        assert claims["sub"] == jwt_claims(tokens["id_token"])["sub"]
        none = await authorize(web, prompt="none")
        assert query_of(location(none))["error"] == "login_required"


async def test_logout_without_hint_asks_first(make_harness: HarnessFactory) -> None:
    web = await harness(make_harness)
    await code_tokens(web)
    page = await web.client.get("/dex/logout", query_string={"client_id": "app",
                                                              "post_logout_redirect_uri": "https://app.example/bye"})
    text = await web.text(page)
    assert page.status_code == 200 and "Sign out?" in text
    assert "code" in query_of(location(await authorize(web, prompt="none")))  # not logged out yet
    from web_harness import CSRF_RE

    token = CSRF_RE.search(text)
    assert token is not None
    confirmed = await web.client.post("/dex/logout", form={
        "csrf_token": token.group(1), "client_id": "app", "post_logout_redirect_uri": "https://app.example/bye"})
    assert confirmed.status_code == 303 and location(confirmed) == "https://app.example/bye"
    assert query_of(location(await authorize(web, prompt="none")))["error"] == "login_required"
    plain = await web.client.get("/dex/logout")
    assert plain.status_code == 200 and "Signed out" in await web.text(plain)


async def test_implicit_and_hybrid_fragments(make_harness: HarnessFactory) -> None:
    web = await harness(make_harness)
    await code_tokens(web)  # log in once; the flows below ride on the session

    implicit = await authorize(web, response_type="id_token token", nonce="n-1")
    assert implicit.status_code == 303
    values = fragment_of(location(implicit))
    assert urlsplit(location(implicit)).query == ""
    assert values["state"] == "st-123" and values["token_type"] == "bearer" and "expires_in" in values
    id_claims = web.deps.keys.verify(values["id_token"], now=web.clock.now())
    assert id_claims["nonce"] == "n-1" and "at_hash" in id_claims
    hybrid = fragment_of(location(await authorize(web, response_type="code id_token", nonce="n-2")))
    assert set(hybrid) == {"code", "id_token", "state"}
    assert "c_hash" in web.deps.keys.verify(hybrid["id_token"], now=web.clock.now())
    status, body = await post_json(web, "/dex/token", {"grant_type": "authorization_code",
                                                       "code": hybrid["code"],
                                                       "redirect_uri": REDIRECT}, app_auth())
    assert status == 200, body
    # nonce is required without code; token alone is refused; errors go in the fragment too.
    no_nonce = await authorize(web, response_type="id_token", nonce="")
    assert fragment_of(location(no_nonce))["error"] == "invalid_request"
    alone = await authorize(web, response_type="token", nonce="n")
    assert fragment_of(location(alone))["error"] == "invalid_request"


async def test_implicit_refused_unless_configured(web: Harness) -> None:
    response = await web.start("local", response_type="id_token token")
    assert fragment_of(location(response))["error"] == "unsupported_response_type"


async def test_oob_page_shows_the_code(web: Harness) -> None:
    start = await web.start("local", redirect_uri="urn:ietf:wg:oauth:2.0:oob")
    login = await web.client.get(path_and_query(location(start)))
    page = await web.password_login(location(login), "admin@example.com", "password")
    assert page.status_code == 200 and "Login successful" in await web.text(page)


async def test_discovery_announces_the_new_endpoints(make_harness: HarnessFactory) -> None:
    web = await harness(make_harness)
    doc = json.loads(await web.text(await web.client.get("/dex/.well-known/openid-configuration")))
    assert doc["end_session_endpoint"] == "http://127.0.0.1:5556/dex/logout"
    assert doc["revocation_endpoint"] == "http://127.0.0.1:5556/dex/token/revoke"
    assert doc["introspection_endpoint"] == "http://127.0.0.1:5556/dex/token/introspect"
    assert doc["backchannel_logout_supported"] is True and doc["backchannel_logout_session_supported"] is True
    assert {"client_credentials", "password", "implicit"} <= set(doc["grant_types_supported"])
    assert "sid" in doc["claims_supported"]
