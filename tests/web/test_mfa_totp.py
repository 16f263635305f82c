"""TOTP second factor through the real app (Quart test client): enrolment, codes, replay, recovery codes,
limits, optional enrolment, SSO sessions, the password grant and an administrator's reset."""

from __future__ import annotations

import html
import logging
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from web_harness import PASSWORD_HASH, Harness, HarnessFactory, basic, location, path_and_query, query_of

from appliance.errors import NotFound
from appliance.mfa.admin import reset_totp, with_totp
from appliance.mfa.flow import LOCK_AFTER, LOCK_FOR, MAX_REQUEST_FAILURES
from appliance.store.models import mfa_key

USER_ID = "fd9d7267-8f66-47a6-8e01-d26d687f7c77"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
SECRET_RE = re.compile(r'<code id="totp-secret">([^<]+)</code>')
RECOVERY_RE = re.compile(r"<li><code>([0-9a-z]{5}-[0-9a-z]{5})</code></li>")
FIELD_RE = r'name="{}" value="([^"]+)"'


def config_text(
    *, enrollment: str = "required", extra_mfa: str = "", connector_types: str = "[local]",
    throttle: str = "{enabled: false}",
) -> str:
    # The brute-force throttle is off unless a test turns it on: these tests count wrong codes themselves.
    return f"""
issuer: http://127.0.0.1:5556/dex
security:
  bruteForce: {throttle}
storage: {{type: memory}}
web: {{http: 127.0.0.1:5556}}
oauth2:
  skipApprovalScreen: true
  passwordConnector: local
enablePasswordDB: true
staticPasswords:
  - email: admin@example.com
    hash: "{PASSWORD_HASH}"
    username: admin
    userID: {USER_ID}
staticClients:
  - id: web-app
    name: Web App
    secret: s3cret
    redirectURIs: [https://app.example/callback]
  - id: plain-app
    name: Plain App
    secret: plain
    redirectURIs: [https://plain.example/callback]
    mfaChain: []
connectors:
  - {{type: mockCallback, id: mock, name: Mock}}
mfa:
  authenticators:
  - id: totp
    type: TOTP
    config: {{issuer: "Acme SSO", enrollment: {enrollment}}}
    connectorTypes: {connector_types}
  defaultMFAChain: [totp]
{extra_mfa}"""


def auth_query(client: str = "web-app", connector: str = "local", **extra: str) -> dict[str, str]:
    query = {"client_id": client, "response_type": "code", "scope": "openid email", "state": "st",
             "nonce": "n", "connector_id": connector,
             "redirect_uri": "https://app.example/callback" if client == "web-app" else "https://plain.example/callback"}
    query.update(extra)
    return query


async def text(response: Any) -> str:
    return str(await response.get_data(as_text=True))


def field(page: str, name: str) -> str:
    found = re.search(FIELD_RE.format(name), page)
    assert found is not None, f"no hidden {name} in the page:\n{page[:1500]}"
    return html.unescape(found.group(1))


async def password_step(web: Harness, client: str = "web-app", password: str = "password") -> Any:
    """/auth → the local password form → its answer (a 303 onwards, or the form again)."""
    start = await web.client.get("/dex/auth", query_string=auth_query(client))
    assert start.status_code == 302, await text(start)
    form_url = location(await web.client.get(path_and_query(location(start))))
    page = await web.client.get(path_and_query(form_url))
    token = CSRF_RE.search(await text(page))
    assert token is not None
    return await web.client.post(path_and_query(form_url), form={
        "login": "admin@example.com", "password": password, "csrf_token": html.unescape(token.group(1))})


async def totp_page(web: Harness) -> tuple[str, str]:
    """Log in with the password up to the second-factor page: (its URL, its HTML)."""
    answer = await password_step(web)
    assert answer.status_code == 303, await text(answer)
    url = location(answer)
    assert urlsplit(url).path == "/dex/mfa/totp", url
    page = await web.client.get(path_and_query(url))
    assert page.status_code == 200, await text(page)
    assert page.headers["Cache-Control"] == "no-store"
    return url, await text(page)


async def post_step(web: Harness, page: str, **form: str) -> Any:
    data = {"csrf_token": field(page, "csrf_token"), "req": field(page, "req"), "hmac": field(page, "hmac")}
    data.update(form)
    return await web.client.post("/dex/mfa/totp", form=data)


def app_code(web: Harness, secret: str, offset_s: int = 0) -> str:
    """What the user's authenticator app shows (pyotp stands in for the app)."""
    return pyotp.TOTP(secret).at(web.clock.now() + timedelta(seconds=offset_s))


def another_browser(web: Harness) -> None:
    web.client.cookie_jar.clear()


async def redeem(web: Harness, answer: Any) -> dict[str, Any]:
    assert answer.status_code == 303, await text(answer)
    target = location(answer)
    assert target.startswith("https://app.example/callback?"), target
    tokens = await web.client.post("/dex/token", form={
        "grant_type": "authorization_code", "code": query_of(target)["code"],
        "redirect_uri": "https://app.example/callback"}, headers=basic("web-app", "s3cret"))
    assert tokens.status_code == 200, await text(tokens)
    body: dict[str, Any] = await tokens.get_json()
    return body


async def enrol(web: Harness) -> tuple[str, list[str]]:
    """The whole first login with enrolment; returns the secret and the recovery codes."""
    _, page = await totp_page(web)
    assert "Set up two-factor authentication" in page
    secret = SECRET_RE.search(page)
    assert secret is not None
    plain = secret.group(1).replace(" ", "")
    shown = await post_step(web, page, code=app_code(web, plain), action="verify")
    assert shown.status_code == 200, await text(shown)
    body = await text(shown)
    codes = RECOVERY_RE.findall(body)
    assert len(codes) == 10
    await redeem(web, await post_step(web, body, action="continue"))
    return plain, codes


async def test_enrolment_then_login_with_a_code(
    make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="portico")
    web = await make_harness(config_text())
    url, page = await totp_page(web)
    # The request is not logged in yet: the approval/complete steps would refuse it.
    stored = await web.storage.auth_requests.get(query_of(url)["req"])
    assert (stored.logged_in, stored.mfa_pending) == (False, ("totp",))
    # The enrolment page: a locally drawn QR code (no script, no outside service) and the secret in text.
    assert re.search(r'<img class="qr" id="totp-qr" src="data:image/svg\+xml;charset=utf-8,%3Csvg', page)
    assert "<script" not in page and "http://" not in page.split("<body", 1)[1].replace(
        'action="/dex/mfa/totp"', "")
    secret = SECRET_RE.search(page)
    assert secret is not None and len(secret.group(1).replace(" ", "")) == 32
    plain = secret.group(1).replace(" ", "")

    wrong = f"{(int(app_code(web, plain)) + 1) % 1_000_000:06d}"
    again = await post_step(web, page, code=wrong, action="verify")
    assert again.status_code == 400
    again_page = await text(again)
    assert "That code is not valid" in again_page and SECRET_RE.search(again_page).group(1) == secret.group(1)
    assert (await web.storage.auth_requests.get(query_of(url)["req"])).mfa_failures == 1

    shown = await post_step(web, again_page, code=app_code(web, plain), action="verify")
    assert shown.status_code == 200
    codes = RECOVERY_RE.findall(await text(shown))
    assert len(set(codes)) == 10
    record = await web.storage.user_mfa.get(mfa_key(USER_ID, "local"))
    totp = record.totp["totp"]
    assert totp.confirmed and totp.secret == plain and len(totp.recovery) == 10
    assert not set(codes) & set(totp.recovery)  # digests only
    tokens = await redeem(web, await post_step(web, await text(shown), action="continue"))
    assert tokens["id_token"]
    [session] = await web.storage.browser_sessions.list()
    assert session.mfa == ("totp",)

    # Same browser: its session passed the factor, so /auth answers at once.
    sso = await web.client.get("/dex/auth", query_string=auth_query())
    assert sso.status_code == 303 and location(sso).startswith("https://app.example/callback?")

    # Another browser, within the same 30 s: the code just used is refused (single use)...
    another_browser(web)
    _, page = await totp_page(web)
    assert "Two-factor authentication" in page and "totp-secret" not in page  # no QR, no secret again
    replay = await post_step(web, page, code=app_code(web, plain), action="verify")
    assert replay.status_code == 400 and "That code is not valid" in await text(replay)
    # ...and the next time step's code works.
    web.clock.advance(timedelta(seconds=30))
    await redeem(web, await post_step(web, await text(replay), code=app_code(web, plain), action="verify"))

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert plain not in logged and all(code not in logged for code in codes)
    assert "login successful: connector local" in logged and "(second factor passed)" in logged


async def test_clock_drift_of_one_step(make_harness: HarnessFactory) -> None:
    web = await make_harness(config_text())
    plain, _ = await enrol(web)
    for offset in (-30, 30):  # the phone is a step behind, then a step ahead (the used step is passed)
        web.clock.advance(timedelta(seconds=90))
        another_browser(web)
        _, page = await totp_page(web)
        await redeem(web, await post_step(web, page, code=app_code(web, plain, offset), action="verify"))
    web.clock.advance(timedelta(seconds=90))
    another_browser(web)
    _, page = await totp_page(web)
    late = await post_step(web, page, code=app_code(web, plain, -60), action="verify")
    assert late.status_code == 400


async def test_recovery_codes_log_in_once(make_harness: HarnessFactory) -> None:
    web = await make_harness(config_text())
    _, codes = await enrol(web)
    another_browser(web)
    _, page = await totp_page(web)
    await redeem(web, await post_step(web, page, code=codes[4].upper(), action="verify"))
    left = (await web.storage.user_mfa.get(mfa_key(USER_ID, "local"))).totp["totp"].recovery
    assert len(left) == 9
    another_browser(web)
    _, page = await totp_page(web)
    spent = await post_step(web, page, code=codes[4], action="verify")
    assert spent.status_code == 400
    await redeem(web, await post_step(web, await text(spent), code=codes[5], action="verify"))


async def test_too_many_wrong_codes_end_the_login(make_harness: HarnessFactory) -> None:
    web = await make_harness(config_text())
    await enrol(web)
    another_browser(web)
    url, page = await totp_page(web)
    for attempt in range(1, MAX_REQUEST_FAILURES + 1):
        answer = await post_step(web, page, code="000000", action="verify")
        if attempt < MAX_REQUEST_FAILURES:
            assert answer.status_code == 400
            page = await text(answer)
    assert "Too many wrong codes. Start the login again." in await text(answer)
    gone = await web.client.get(path_and_query(url))
    assert gone.status_code == 400
    assert await web.storage.auth_requests.list() == []


async def test_user_is_locked_after_wrong_codes_in_a_row(make_harness: HarnessFactory) -> None:
    web = await make_harness(config_text())
    plain, _ = await enrol(web)
    answer = None
    for i in range(LOCK_AFTER):
        if i % (MAX_REQUEST_FAILURES - 1) == 0:  # a new login before the request limit ends it
            another_browser(web)
            _, page = await totp_page(web)
        answer = await post_step(web, page, code="000001", action="verify")
        page = await text(answer)
    assert answer is not None and answer.status_code == 429
    assert "Too many wrong codes. Try again in 15 minutes." in page
    web.clock.advance(timedelta(seconds=60))
    blocked = await post_step(web, page, code=app_code(web, plain), action="verify")
    assert blocked.status_code == 429  # even the right code, while the lock lasts
    web.clock.advance(LOCK_FOR)
    another_browser(web)
    _, page = await totp_page(web)
    await redeem(web, await post_step(web, page, code=app_code(web, plain), action="verify"))


async def test_step_urls_are_bound_and_forms_need_csrf(make_harness: HarnessFactory) -> None:
    web = await make_harness(config_text())
    url, page = await totp_page(web)
    req = query_of(url)["req"]
    for query in ({"req": req}, {"req": req, "hmac": "forged"}):
        refused = await web.client.get("/dex/mfa/totp", query_string=query)
        assert refused.status_code == 401
    no_csrf = await web.client.post("/dex/mfa/totp", form={"req": req, "hmac": field(page, "hmac"),
                                                            "code": "123456"})
    assert no_csrf.status_code == 400 and "did not come from this site" in await text(no_csrf)
    # A continue before the factor is passed only leads back to the factor.
    early = await post_step(web, page, action="continue")
    assert early.status_code == 303 and urlsplit(location(early)).path == "/dex/mfa/totp"
    # The approval page cannot be reached around it: the request is not logged in.
    assert not (await web.storage.auth_requests.get(req)).logged_in


async def test_optional_enrolment_can_be_skipped(make_harness: HarnessFactory) -> None:
    web = await make_harness(config_text(enrollment="optional"))
    _, page = await totp_page(web)
    assert 'value="skip"' in page
    await redeem(web, await post_step(web, page, action="skip"))
    [session] = await web.storage.browser_sessions.list()
    assert session.mfa == ("totp",)  # the policy was met: SSO works
    tokens = await password_grant(web)
    assert tokens.status_code == 200  # not enrolled, enrolment optional: nothing to ask for
    # Once enrolled, the user is asked for a code every time (and no skip is offered).
    another_browser(web)
    await enrol(web)
    another_browser(web)
    _, page = await totp_page(web)
    assert 'value="skip"' not in page
    refused = await post_step(web, page, action="skip")
    assert refused.status_code == 400
    assert (await password_grant(web)).status_code == 400


async def password_grant(web: Harness) -> Any:
    return await web.client.post("/dex/token", form={
        "grant_type": "password", "username": "admin@example.com", "password": "password",
        "scope": "openid email"}, headers=basic("web-app", "s3cret"))


async def test_password_grant_refused_when_a_factor_is_required(make_harness: HarnessFactory) -> None:
    web = await make_harness(config_text())
    refused = await password_grant(web)
    assert refused.status_code == 400
    body = await refused.get_json()
    assert body["error"] == "invalid_grant" and "second factor" in body["error_description"]
    wrong = await web.client.post("/dex/token", form={
        "grant_type": "password", "username": "admin@example.com", "password": "nope",
        "scope": "openid"}, headers=basic("web-app", "s3cret"))
    assert (await wrong.get_json())["error"] == "access_denied"  # a wrong password is still just that
    allowed = await make_harness(config_text(extra_mfa="  allowPasswordGrant: true\n"))
    assert (await password_grant(allowed)).status_code == 200


async def test_client_without_chain_and_sso_between_clients(make_harness: HarnessFactory) -> None:
    web = await make_harness(config_text())
    answer = await password_step(web, client="plain-app")  # mfaChain: [] → no second factor
    assert answer.status_code == 303 and location(answer).startswith("https://plain.example/callback?")
    [session] = await web.storage.browser_sessions.list()
    assert session.mfa == ()
    # That session does not open web-app, which asks for TOTP: a login (password, then TOTP) instead.
    start = await web.client.get("/dex/auth", query_string=auth_query())
    assert start.status_code == 302 and "/dex/auth/local" in location(start)
    none = await web.client.get("/dex/auth", query_string=auth_query(prompt="none"))
    assert none.status_code == 303 and "error=login_required" in location(none)


async def test_connector_types_limit_the_factor(make_harness: HarnessFactory) -> None:
    web = await make_harness(config_text())
    start = await web.client.get("/dex/auth", query_string=auth_query(connector="mock"))
    assert start.status_code == 302
    upstream = await web.client.get(path_and_query(location(start)))
    done = await web.client.get(path_and_query(location(upstream)))
    # mockCallback is not in connectorTypes [local]: no second factor.
    assert done.status_code == 303 and location(done).startswith("https://app.example/callback?")
    every = await make_harness(config_text(connector_types="[]"))
    start = await every.client.get("/dex/auth", query_string=auth_query(connector="mock"))
    upstream = await every.client.get(path_and_query(location(start)))
    done = await every.client.get(path_and_query(location(upstream)))
    assert done.status_code == 303 and urlsplit(location(done)).path == "/dex/mfa/totp"


async def test_admin_reset_means_a_new_enrolment(make_harness: HarnessFactory) -> None:
    web = await make_harness(config_text())
    plain, _ = await enrol(web)
    listed = await with_totp(web.deps, _rows())
    assert listed == [{"email": "admin@example.com", "user_id": USER_ID, "totp": True}]
    assert await reset_totp(web.deps, "Admin@Example.com") == {
        "email": "admin@example.com", "user_id": USER_ID, "reset": True}
    assert await reset_totp(web.deps, "admin@example.com") == {
        "email": "admin@example.com", "user_id": USER_ID, "reset": False}
    assert (await with_totp(web.deps, _rows()))[0]["totp"] is False
    with pytest.raises(NotFound, match=re.escape("no user 'nobody@example.com'")):
        await reset_totp(web.deps, "Nobody@example.com")
    another_browser(web)
    _, page = await totp_page(web)
    fresh = SECRET_RE.search(page)
    assert fresh is not None and fresh.group(1).replace(" ", "") != plain


async def _rows() -> list[dict[str, Any]]:
    return [{"email": "admin@example.com", "user_id": USER_ID}]


JUNK = ["", " ", "\x00", "\uff11\uff12\uff13\uff14\uff15\uff16", "١٢٣٤٥٦", "12345\u00a06", "9" * 10_000,
        "<script>alert(1)</script>", "00000-00000", "zzzzz-zzzzz-", "-" * 11, "123456\n", "0x1e240",
        "+123456", "1e5"]
ACTIONS = ["verify", "skip", "continue", "", "VERIFY", "continue\x00", "x" * 500]


async def test_junk_input_never_logs_in_and_never_fails_the_server(make_harness: HarnessFactory) -> None:
    web = await make_harness(config_text())
    _, _codes = await enrol(web)
    tried = 0
    for action in ACTIONS:
        for junk in JUNK:
            if tried % (MAX_REQUEST_FAILURES - 1) == 0:
                another_browser(web)
                url, page = await totp_page(web)
            tried += 1
            answer = await post_step(web, page, code=junk, action=action)
            assert answer.status_code < 500, (action, junk[:20], answer.status_code)
            assert answer.status_code != 303 or urlsplit(location(answer)).path == "/dex/mfa/totp"
            body = await text(answer)
            assert "<script>alert" not in body
            if answer.status_code in (200, 400, 429) and 'name="req"' in body:
                page = body
            request = await web.storage.auth_requests.get(query_of(url)["req"])
            assert not request.logged_in and request.mfa_pending == ("totp",)
        web.clock.advance(timedelta(minutes=16))  # past any lock the junk caused


async def test_wrong_codes_feed_the_brute_force_throttle(make_harness: HarnessFactory) -> None:
    """security.bruteForce counts wrong codes on the account the password form counts: enough of them
    lock it, and then neither the right code nor the right password gets in until it is cleared."""
    web = await make_harness(config_text(
        throttle="{account: {maxFailures: 3, lockoutDuration: 15m}, delay: {initial: 0s, max: 0s}}"))
    plain, _ = await enrol(web)
    another_browser(web)
    _, page = await totp_page(web)
    for _ in range(3):
        answer = await post_step(web, page, code="000002", action="verify")
        page = await text(answer)
    locked = [t for t in await web.storage.login_throttles.list() if t.locked_until is not None]
    assert [(t.kind, t.subject, t.connector_id) for t in locked] == [
        ("account", "admin@example.com", "local")]
    web.clock.advance(timedelta(seconds=30))
    refused = await post_step(web, page, code=app_code(web, plain), action="verify")
    assert refused.status_code == 400 and "That code is not valid" in await text(refused)
    another_browser(web)
    again = await password_step(web)
    assert again.status_code == 200  # the password form again: the account is locked
    web.clock.advance(timedelta(minutes=16))
    another_browser(web)
    _, page = await totp_page(web)
    await redeem(web, await post_step(web, page, code=app_code(web, plain), action="verify"))
