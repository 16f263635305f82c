"""CSRF tokens bound to the browser's SSO session, against real server processes with httpx browsers: a
token shown under one session is refused under another (another browser, a planted CSRF cookie, the
same browser logged in again); forms keep working across a configuration reload and across two
replicas sharing one database."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
import yaml
from adminutil import Server, start_server, wait_for
from e2e_support import Form, find_form
from security_support import ADMIN_EMAIL, ADMIN_PASSWORD, APP_REDIRECT, security_config

from appliance.oidc.sessions import cookie_name as session_cookie
from appliance.web.csrf import cookie_name as csrf_cookie

pytestmark = pytest.mark.timeout(180)
AUTH = {"client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
        "state": "st", "connector_id": "local"}
EXPIRED = "expired or did not come from this site"


def _config(port: int, *, skip_approval: bool, db: str = "portico.db", issuer_port: int | None = None
            ) -> dict[str, Any]:
    config = security_config(issuer=f"http://127.0.0.1:{issuer_port or port}/dex",
                             storage={"type": "sqlite3", "config": {"file": db}}, skip_approval=skip_approval)
    config["web"] = {"http": f"127.0.0.1:{port}"}
    return config


class Browser:
    """An httpx client with a cookie jar that follows the issuer's redirects by hand."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=20, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def cookie(self, name: str) -> str:
        return str(self.http.cookies.get(name, domain="127.0.0.1") or "")

    def follow(self, response: httpx.Response) -> httpx.Response:
        """Redirects within the issuer, up to a page or to the app's redirect URI."""
        for _ in range(6):
            target = response.headers.get("location")
            if response.status_code not in (302, 303) or not target or target.startswith(APP_REDIRECT):
                return response
            response = self.http.get(urljoin(str(response.url), target))
        raise AssertionError(f"too many redirects at {response.url}")

    def login_form(self, base: str, **extra: str) -> tuple[httpx.Response, Form]:
        page = self.follow(self.http.get(f"{base}/dex/auth", params={**AUTH, **extra}))
        assert page.status_code == 200, page.text[:500]
        return page, find_form(page.text, "password")

    def post(self, base: str, page: httpx.Response, form: Form, **fields: str) -> httpx.Response:
        """POST `form` of `page` to the same path on `base` (another replica, say)."""
        target = urlsplit(urljoin(str(page.url), html.unescape(form.action)))
        data = {k: v for k, v in form.inputs.items() if form.input_types.get(k) == "hidden"}
        return self.http.post(f"{base}{target.path}?{target.query}", data={**data, **fields})

    def log_in(self, base: str, **extra: str) -> httpx.Response:
        """A full password login; returns the page or redirect that follows it."""
        page, form = self.login_form(base, **extra)
        return self.follow(self.post(base, page, form, login=ADMIN_EMAIL, password=ADMIN_PASSWORD))


def _base(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


def _refused(response: httpx.Response) -> bool:
    return response.status_code == 400 and EXPIRED in response.text and "location" not in response.headers


def test_a_token_from_one_session_is_refused_in_another(tmp_path: Path) -> None:
    server = start_server(tmp_path, lambda port: _config(port, skip_approval=False))
    alice, mallory = Browser(), Browser()
    base = _base(server)
    try:
        approval = alice.log_in(base)
        assert approval.status_code == 200 and "/dex/approval" in str(approval.url), approval.text[:500]
        form = find_form(approval.text, "approval", "approve")
        alice_session = alice.cookie(session_cookie(False))
        assert alice_session and alice.cookie(csrf_cookie(False))

        # Another browser with a session of its own, posting Alice's form (her token, req and hmac).
        assert mallory.log_in(base).status_code == 200
        assert _refused(mallory.post(base, approval, form, approval="approve"))
        # ... even with Alice's CSRF cookie planted next to its own session: the token names her session.
        mallory.http.cookies.delete(csrf_cookie(False))
        mallory.http.cookies.set(csrf_cookie(False), alice.cookie(csrf_cookie(False)), domain="127.0.0.1")
        assert [c.value for c in mallory.http.cookies.jar if c.name == csrf_cookie(False)] == [
            alice.cookie(csrf_cookie(False))]
        assert _refused(mallory.post(base, approval, form, approval="approve"))

        # The same browser, logged in again (a new session, the same CSRF cookie): the old form is dead.
        alice_csrf = alice.cookie(csrf_cookie(False))
        again = alice.log_in(base, prompt="login")
        assert alice.cookie(csrf_cookie(False)) == alice_csrf
        assert alice.cookie(session_cookie(False)) not in ("", alice_session)
        assert _refused(alice.post(base, approval, form, approval="approve"))
        # The page shown under the new session works.
        fresh = find_form(again.text, "approval", "approve")
        done = alice.post(base, again, fresh, approval="approve")
        assert done.status_code == 303 and done.headers["location"].startswith(APP_REDIRECT + "?code=")
    finally:
        alice.close()
        mallory.close()
        server.stop()


def test_forms_survive_a_reload_and_work_on_another_replica(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    first = start_server(_mkdir(tmp_path / "one"), lambda port: _config(port, skip_approval=True, db=db))
    second = start_server(_mkdir(tmp_path / "two"),
                          lambda port: _config(port, skip_approval=True, db=db, issuer_port=first.port))
    browser = Browser()
    try:
        # Shown by one replica, posted to the other (cookies for 127.0.0.1 go to both ports).
        page, form = browser.login_form(_base(first))
        done = browser.post(_base(second), page, form, login=ADMIN_EMAIL, password=ADMIN_PASSWORD)
        assert done.status_code == 303 and "code=" in done.headers["location"], done.text[:500]

        # Shown before a reload, posted after it (same browser, a new login).
        page, form = browser.login_form(_base(first), prompt="login")
        config = _config(first.port, skip_approval=True, db=db)
        config["staticClients"].append({"id": "late", "name": "Late", "secret": "late-secret",
                                        "redirectURIs": [APP_REDIRECT]})
        first.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        wait_for(lambda: any("staticClients +late" in r["changes"] for r in first.history()), timeout=30,
                 what="the reload")
        done = browser.post(_base(first), page, form, login=ADMIN_EMAIL, password=ADMIN_PASSWORD)
        assert done.status_code == 303 and "code=" in done.headers["location"], done.text[:500]
        # A forged token is still refused by both.
        for server in (first, second):
            page, form = browser.login_form(_base(first), prompt="login")
            forged = browser.post(_base(server), page, form, login=ADMIN_EMAIL, password=ADMIN_PASSWORD,
                                  csrf_token="A" * 43)
            assert _refused(forged)
    finally:
        browser.close()
        second.stop()
        first.stop()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
