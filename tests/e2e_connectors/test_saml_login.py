"""SAML through the real server: Chromium from /auth through the auto-submitted AuthnRequest, the real
saml-idp's page and its signed answer posted back to /callback, to tokens; then the POST edge over HTTP."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
import samlutil
from connectors_support import (
    follow,
    issuer_of,
    portico_config,
    refresh,
    require_browser,
    run_browser,
    start_login,
    token,
)
from e2e.e2e_support import FormLogin, dex_sub, is_approval_page, query

if TYPE_CHECKING:
    from conftest import ServerLauncher, ServerProcess

pytestmark = pytest.mark.e2e

IDP_ISSUER = "urn:portico-e2e:idp"


@dataclass
class Setup:
    idp: samlutil.SamlIdp
    server: ServerProcess
    redirect_uri: str

    @property
    def issuer(self) -> str:
        return self.server.issuer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory,
          portico_module_launcher: ServerLauncher) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("saml")
    # The IdP must know Portico's ACS URL before it starts, and Portico the IdP's key: the port comes first.
    port = portico_module_launcher.free_port()
    acs = f"{issuer_of(port)}/callback"
    redirect_uri = f"http://127.0.0.1:{portico_module_launcher.free_port()}/callback"
    with samlutil.run_saml_idp(workdir, acs_url=acs, audience=acs, issuer=IDP_ISSUER) as idp:
        common = {"ssoURL": idp.sso_url, "caData": base64.b64encode(idp.keys.cert_pem).decode(),
                  "redirectURI": acs, "ssoIssuer": IDP_ISSUER, "usernameAttr": "uid", "emailAttr": "email",
                  "groupsAttr": "groups"}
        connectors = [
            {"type": "saml", "id": "saml", "name": "Test IdP", "config": common},
            {"type": "saml", "id": "saml-auditors", "name": "Test IdP (auditors only)",
             "config": {**common, "allowedGroups": ["auditors"]}},
        ]
        # The launcher's own port is ignored: the IdP was told this one (a lost race fails loudly).
        server = portico_module_launcher.start(
            lambda _: portico_config(port, connectors, [redirect_uri], workdir))
        yield Setup(idp, server, redirect_uri)


def _fail(setup: Setup, what: str, detail: str) -> None:
    pytest.fail(f"{what}:\n{detail}\n--- server stderr ---\n{setup.server.stderr_tail()}\n--- idp log ---\n"
                f"{setup.idp.log_path.read_text(errors='replace')[-1500:]}", pytrace=False)


def _saml_form(setup: Setup, connector_id: str = "saml") -> tuple[FormLogin, httpx.Response, dict[str, str]]:
    """/auth for a SAML connector over HTTP: the session, Portico's auto-submit page and its form fields."""
    login, page = start_login(setup.issuer, setup.redirect_uri, connector_id=connector_id)
    assert page.status_code == 200, page.text[:800]
    action, fields = samlutil.parse_forms(page.text)[0]
    assert action == setup.idp.sso_url
    return login, page, fields


def test_browser_login_through_the_idp(setup: Setup, tmp_path: Path, report_figure: Any) -> None:
    require_browser()
    name_id = f"jane-{secrets.token_hex(3)}"
    fields = {"userName": name_id, "email": "jane@example.com", "uid": "jane", "groups": "admins,developers"}
    run = run_browser(setup.issuer, setup.redirect_uri, "saml", tmp_path / "browser", samlFields=fields,
                      extraAuthParams={"connector_id": "saml"}, refresh=True)
    if run.result is None:
        _fail(setup, f"the browser login failed (exit {run.returncode})", run.stderr)
    assert run.result is not None
    result = run.result
    claims = result["claims"]
    assert claims["iss"] == setup.issuer
    assert claims["sub"] == dex_sub(name_id, "saml")  # the IdP's NameID is the user id
    assert claims["email"] == "jane@example.com" and claims["email_verified"] is True
    assert claims["name"] == "jane"
    assert claims["groups"] == ["admins", "developers"]
    assert result["refreshedClaims"]["groups"] == ["admins", "developers"]  # from the identity kept at login
    idp_origin = setup.idp.base_url
    assert f"idp page {idp_origin}" in result["trail"] and result["approvalPage"] is True

    pages = {(p["method"], p["path"]): p for p in result["porticoPages"]}
    auto = pages[("GET", "/dex/auth/saml")]
    assert auto["status"] == 200
    csp = auto["csp"] or ""
    assert f"form-action {idp_origin}" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert pages[("POST", "/dex/callback")]["status"] == 303  # the IdP's cross-site POST, no CSRF token
    assert not [e for e in result["consoleErrors"] if "Content Security Policy" in e], result["consoleErrors"]
    report_figure("saml browser login + code + refresh (ms)", result["elapsedMs"])


def test_browser_login_with_javascript_off(setup: Setup, tmp_path: Path) -> None:
    """The <noscript> button of the auto-submit page posts to the IdP under the page's CSP."""
    require_browser()
    run = run_browser(setup.issuer, setup.redirect_uri, "saml", tmp_path / "noscript", javaScript=False,
                      extraAuthParams={"connector_id": "saml"})
    if run.result is None:
        _fail(setup, f"the browser login failed (exit {run.returncode})", run.stderr)
    assert run.result is not None
    origin = urlsplit(setup.issuer)
    assert run.result["trail"][0] == f"noscript button {origin.scheme}://{origin.netloc}"
    assert f"idp page {setup.idp.base_url}" in run.result["trail"]
    assert run.result["claims"]["email"] == "jane@example.com"


def test_the_auto_submit_page_works_without_inline_script(setup: Setup) -> None:
    login, page, fields = _saml_form(setup)
    login.close()
    assert "<script>" not in page.text and "onload" not in page.text
    assert "/static/js/saml-post.js" in page.text and "<noscript>" in page.text
    assert fields["RelayState"] and base64.b64decode(fields["SAMLRequest"]).startswith(b"<")
    script = httpx.get(f"{setup.issuer}/static/js/saml-post.js", timeout=5)
    assert script.status_code == 200 and "submit" in script.text


def test_the_callback_post_over_http(setup: Setup) -> None:
    """The whole POST edge: a real signed answer logs in; replays, forgeries, refusals and sizes do not."""
    login, _, fields = _saml_form(setup)
    try:
        answer = setup.idp.login(setup.idp.sso_url, fields["SAMLRequest"], fields["RelayState"])
        callback = f"{setup.issuer}/callback"
        assert answer.acs_url == callback and answer.relay_state == fields["RelayState"]
        posted = {"SAMLResponse": answer.saml_response, "RelayState": answer.relay_state}
        # A fresh client: the cross-site POST carries none of the browser's cookies.
        with httpx.Client(timeout=10) as bare:
            first = bare.post(callback, data=posted)
            assert first.status_code == 303, first.text[:500]
            replay = bare.post(callback, data=posted)
        assert replay.status_code == 502 and "Login failed" in replay.text  # the assertion was used
        page = follow(login, first)
        assert page.status_code == 200 and is_approval_page(page.text)
    finally:
        login.close()

    # A forged NameID in the IdP's signed answer: refused as a failed login, never a 500.
    login, _, fields = _saml_form(setup)
    try:
        answer = setup.idp.login(setup.idp.sso_url, fields["SAMLRequest"], fields["RelayState"])
        root = samlutil.parse(answer.xml())
        samlutil.child(root, ".//saml:NameID").text = "admin"
        forged = httpx.post(f"{setup.issuer}/callback",
                            data={"SAMLResponse": samlutil.encode(root), "RelayState": answer.relay_state})
        assert forged.status_code == 502 and "Login failed" in forged.text and "signature" not in forged.text
    finally:
        login.close()
    assert "saml" in setup.server.stderr_text()  # the reason is logged

    # A user in none of allowedGroups: a 403 page with generic text.
    login, _, fields = _saml_form(setup, "saml-auditors")
    try:
        answer = setup.idp.login(setup.idp.sso_url, fields["SAMLRequest"], fields["RelayState"])
        refused = httpx.post(f"{setup.issuer}/callback/saml-auditors",
                             data={"SAMLResponse": answer.saml_response, "RelayState": answer.relay_state})
        assert refused.status_code == 403 and "Access denied" in refused.text
        assert "auditors" not in refused.text and "jane" not in refused.text
    finally:
        login.close()

    # RelayState names the login; without it there is nothing to finish.
    lost = httpx.post(f"{setup.issuer}/callback", data={"SAMLResponse": answer.saml_response})
    assert lost.status_code == 400 and "User session error" in lost.text


def test_body_limit_of_the_saml_post(setup: Setup) -> None:
    login, _, fields = _saml_form(setup)
    login.close()
    # ~730 KB on the wire (a response near the connector's 512 KiB XML limit): read, then refused as SAML.
    big = base64.b64encode(b"<x>" + secrets.token_bytes(530_000) + b"</x>").decode()
    callback = f"{setup.issuer}/callback"
    answer = httpx.post(callback, data={"SAMLResponse": big, "RelayState": fields["RelayState"]}, timeout=30)
    assert answer.status_code == 502 and "Login failed" in answer.text, answer.status_code
    too_big = base64.b64encode(secrets.token_bytes(900_000)).decode()
    over = httpx.post(callback, data={"SAMLResponse": too_big, "RelayState": "x"}, timeout=30)
    assert over.status_code == 413
    # Every other form keeps the small limit.
    small_limit = token(setup.issuer, grant_type="refresh_token", refresh_token="r" * 100_000)
    assert small_limit.status_code == 413
    assert httpx.get(f"{setup.issuer}/healthz", timeout=5).status_code == 200


def test_refresh_after_saml_login_keeps_the_identity(setup: Setup) -> None:
    """SAML has no upstream refresh: the identity kept at login comes back (Dex main's behaviour)."""
    login, _, fields = _saml_form(setup)
    try:
        answer = setup.idp.login(setup.idp.sso_url, fields["SAMLRequest"], fields["RelayState"],
                                 userName="ref-1", groups="admins")
        response = login.follow_to_page(login.http.post(
            f"{setup.issuer}/callback", data={"SAMLResponse": answer.saml_response,
                                              "RelayState": answer.relay_state}))
        assert is_approval_page(response.text), response.text[:500]
        response = login.follow_to_page(login.submit_approval(response))
        code = query(response.headers["location"])["code"]
    finally:
        login.close()
    tokens = token(setup.issuer, grant_type="authorization_code", code=code, redirect_uri=setup.redirect_uri)
    assert tokens.status_code == 200, tokens.text
    again = refresh(setup.issuer, tokens.json()["refresh_token"])
    assert again.status_code == 200, again.text
