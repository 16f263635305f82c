"""The authorization code flow end to end through the real forms, for each connector kind."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

from web_harness import Harness, HarnessFactory, location, path_and_query, query_of, s256

from appliance.oidc.tokens import decode_sub


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def test_local_password_flow_issues_verified_tokens(web: Harness) -> None:
    code = await web.code_via_local()
    response = await web.redeem(code)
    assert response.status_code == 200, await web.text(response)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = await response.get_json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 24 * 3600
    assert "refresh_token" not in body  # no offline_access asked
    claims = web.deps.keys.verify(body["id_token"], now=web.clock.now())
    assert claims["iss"] == "http://127.0.0.1:5556/dex"
    assert claims["aud"] == "web-app"
    assert claims["nonce"] == "n-456"
    assert claims["email"] == "admin@example.com" and claims["email_verified"] is True
    assert claims["groups"] == ["admins", "developers"]
    assert claims["name"] == "admin"
    assert decode_sub(claims["sub"]) == ("fd9d7267-8f66-47a6-8e01-d26d687f7c77", "local")
    assert "c_hash" in claims and "at_hash" in claims
    userinfo = await web.client.get("/dex/userinfo",
                                    headers={"Authorization": f"Bearer {body['access_token']}"})
    assert userinfo.status_code == 200
    info = await userinfo.get_json()
    assert info["sub"] == claims["sub"] and info["email"] == "admin@example.com"


async def test_email_is_case_insensitive_and_wrong_password_shows_form_again(web: Harness) -> None:
    start = await web.start("local")
    login_start = await web.client.get(path_and_query(location(start)))
    login_url = location(login_start)
    wrong = await web.password_login(login_url, "Admin@Example.com", "nope")
    assert wrong.status_code == 200
    page = await web.text(wrong)
    assert "Incorrect" in page and 'value="Admin@Example.com"' in page
    unknown = await web.password_login(login_url, "nobody@example.com", "password")
    assert unknown.status_code == 200 and "Incorrect" in await web.text(unknown)
    right = await web.password_login(login_url, "ADMIN@example.com", "password")
    assert right.status_code == 303
    assert query_of(location(right))["state"] == "st-123"


async def test_mock_callback_flow(web: Harness) -> None:
    start = await web.start("mock")
    assert start.status_code == 302
    assert location(start).startswith("/dex/auth/mock?")
    upstream = await web.client.get(path_and_query(location(start)))
    assert upstream.status_code == 302
    callback = location(upstream)
    assert callback.startswith("http://127.0.0.1:5556/dex/callback?state=")
    done = await web.client.get(path_and_query(callback))
    assert done.status_code == 303, await web.text(done)
    result = query_of(location(done))
    assert result["state"] == "st-123"
    response = await web.redeem(result["code"])
    body = await response.get_json()
    claims = web.deps.keys.verify(body["id_token"], now=web.clock.now())
    assert decode_sub(claims["sub"]) == ("0-385-28089-0", "mock")
    assert claims["email"] == "kilgore@kilgore.trout"
    assert claims["groups"] == ["authors"]
    assert claims["name"] == "Kilgore Trout"


async def test_mock_password_flow(web: Harness) -> None:
    start = await web.start("mockpw")
    login_start = await web.client.get(path_and_query(location(start)))
    login_url = location(login_start)
    page = await web.client.get(path_and_query(login_url))
    assert "Username" in await web.text(page)  # the connector has no prompt of its own
    wrong = await web.password_login(login_url, "kilgore", "wrong")
    assert wrong.status_code == 200 and "Incorrect" in await web.text(wrong)
    done = await web.password_login(login_url, "kilgore", "trout-pass")
    assert done.status_code == 303
    response = await web.redeem(query_of(location(done))["code"])
    claims = web.deps.keys.verify((await response.get_json())["id_token"], now=web.clock.now())
    assert decode_sub(claims["sub"]) == ("0-385-28089-0", "mockpw")


async def test_approval_screen_then_grant(make_harness: HarnessFactory) -> None:
    web = await make_harness(skip_approval=False)
    code = await web.code_via_local()  # walks through the approval page
    response = await web.redeem(code)
    assert response.status_code == 200


async def test_approval_lists_scopes_and_deny_redirects_access_denied(make_harness: HarnessFactory) -> None:
    web = await make_harness(skip_approval=False)
    start = await web.start("local")
    login_start = await web.client.get(path_and_query(location(start)))
    done = await web.password_login(location(login_start), "admin@example.com", "password")
    approval_url = location(done)
    assert approval_url.startswith("/dex/approval?req=")
    page = await web.client.get(path_and_query(approval_url))
    text = await web.text(page)
    assert "View your email address" in text and "View your groups" in text
    assert "Web &lt;App&gt;" in text  # the client name, escaped
    denied = await web.approve(approval_url, decision="deny")
    assert denied.status_code == 303
    result = query_of(location(denied))
    assert result["error"] == "access_denied" and result["state"] == "st-123"
    again = await web.client.get(path_and_query(approval_url))
    assert again.status_code == 400  # the request is spent


async def test_prompt_consent_forces_approval_even_when_skipped(web: Harness) -> None:
    start = await web.start("local", prompt="consent")
    login_start = await web.client.get(path_and_query(location(start)))
    done = await web.password_login(location(login_start), "admin@example.com", "password")
    assert location(done).startswith("/dex/approval?")


async def test_pkce_s256_flow(web: Harness) -> None:
    verifier = "v" * 50
    code = await web.code_via_local(code_challenge=s256(verifier), code_challenge_method="S256")
    response = await web.redeem(code, code_verifier=verifier)
    assert response.status_code == 200, await web.text(response)


async def test_public_client_loopback_redirect_and_pkce(web: Harness) -> None:
    verifier = "p" * 43
    code = await web.code_via_local(client_id="native", redirect_uri="http://localhost:8123/cb",
                                    code_challenge=s256(verifier), code_challenge_method="S256")
    response = await web.token({"grant_type": "authorization_code", "code": code,
                                "redirect_uri": "http://localhost:8123/cb", "client_id": "native",
                                "code_verifier": verifier})
    assert response.status_code == 200, await web.text(response)


async def test_oob_redirect_shows_the_code(web: Harness) -> None:
    start = await web.start("local", redirect_uri="urn:ietf:wg:oauth:2.0:oob")
    login_start = await web.client.get(path_and_query(location(start)))
    done = await web.password_login(location(login_start), "admin@example.com", "password")
    assert done.status_code == 200
    page = await web.text(done)
    codes = await web.storage.auth_codes.list()
    assert len(codes) == 1 and codes[0].id in page  # the page shows the stored code
    code = codes[0].id
    response = await web.redeem(code, redirect_uri="urn:ietf:wg:oauth:2.0:oob")
    assert response.status_code == 200, await web.text(response)


async def test_code_expires_after_thirty_minutes(web: Harness) -> None:
    code = await web.code_via_local()
    web.clock.advance(timedelta(minutes=31))
    response = await web.redeem(code)
    assert response.status_code == 400
    assert (await response.get_json())["error"] == "invalid_grant"
