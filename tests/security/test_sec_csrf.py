"""CSRF on every form (missing, wrong, another browser's token), the cookies' attributes, and session
fixation (the session cookie is new at every login; a planted or stolen-then-ended one does not count)."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from typing import Any, cast

from quart.testing import QuartClient
from security_support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    APP_REDIRECT,
    CSRF_RE,
    ISSUER,
    PREFIX,
    mock_code,
    query_of,
    security_config,
    tokens_for,
)
from web_harness import Harness, location, path_and_query

from appliance.oidc.sessions import cookie_name

OTHER_SHAPED = "B" * 43  # a well-formed token that is nobody's
Attempt = Callable[[QuartClient, str | None], Awaitable[Any]]


def _csrf(body: str) -> str:
    found = CSRF_RE.search(body)
    assert found is not None, body[:1500]
    return html.unescape(found.group(1))


def _cookie(client: QuartClient, name: str) -> str | None:
    for cookie in client.cookie_jar or ():
        if cookie.name == name:
            return cookie.value
    return None


async def _other_browser_token(h: Harness) -> str:
    """A CSRF token that is valid, but for another browser (its own cookie)."""
    other = cast(QuartClient, h.app.test_client())
    page = await other.get(f"{PREFIX}/device")
    return _csrf(await page.get_data(as_text=True))


async def _forgeries(h: Harness, attempt: Attempt) -> None:
    """`attempt(client, csrf_token)` POSTs a form; every forged variant must be refused (400) without
    effect, and the same request with the browser's own token must then work."""
    stolen = await _other_browser_token(h)
    for label, token in (
        ("missing", None), ("empty", ""), ("wrong", OTHER_SHAPED), ("another browser's", stolen),
        ("malformed", "<x>" * 20),
    ):
        response = await attempt(h.client, token)
        assert response.status_code == 400, (label, response.status_code, await h.text(response))
        assert "Location" not in response.headers, label
        assert "expired or did not come from this site" in await h.text(response), label
    # A browser without any CSRF cookie, sending a token: refused too.
    bare = cast(QuartClient, h.app.test_client())
    response = await attempt(bare, stolen)
    assert response.status_code == 400 and "Location" not in response.headers


async def test_password_login_form(sec: Harness) -> None:
    start = await sec.client.get(
        f"{PREFIX}/auth/local",
        query_string={
            "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
            "state": "s",
        },
    )
    url = path_and_query(location(start))
    own = _csrf(await sec.text(await sec.client.get(url)))

    async def attempt(client: QuartClient, token: str | None) -> Any:
        form = {"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        if token is not None:
            form["csrf_token"] = token
        return await client.post(url, form=form)

    await _forgeries(sec, attempt)
    assert await sec.storage.browser_sessions.list() == []  # nobody logged in
    assert not (await sec.storage.auth_requests.get(query_of(url)["state"])).logged_in
    done = await attempt(sec.client, own)
    assert done.status_code == 303 and "code=" in location(done)


async def test_approval_form(make_sec: Any) -> None:
    h: Harness = await make_sec(skip_approval=False)
    start = await h.client.get(
        f"{PREFIX}/auth/mock",
        query_string={
            "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code",
            "scope": "openid email", "state": "s",
        },
    )
    approval_url = location(await h.client.get(path_and_query(location(start))))
    body = await h.text(await h.client.get(path_and_query(approval_url)))
    own = _csrf(body)
    fields = query_of(approval_url)

    async def attempt(client: QuartClient, token: str | None) -> Any:
        form = {"req": fields["req"], "hmac": fields["hmac"], "approval": "approve"}
        if token is not None:
            form["csrf_token"] = token
        return await client.post(f"{PREFIX}/approval", form=form)

    await _forgeries(h, attempt)
    assert await h.storage.auth_codes.list() == []
    done = await attempt(h.client, own)
    assert done.status_code == 303 and "code=" in location(done)


async def test_device_code_form(sec: Harness) -> None:
    device = await sec.client.post(f"{PREFIX}/device/code", form={"client_id": "native", "scope": "openid"})
    user_code = (await device.get_json())["user_code"]
    own = _csrf(await sec.text(await sec.client.get(f"{PREFIX}/device")))

    async def attempt(client: QuartClient, token: str | None) -> Any:
        form = {"user_code": user_code}
        if token is not None:
            form["csrf_token"] = token
        return await client.post(f"{PREFIX}/device/auth/verify_code", form=form)

    await _forgeries(sec, attempt)
    done = await attempt(sec.client, own)
    assert done.status_code == 302 and location(done).startswith(f"{PREFIX}/auth?")


async def _still_logged_in(h: Harness) -> bool:
    response = await h.client.get(
        f"{PREFIX}/auth",
        query_string={
            "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
            "state": "s", "prompt": "none",
        },
    )
    return "code=" in response.headers.get("Location", "")


async def test_logout_needs_confirmation_without_a_matching_hint(sec: Harness) -> None:
    await mock_code(sec)  # a session
    assert await _still_logged_in(sec)
    own = _csrf(await sec.text(await sec.client.get(f"{PREFIX}/logout")))  # the confirmation page
    assert await _still_logged_in(sec)  # GET only asks
    stolen = await _other_browser_token(sec)
    for label, token in (("missing", None), ("wrong", OTHER_SHAPED), ("another browser's", stolen)):
        form = {"client_id": "app", "post_logout_redirect_uri": "https://app.example/bye"}
        if token is not None:
            form["csrf_token"] = token
        response = await sec.client.post(f"{PREFIX}/logout", form=form)
        # Without a valid token the POST is only a request: the confirmation page, nothing ended.
        assert response.status_code == 200 and "Location" not in response.headers, label
        assert await _still_logged_in(sec), label
    confirmed = await sec.client.post(f"{PREFIX}/logout", form={"csrf_token": own})
    assert confirmed.status_code == 200
    assert not await _still_logged_in(sec)


async def test_cookie_attributes_on_an_https_issuer(make_sec: Any) -> None:
    https = ISSUER.replace("http://", "https://")
    h: Harness = await make_sec(security_config(https))
    page = await h.client.get(f"{PREFIX}/device")
    csrf_cookie = page.headers.get("Set-Cookie", "")
    assert csrf_cookie.startswith("__Host-portico_csrf=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in csrf_cookie, (attribute, csrf_cookie)
    assert "Domain=" not in csrf_cookie
    start = await h.client.get(
        f"{PREFIX}/auth/mock",
        query_string={
            "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
            "state": "s",
        },
    )
    done = await h.client.get(path_and_query(location(start)))
    session_cookie = done.headers.get("Set-Cookie", "")
    assert session_cookie.startswith(cookie_name(True) + "="), session_cookie
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in session_cookie, (attribute, session_cookie)


# ---------------------------------------------------------------- session fixation


async def _login(h: Harness, **extra: str) -> Any:
    start = await h.client.get(
        f"{PREFIX}/auth/local",
        query_string={
            "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
            "state": "s", **extra,
        },
    )
    if start.status_code == 303:
        return start
    url = path_and_query(location(start))
    token = _csrf(await h.text(await h.client.get(url)))
    return await h.client.post(
        url, form={"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token}
    )


async def test_a_planted_session_cookie_is_replaced_at_login(sec: Harness) -> None:
    name = cookie_name(False)
    planted = "attackerchosenid.attackerchosensecret"
    sec.client.set_cookie("localhost", name, planted)
    done = await _login(sec)
    assert done.status_code == 303
    issued = _cookie(sec.client, name)
    assert issued and issued != planted
    # The planted value is nobody's session: a browser carrying it is not logged in.
    fixated = sec.app.test_client()
    fixated.set_cookie("localhost", name, planted)
    none = await fixated.get(
        f"{PREFIX}/auth",
        query_string={
            "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
            "state": "s", "prompt": "none",
        },
    )
    assert query_of(location(none)).get("error") == "login_required"


async def test_every_login_issues_a_new_session_cookie(sec: Harness) -> None:
    name = cookie_name(False)
    assert (await _login(sec)).status_code == 303
    first = _cookie(sec.client, name)
    # An attacker who learned the first value before the user logged in again gains nothing new.
    again = await _login(sec, prompt="login")
    assert again.status_code == 303
    second = _cookie(sec.client, name)
    assert first and second and first != second
    assert first.split(".")[0] != second.split(".")[0]
    stored = {s.id: s for s in await sec.storage.browser_sessions.list()}
    # Only a digest of the cookie's secret is stored.
    secret = second.split(".", 1)[1]
    assert all(secret not in repr(session) for session in stored.values())


async def test_logout_ends_the_session_server_side(sec: Harness) -> None:
    name = cookie_name(False)
    tokens = await tokens_for(sec)
    value = _cookie(sec.client, name)
    assert value
    out = await sec.client.get(f"{PREFIX}/logout", query_string={"id_token_hint": tokens["id_token"]})
    assert out.status_code == 200
    # Someone who copied the cookie before the logout cannot use it afterwards.
    copy = sec.app.test_client()
    copy.set_cookie("localhost", name, value)
    none = await copy.get(
        f"{PREFIX}/auth",
        query_string={
            "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
            "state": "s", "prompt": "none",
        },
    )
    assert query_of(location(none)).get("error") == "login_required"
