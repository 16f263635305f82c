"""Reflected and stored XSS: every parameter and name that reaches a page comes back escaped, pages
carry a script-free CSP, and JSON answers are never served as HTML."""

from __future__ import annotations

import html

from fuzz_strategies import XSS_MARKERS
from markupsafe import escape
from security_support import (
    ADMIN_EMAIL,
    APP_REDIRECT,
    PREFIX,
    XSS,
    XSS_CLIENT_NAME,
    client_auth,
    mock_code,
    query_of,
    tokens_for,
)
from web_harness import Harness, location, path_and_query

ESCAPED_SCRIPT = str(escape("<script>alert(1)</script>"))  # as Jinja escapes


def _auth(client_id: str = "app", redirect_uri: str = APP_REDIRECT, **extra: str) -> dict[str, str]:
    return {
        "client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code", "scope": "openid",
        "state": XSS, "nonce": XSS, **extra,
    }


async def _page(h: Harness, response: object, what: str) -> str:
    """The HTML of a page, checked: no raw payload, the headers that keep script out."""
    body = await h.text(response)
    status = getattr(response, "status_code", 0)
    headers = getattr(response, "headers", {})
    assert "text/html" in headers.get("Content-Type", ""), (what, status, headers.get("Content-Type"))
    raw = [marker for marker in (*XSS_MARKERS, XSS_CLIENT_NAME) if marker in body]
    assert not raw, f"{what}: raw {raw} in the page:\n{body[:3000]}"
    csp = headers.get("Content-Security-Policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, (what, csp)
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("X-Frame-Options") == "DENY" and "frame-ancestors 'none'" in csp, what
    return body


async def test_state_and_nonce_on_the_login_pages(sec: Harness) -> None:
    # The connector picker links carry the whole request, state included.
    picker = await sec.client.get(f"{PREFIX}/auth", query_string=_auth())
    assert picker.status_code == 200
    await _page(sec, picker, "picker")
    start = await sec.client.get(f"{PREFIX}/auth/local", query_string=_auth())
    assert start.status_code == 302
    form = await sec.client.get(path_and_query(location(start)))
    await _page(sec, form, "password form")


async def test_login_username_is_escaped(sec: Harness) -> None:
    start = await sec.client.get(f"{PREFIX}/auth/local", query_string=_auth())
    url = path_and_query(location(start))
    page = await sec.client.get(url)
    token = html.unescape(str((await sec.text(page)).split('name="csrf_token" value="')[1].split('"')[0]))
    wrong = await sec.client.post(url, form={"login": XSS, "password": "nope", "csrf_token": token})
    assert wrong.status_code == 200
    body = await _page(sec, wrong, "failed login")
    assert ESCAPED_SCRIPT in body  # the username is shown again, escaped
    also_wrong = await sec.client.post(url, form={"login": ADMIN_EMAIL, "password": XSS, "csrf_token": token})
    assert "alert(1)" not in await _page(sec, also_wrong, "failed login (password)")  # never echoed


async def test_client_name_on_every_page_that_shows_it(make_sec: object) -> None:
    h: Harness = await make_sec(skip_approval=False)  # type: ignore[operator]
    # Picker and password form.
    await _page(
        h, await h.client.get(f"{PREFIX}/auth", query_string=_auth("xss", "https://xss.example/cb")),
        "picker (xss client)",
    )
    start = await h.client.get(f"{PREFIX}/auth/local", query_string=_auth("xss", "https://xss.example/cb"))
    await _page(h, await h.client.get(path_and_query(location(start))), "password form (xss client)")
    # Approval page.
    start = await h.client.get(f"{PREFIX}/auth/mock", query_string=_auth("xss", "https://xss.example/cb"))
    approval = await h.client.get(path_and_query(location(start)))
    assert "/approval" in location(approval)
    page = await h.client.get(path_and_query(location(approval)))
    assert page.status_code == 200
    assert str(escape(XSS_CLIENT_NAME)) in await _page(h, page, "approval (xss client)")
    # Logout confirmation: the session exists, no hint, the client named by client_id.
    logout = await h.client.get(
        f"{PREFIX}/logout",
        query_string={
            "client_id": "xss", "post_logout_redirect_uri": "https://xss.example/bye", "state": XSS,
        },
    )
    assert logout.status_code == 200
    await _page(h, logout, "logout confirmation (xss client)")


async def test_device_pages(sec: Harness) -> None:
    await _page(sec, await sec.client.get(f"{PREFIX}/device", query_string={"user_code": XSS}), "device page")
    page = await sec.client.get(f"{PREFIX}/device")
    token = html.unescape((await sec.text(page)).split('name="csrf_token" value="')[1].split('"')[0])
    bad = await sec.client.post(
        f"{PREFIX}/device/auth/verify_code", form={"user_code": XSS, "csrf_token": token}
    )
    assert bad.status_code == 400
    await _page(sec, bad, "device page, wrong code")
    # The success page names the client.
    device = await sec.client.post(
        f"{PREFIX}/device/code", headers=client_auth("xss"), form={"scope": "openid"}
    )
    assert device.status_code == 200, await sec.text(device)
    user_code = (await device.get_json())["user_code"]
    go = await sec.client.post(
        f"{PREFIX}/device/auth/verify_code", form={"user_code": user_code, "csrf_token": token}
    )
    assert go.status_code == 302
    auth = query_of(location(go))
    code = await mock_code(
        sec, auth["client_id"], auth["redirect_uri"], scope=auth["scope"], state=auth["state"]
    )
    done = await sec.client.get(
        f"{PREFIX}/device/callback", query_string={"state": auth["state"], "code": code}
    )
    assert done.status_code == 200, await sec.text(done)
    assert str(escape(XSS_CLIENT_NAME)) in await _page(sec, done, "device success (xss client)")


async def test_error_pages_never_reflect_markup(sec: Harness) -> None:
    tokens = await tokens_for(sec)
    requests = [
        ("/auth", {**_auth(), "client_id": XSS}), ("/auth", {**_auth(), "redirect_uri": XSS}),
        ("/auth/" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E", _auth()), ("/auth/local/login", {"state": XSS}),
        ("/auth/%3Cscript%3E/login", {"state": XSS}),
        ("/callback", {"state": XSS, "error": XSS, "error_description": XSS}),
        ("/callback/mock", {"state": XSS}), ("/approval", {"req": XSS, "hmac": XSS}),
        ("/device/callback", {"state": XSS, "code": XSS, "error": XSS}), ("/logout", {"id_token_hint": XSS}),
        ("/logout", {"client_id": XSS, "post_logout_redirect_uri": XSS}),
        ("/logout", {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": XSS, "state": XSS}),
        ("/static/%3Cscript%3E", {}), ("/" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E", {}),
    ]
    for path, query in requests:
        response = await sec.client.get(f"{PREFIX}{path}", query_string=query)
        assert response.status_code in (400, 401, 403, 404), (path, response.status_code)
        await _page(sec, response, f"GET {path}")


async def test_redirected_errors_carry_payloads_only_url_encoded(sec: Harness) -> None:
    """Errors sent back to the client put state and the description in the query, percent-encoded."""
    response = await sec.client.get(f"{PREFIX}/auth", query_string={**_auth(), "scope": f"openid {XSS}"})
    assert response.status_code == 303
    where = location(response)
    assert "<" not in where and '"' not in where and " " not in where
    assert query_of(where)["state"] == XSS
    assert not await sec.text(response)  # a redirect carries no page to render


async def test_json_endpoints_answer_json_even_with_markup_in_the_input(sec: Harness) -> None:
    for path, form in (
        ("/token", {"grant_type": XSS}), ("/token", {"grant_type": "refresh_token", "refresh_token": XSS}),
        ("/token/introspect", {"token": XSS}), ("/device/code", {"client_id": XSS}),
    ):
        response = await sec.client.post(f"{PREFIX}{path}", form=form, headers=client_auth("app"))
        assert response.headers["Content-Type"].startswith("application/json"), path
        assert response.headers.get("X-Content-Type-Options") == "nosniff", path
    userinfo = await sec.client.get(f"{PREFIX}/userinfo", headers={"Authorization": f"Bearer {XSS}"})
    assert userinfo.status_code == 401 and userinfo.headers["Content-Type"].startswith("application/json")
