"""Negative paths of the code flow: each answers with the exact error, and never redirects unsafely."""

from __future__ import annotations

import html
from dataclasses import replace

from web_harness import (
    BASE_CONFIG,
    CSRF_RE,
    WEB_APP_SECRET,
    Harness,
    HarnessFactory,
    basic,
    location,
    make_config,
    path_and_query,
    query_of,
    s256,
)

from appliance.config.schema import Config, ConnectorConfig
from appliance.connectors.registry import default_registry
from appliance.errors import ConnectorError


async def error_of(response: object) -> str:
    body = await response.get_json()  # type: ignore[attr-defined]
    return str(body["error"])


async def test_a_code_works_once(web: Harness) -> None:
    code = await web.code_via_local()
    first = await web.redeem(code)
    assert first.status_code == 200
    second = await web.redeem(code)
    assert second.status_code == 400
    assert await error_of(second) == "invalid_grant"


async def test_wrong_redirect_uri_at_token(web: Harness) -> None:
    code = await web.code_via_local()
    response = await web.redeem(code, redirect_uri="https://app.example/other")
    assert response.status_code == 400
    assert await error_of(response) == "invalid_grant"


async def test_wrong_client_secret_basic_is_401_with_challenge(web: Harness) -> None:
    code = await web.code_via_local()
    response = await web.token({"grant_type": "authorization_code", "code": code,
                                "redirect_uri": "https://app.example/callback"},
                               headers=basic("web-app", "wrong"))
    assert response.status_code == 401
    assert await error_of(response) == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    # The code was not spent by the failed attempt.
    assert (await web.redeem(code)).status_code == 200


async def test_client_secret_post_and_its_failure(web: Harness) -> None:
    code = await web.code_via_local()
    wrong = await web.token({"grant_type": "authorization_code", "code": code, "client_id": "web-app",
                             "client_secret": "nope", "redirect_uri": "https://app.example/callback"})
    assert wrong.status_code == 401 and "WWW-Authenticate" not in wrong.headers
    right = await web.token({"grant_type": "authorization_code", "code": code, "client_id": "web-app",
                             "client_secret": WEB_APP_SECRET, "redirect_uri": "https://app.example/callback"})
    assert right.status_code == 200


async def test_basic_credentials_are_url_decoded(web: Harness) -> None:
    # Sent without encoding, '+' decodes to a space (RFC 6749 2.3.1), so the raw secret fails.
    code = await web.code_via_local()
    raw = await web.token({"grant_type": "authorization_code", "code": code,
                           "redirect_uri": "https://app.example/callback"},
                          headers={"Authorization": "Basic " + __import__("base64").b64encode(
                              f"web-app:{WEB_APP_SECRET}".encode()).decode()})
    assert raw.status_code == 401
    assert (await web.redeem(code)).status_code == 200


async def test_a_code_of_another_client_is_refused(web: Harness) -> None:
    code = await web.code_via_local()
    response = await web.token({"grant_type": "authorization_code", "code": code,
                                "redirect_uri": "https://app.example/callback"},
                               headers=basic("peer", "peer-secret"))
    assert response.status_code == 400 and await error_of(response) == "invalid_grant"


async def test_pkce_wrong_verifier_missing_verifier_and_stray_verifier(web: Harness) -> None:
    verifier = "a" * 64
    code = await web.code_via_local(code_challenge=s256(verifier), code_challenge_method="S256")
    wrong = await web.redeem(code, code_verifier="b" * 64)
    assert wrong.status_code == 400 and await error_of(wrong) == "invalid_grant"
    missing = await web.redeem(code)
    assert missing.status_code == 400 and await error_of(missing) == "invalid_grant"
    assert (await web.redeem(code, code_verifier=verifier)).status_code == 200
    plain_code = await web.code_via_local()
    stray = await web.redeem(plain_code, code_verifier=verifier)
    assert stray.status_code == 400 and await error_of(stray) == "invalid_request"


async def test_unknown_scope_redirects_with_invalid_scope(web: Harness) -> None:
    response = await web.start("local", scope="openid bogus")
    assert response.status_code == 303
    result = query_of(location(response))
    assert location(response).startswith("https://app.example/callback?")
    assert result["error"] == "invalid_scope" and result["state"] == "st-123"
    assert "bogus" in result["error_description"]


async def test_missing_openid_scope(web: Harness) -> None:
    response = await web.start("local", scope="email profile")
    assert response.status_code == 303
    assert query_of(location(response))["error"] == "invalid_scope"


async def test_unregistered_redirect_uri_is_a_page_not_a_redirect(web: Harness) -> None:
    response = await web.start("local", redirect_uri="https://evil.example/cb")
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "Unregistered redirect_uri" in await web.text(response)
    # Also at /auth/{connector}, where the request is stored.
    direct = await web.client.get("/dex/auth/local", query_string={
        "client_id": "web-app", "redirect_uri": "https://evil.example/cb", "response_type": "code",
        "scope": "openid"})
    assert direct.status_code == 400 and "Location" not in direct.headers


async def test_unknown_client_is_a_page(web: Harness) -> None:
    response = await web.start("local", client_id="nobody")
    assert response.status_code == 400 and "Location" not in response.headers


async def test_confidential_client_cannot_use_loopback(web: Harness) -> None:
    response = await web.start("local", redirect_uri="http://localhost:9999/cb")
    assert response.status_code == 400 and "Location" not in response.headers


async def test_token_response_type_is_unsupported_unless_configured(web: Harness) -> None:
    response = await web.start("local", response_type="code token")
    assert response.status_code == 303
    # The error of an implicit request travels in the fragment.
    target = location(response)
    assert "#" in target and "unsupported_response_type" in target.split("#", 1)[1]


async def test_unsupported_pkce_method(web: Harness) -> None:
    response = await web.start("local", code_challenge="abc", code_challenge_method="S512")
    assert query_of(location(response))["error"] == "invalid_request"


async def test_unknown_and_disabled_grant_types(web: Harness) -> None:
    for grant in ("magic", "password", "client_credentials"):
        response = await web.token({"grant_type": grant}, headers=basic("web-app", WEB_APP_SECRET))
        assert response.status_code == 400
        assert await error_of(response) == "unsupported_grant_type"


async def test_csrf_token_missing_or_wrong_on_login(web: Harness) -> None:
    start = await web.start("local")
    login_url = location(await web.client.get(path_and_query(location(start))))
    page = await web.client.get(path_and_query(login_url))
    assert page.status_code == 200
    missing = await web.client.post(path_and_query(login_url),
                                    form={"login": "admin@example.com", "password": "password"})
    assert missing.status_code == 400 and "Location" not in missing.headers
    wrong = await web.client.post(path_and_query(login_url), form={
        "login": "admin@example.com", "password": "password", "csrf_token": "x" * 43})
    assert wrong.status_code == 400
    # A fresh browser (no cookie) with a token lifted from the page fails too.
    token = CSRF_RE.search(await web.text(page))
    assert token is not None
    fresh = web.app.test_client()
    stolen = await fresh.post(path_and_query(login_url), form={
        "login": "admin@example.com", "password": "password", "csrf_token": html.unescape(token.group(1))})
    assert stolen.status_code == 400


async def test_csrf_token_missing_on_approval(make_harness: HarnessFactory) -> None:
    web = await make_harness(skip_approval=False)
    start = await web.start("local")
    login_url = location(await web.client.get(path_and_query(location(start))))
    done = await web.password_login(login_url, "admin@example.com", "password")
    approval = query_of(location(done))
    response = await web.client.post("/dex/approval", form={
        "req": approval["req"], "hmac": approval["hmac"], "approval": "approve"})
    assert response.status_code == 400 and "Location" not in response.headers


async def test_approval_hmac_must_match(make_harness: HarnessFactory) -> None:
    web = await make_harness(skip_approval=False)
    start = await web.start("local")
    login_url = location(await web.client.get(path_and_query(location(start))))
    done = await web.password_login(login_url, "admin@example.com", "password")
    approval = query_of(location(done))
    forged = await web.client.get("/dex/approval", query_string={"req": approval["req"], "hmac": "AAAA"})
    assert forged.status_code == 401
    missing = await web.client.get("/dex/approval", query_string={"req": approval["req"]})
    assert missing.status_code == 401


async def test_user_input_echoed_in_pages_is_escaped(web: Harness) -> None:
    evil = '"><script>alert(1)</script>'
    start = await web.start("local", state=evil)
    login_url = location(await web.client.get(path_and_query(location(start))))
    wrong = await web.password_login(login_url, evil, "nope")
    page = await web.text(wrong)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page or "&#34;&gt;&lt;script" in page
    # The "choose another login method" link carries the state: escaped in the attribute too.
    assert 'href="/dex/auth?' in page and "<script>" not in page


async def test_connector_id_must_exist(web: Harness) -> None:
    response = await web.start("nope")
    assert query_of(location(response))["error"] == "invalid_request"
    page = await web.client.get("/dex/auth/nope", query_string={
        "client_id": "web-app", "redirect_uri": "https://app.example/callback", "response_type": "code",
        "scope": "openid"})
    assert page.status_code == 404


async def test_login_with_a_lost_auth_request(web: Harness) -> None:
    response = await web.client.get("/dex/auth/local/login", query_string={"state": "nosuchrequest"})
    assert response.status_code == 400
    callback = await web.client.get("/dex/callback", query_string={"state": "nosuchrequest"})
    assert callback.status_code == 400


class BrokenConnector:
    """A password connector whose upstream fails (ConnectorError) or crashes (anything else)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def prompt(self) -> str:
        return "Username"

    async def login(self, scopes: object, username: str, password: str) -> None:
        raise self.exc


def broken_config() -> Config:
    # The config loader knows only real connector types, so the test one is added to the model.
    config = make_config(BASE_CONFIG.replace("{skip}", "true"))
    return replace(config, connectors=(ConnectorConfig(type="broken", id="broken", name="Broken"),
                                       *config.connectors))


async def test_an_upstream_outage_is_a_generic_login_failed_page(make_harness: HarnessFactory) -> None:
    registry = default_registry().with_types(
        {"broken": lambda cid, cfg: BrokenConnector(ConnectorError("ldap 10.0.0.5:636 refused"))})
    web = await make_harness(config=broken_config(), registry=registry)
    start = await web.start("broken")
    login_url = location(await web.client.get(path_and_query(location(start))))
    response = await web.password_login(login_url, "someone", "pw")
    assert response.status_code == 502
    page = await web.text(response)
    assert "Login failed" in page and "10.0.0.5" not in page


async def test_a_crash_is_a_500_without_detail(make_harness: HarnessFactory) -> None:
    registry = default_registry().with_types(
        {"broken": lambda cid, cfg: BrokenConnector(RuntimeError("internal secret detail"))})
    web = await make_harness(config=broken_config(), registry=registry)
    start = await web.start("broken")
    login_url = location(await web.client.get(path_and_query(location(start))))
    response = await web.password_login(login_url, "someone", "pw")
    assert response.status_code == 500
    assert "secret detail" not in await web.text(response)
    assert response.headers["X-Request-Id"]  # the id that the log line carries
