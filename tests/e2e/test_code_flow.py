"""End-to-end authorization code flow against the real `portico serve` process.

A certified client library (openid-client, in Node) drives Chromium through the real login and
approval pages; httpx walks the same pages by hand for the error paths.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from e2e_support import (
    ADMIN_EMAIL,
    ADMIN_GROUPS,
    ADMIN_USER_ID,
    ADMIN_USERNAME,
    CLIENT_ID,
    CLIENT_SECRET,
    FULL_SCOPE,
    FormLogin,
    create_postgres_database,
    dex_sub,
    find_form,
    is_approval_page,
    make_config,
    query,
    require,
    rp_missing,
    run_rp,
    sqlite_storage,
)

if TYPE_CHECKING:
    # Only for annotations: the conftest module is pytest's to import, not ours.
    from conftest import ServerLauncher, ServerProcess

pytestmark = pytest.mark.e2e


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Running:
    server: ServerProcess
    redirect_uri: str
    other_redirect_uri: str

    @property
    def issuer(self) -> str:
        return self.server.issuer


def start(launcher: ServerLauncher, storage: dict[str, Any], *, skip_approval: bool) -> Running:
    cb_port = launcher.free_port()
    redirect_uri = f"http://127.0.0.1:{cb_port}/callback"
    other = f"http://127.0.0.1:{cb_port}/other-callback"
    server = launcher.start(
        lambda port: make_config(port, [redirect_uri, other], storage, skip_approval=skip_approval))
    return Running(server, redirect_uri, other)


# ---------------------------------------------------------------- the certified client in a real browser


def check_rp_flow(running: Running, tmp_path: Path, report_figure: Any, *, expect_approval: bool) -> None:
    rp = run_rp(running.issuer, running.redirect_uri, artifacts=tmp_path / "rp-artifacts")
    if rp.result is None:
        pytest.fail(f"the RP failed (exit {rp.returncode}):\n{rp.stderr}\n--- server stderr ---\n"
                    f"{running.server.stderr_tail()}", pytrace=False)
    result = rp.result
    assert result["outcome"] == "tokens"
    assert result["approval_page"] is expect_approval
    assert result["csrf_token_in_form"] is True
    assert result["callback_params"] == ["code", "state"]

    claims = result["claims"]
    assert claims["iss"] == running.issuer
    assert claims["aud"] == CLIENT_ID
    assert claims["sub"] == dex_sub(ADMIN_USER_ID, "local")
    assert claims["email"] == ADMIN_EMAIL
    assert claims["email_verified"] is True
    assert claims["groups"] == ADMIN_GROUPS
    assert claims["name"] == ADMIN_USERNAME
    assert isinstance(claims["at_hash"], str)
    assert claims["exp"] > claims["iat"]

    shape = result["token_response"]
    assert shape["access_token"] == "string"
    assert shape["id_token"] == "string"
    assert shape["refresh_token"] == "string"
    assert str(shape["token_type"]).lower() == "bearer"
    assert isinstance(shape["expires_in"], int) and shape["expires_in"] > 0
    refreshed_shape = result["refresh_response"]
    assert refreshed_shape["access_token"] == "string"
    assert refreshed_shape["refresh_token"] == "string"

    prints = result["fingerprints"]
    assert prints["refreshed_access_token"] != prints["access_token"]
    assert prints["refreshed_refresh_token"] != prints["refresh_token"], "refresh tokens must rotate"
    if result["refreshed_claims"] is not None:
        assert prints["refreshed_id_token"] != prints["id_token"]
        assert result["refreshed_claims"]["sub"] == claims["sub"]
        assert result["refreshed_claims"]["groups"] == ADMIN_GROUPS

    for userinfo in (result["userinfo"], result["userinfo_first_access_token"]):
        assert userinfo["sub"] == claims["sub"]
        assert userinfo["email"] == ADMIN_EMAIL

    assert "S256" in result["discovery"]["code_challenge_methods_supported"]
    report_figure("server cold start (process start -> first healthz 200), s",
                  round(running.server.cold_start_s, 3))
    report_figure("RP flow incl. Chromium, ms", result["elapsed_ms"])

    # SIGTERM is how systemd and Kubernetes stop it: it must exit cleanly and promptly.
    code = running.server.stop()
    assert code == 0, f"server exited {code} on SIGTERM:\n{running.server.stderr_tail()}"


@pytest.fixture
def postgres_storage_config() -> Iterator[dict[str, Any]]:
    """A fresh database for one server; dropped afterwards (torn down after the server stops)."""
    storage, drop = create_postgres_database()
    try:
        yield storage
    finally:
        drop()


@pytest.fixture
def rp_ready() -> None:
    missing = rp_missing()
    require(missing is None, str(missing))


@pytest.mark.parametrize("skip_approval", [False, True], ids=["approval-screen", "skip-approval"])
def test_certified_rp_code_flow_sqlite(
    rp_ready: None, portico_launcher: ServerLauncher, tmp_path: Path, report_figure: Any, skip_approval: bool
) -> None:
    running = start(portico_launcher, sqlite_storage(tmp_path / "portico.db"), skip_approval=skip_approval)
    check_rp_flow(running, tmp_path, report_figure, expect_approval=not skip_approval)


@pytest.mark.postgres
def test_certified_rp_code_flow_postgres(
    rp_ready: None, postgres_storage_config: dict[str, Any], portico_launcher: ServerLauncher,
    tmp_path: Path, report_figure: Any,
) -> None:
    running = start(portico_launcher, postgres_storage_config, skip_approval=False)
    check_rp_flow(running, tmp_path, report_figure, expect_approval=True)


def test_rp_deny_returns_access_denied(
    rp_ready: None, portico_launcher: ServerLauncher, tmp_path: Path
) -> None:
    running = start(portico_launcher, sqlite_storage(tmp_path / "portico.db"), skip_approval=False)
    rp = run_rp(running.issuer, running.redirect_uri, approval="deny", auth="post",
                artifacts=tmp_path / "rp-artifacts")
    assert rp.result is not None, f"RP failed:\n{rp.stderr}\n{running.server.stderr_tail()}"
    assert rp.result == {"outcome": "denied", "error": "access_denied", "approval_page": True,
                         "csrf_token_in_form": True}


# ---------------------------------------------------------------- error paths over plain HTTP


@pytest.fixture(scope="module")
def shared_server(portico_module_launcher: ServerLauncher) -> Running:
    workdir = portico_module_launcher.workdir
    return start(portico_module_launcher, sqlite_storage(workdir / "portico.db"), skip_approval=False)


@pytest.fixture
def browser(shared_server: Running) -> Iterator[FormLogin]:
    login = FormLogin(shared_server.issuer, shared_server.redirect_uri)
    yield login
    login.close()


def auth_params(running: Running, challenge: str, *, scope: str = FULL_SCOPE,
                redirect_uri: str | None = None) -> dict[str, str]:
    return {
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri or running.redirect_uri,
        "response_type": "code",
        "scope": scope,
        "state": secrets.token_urlsafe(12),
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }


def get_code(running: Running, browser: FormLogin) -> tuple[str, str]:
    """Logs in by hand; returns (code, verifier)."""
    verifier, challenge = pkce_pair()
    params = auth_params(running, challenge)
    result = browser.run(params)
    answer = query(result.callback_url)
    assert answer.get("state") == params["state"], answer
    assert "code" in answer, answer
    return answer["code"], verifier


def token(running: Running, data: dict[str, str], secret: str = CLIENT_SECRET) -> httpx.Response:
    return httpx.post(f"{running.issuer}/token", data=data, auth=(CLIENT_ID, secret), timeout=10.0)


def code_grant(running: Running, code: str, verifier: str, redirect_uri: str | None = None) -> dict[str, str]:
    return {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": redirect_uri or running.redirect_uri}


def assert_oauth_error(response: httpx.Response, status: int, error: str, server: ServerProcess) -> None:
    assert response.status_code == status, (
        f"expected {status} {error}, got {response.status_code}: {response.text[:300]}\n"
        f"{server.stderr_tail(20)}")
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == error


def test_http_code_flow_baseline(shared_server: Running, browser: FormLogin) -> None:
    """The hand-driven flow works, so each error test below fails for the reason it names."""
    code, verifier = get_code(shared_server, browser)
    response = token(shared_server, code_grant(shared_server, code, verifier))
    assert response.status_code == 200, response.text
    assert "no-store" in response.headers.get("cache-control", "")
    body = response.json()
    assert body["token_type"].lower() == "bearer"
    assert {"access_token", "id_token", "refresh_token", "expires_in"} <= body.keys()


def test_code_reuse_is_invalid_grant(shared_server: Running, browser: FormLogin) -> None:
    code, verifier = get_code(shared_server, browser)
    first = token(shared_server, code_grant(shared_server, code, verifier))
    assert first.status_code == 200, first.text
    second = token(shared_server, code_grant(shared_server, code, verifier))
    assert_oauth_error(second, 400, "invalid_grant", shared_server.server)


def test_other_redirect_uri_at_token_is_invalid_grant(shared_server: Running, browser: FormLogin) -> None:
    code, verifier = get_code(shared_server, browser)
    # Registered for the client, but not the one this code was issued for.
    data = code_grant(shared_server, code, verifier, shared_server.other_redirect_uri)
    response = token(shared_server, data)
    assert_oauth_error(response, 400, "invalid_grant", shared_server.server)


@pytest.mark.parametrize("method", ["basic", "post"])
def test_wrong_client_secret_is_401_invalid_client(
    shared_server: Running, browser: FormLogin, method: str
) -> None:
    code, verifier = get_code(shared_server, browser)
    data = code_grant(shared_server, code, verifier)
    if method == "basic":
        response = token(shared_server, data, secret=CLIENT_SECRET + "x")
    else:
        data |= {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET + "x"}
        response = httpx.post(f"{shared_server.issuer}/token", data=data, timeout=10.0)
    assert_oauth_error(response, 401, "invalid_client", shared_server.server)


def test_wrong_pkce_verifier_is_invalid_grant(shared_server: Running, browser: FormLogin) -> None:
    code, _ = get_code(shared_server, browser)
    other_verifier, _ = pkce_pair()
    response = token(shared_server, code_grant(shared_server, code, other_verifier))
    assert_oauth_error(response, 400, "invalid_grant", shared_server.server)


@pytest.mark.parametrize(
    "scope", ["openid email no-such-scope", "email profile"], ids=["unknown-scope", "missing-openid"])
def test_bad_scope_redirects_invalid_scope(shared_server: Running, browser: FormLogin, scope: str) -> None:
    _, challenge = pkce_pair()
    params = auth_params(shared_server, challenge, scope=scope)
    response = browser.authorize(params)
    assert response.status_code in (302, 303), f"{response.status_code}: {response.text[:300]}"
    location = response.headers["location"]
    assert location.startswith(shared_server.redirect_uri), location
    answer = query(location)
    assert answer["error"] == "invalid_scope"
    assert answer["state"] == params["state"]
    assert "code" not in answer


def test_unregistered_redirect_uri_shows_error_page(shared_server: Running, browser: FormLogin) -> None:
    _, challenge = pkce_pair()
    evil = "http://127.0.0.1:9/steal"
    response = browser.authorize(auth_params(shared_server, challenge, redirect_uri=evil))
    # Never redirect to an unregistered URI: that would hand errors (or worse) to an attacker.
    assert response.status_code == 400, f"{response.status_code}: {response.headers}"
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "127.0.0.1:9" not in response.headers.get("refresh", "")


def test_wrong_csrf_token_on_login_is_400(shared_server: Running, browser: FormLogin) -> None:
    _, challenge = pkce_pair()
    page = browser.login_page(auth_params(shared_server, challenge))
    response = browser.submit_login(page, csrf_override=secrets.token_urlsafe(24))
    assert response.status_code == 400, f"{response.status_code}: {response.text[:300]}"
    assert "location" not in response.headers
    # The same form with its real token still works: the 400 was the CSRF check, not the login.
    fresh = browser.login_page(auth_params(shared_server, challenge))
    ok = browser.follow_to_page(browser.submit_login(fresh))
    assert ok.status_code == 200 and is_approval_page(ok.text), f"{ok.status_code}: {ok.text[:300]}"


def test_wrong_csrf_token_on_approval_is_400(shared_server: Running, browser: FormLogin) -> None:
    _, challenge = pkce_pair()
    login_page = browser.login_page(auth_params(shared_server, challenge))
    page = browser.follow_to_page(browser.submit_login(login_page))
    assert is_approval_page(page.text), page.text[:300]
    response = browser.submit_approval(page, csrf_override=secrets.token_urlsafe(24))
    assert response.status_code == 400, f"{response.status_code}: {response.text[:300]}"
    assert "location" not in response.headers


def test_wrong_password_shows_the_form_again(shared_server: Running, browser: FormLogin) -> None:
    _, challenge = pkce_pair()
    page = browser.login_page(auth_params(shared_server, challenge))
    response = browser.submit_login(page, password="not-the-password")
    assert "location" not in response.headers, response.headers
    assert response.status_code in (200, 401), response.status_code
    find_form(response.text, "password")


def test_deny_redirects_access_denied(shared_server: Running, browser: FormLogin) -> None:
    _, challenge = pkce_pair()
    params = auth_params(shared_server, challenge)
    result = browser.run(params, decision="deny")
    assert result.approval_page
    answer = query(result.callback_url)
    assert answer["error"] == "access_denied"
    assert answer["state"] == params["state"]
    assert "code" not in answer
