"""The security tests' side of a real `portico serve` process: the flows over httpx (a browser and a
client), the live values the fuzzers start from, and reading the server's SQLite file."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
from e2e_support import FormLogin
from security_support import ADMIN_PASSWORD, APP_REDIRECT, COLLECTIONS, client_auth, query_of

from appliance.web import csrf


def sqlite_ids(path: Path) -> dict[str, set[str]]:
    """The ids in each kind's table of a server's SQLite file (read while it runs: WAL allows it)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return {
            name: {row[0] for row in db.execute(f"SELECT id FROM {name}")}
            for name in COLLECTIONS
            if name not in ("clients", "passwords", "connectors")
        }


def sqlite_integrity(path: Path) -> str:
    with closing(sqlite3.connect(str(path), timeout=10)) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


class ProcessFlow:
    """The code flow against a running server with httpx, as a browser and a client would."""

    def __init__(self, issuer: str, timeout: float = 10.0) -> None:
        self.issuer = issuer
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def code(
        self, client_id: str = "app", redirect_uri: str = APP_REDIRECT,
        scope: str = "openid email profile groups offline_access", connector: str = "mock", **extra: str,
    ) -> str:
        params = {
            "client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code", "scope": scope,
            "state": "st", "nonce": "n", "connector_id": connector, **extra,
        }
        response = self.http.get(f"{self.issuer}/auth", params=params)
        for _ in range(4):
            if response.status_code == 303:
                break
            assert response.status_code == 302, response.text[:500]
            response = self.http.get(urljoin(str(response.url), response.headers["location"]))
        assert response.status_code == 303, response.text[:500]
        return query_of(response.headers["location"])["code"]

    def redeem(self, code: str, client_id: str = "app", redirect_uri: str = APP_REDIRECT) -> httpx.Response:
        return self.http.post(
            f"{self.issuer}/token", headers=client_auth(client_id),
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
        )

    def refresh(self, refresh_token: str, client_id: str = "app") -> httpx.Response:
        return self.http.post(
            f"{self.issuer}/token", headers=client_auth(client_id),
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )

    def tokens(self) -> dict[str, Any]:
        response = self.redeem(self.code())
        assert response.status_code == 200, response.text
        return dict(response.json())

    def password_tokens(self) -> dict[str, Any]:
        """A login through the password form (e2e_support.FormLogin, as a browser), then the exchange."""
        browser = FormLogin(self.issuer, APP_REDIRECT)
        try:
            page = browser.login_page({
                "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code",
                "scope": "openid email offline_access", "state": "st", "connector_id": "local"})
            done = browser.follow_to_page(browser.submit_login(page, password=ADMIN_PASSWORD))
        finally:
            browser.close()
        assert done.status_code == 303, done.text[:500]
        response = self.redeem(query_of(done.headers["location"])["code"])
        assert response.status_code == 200, response.text
        return dict(response.json())

    def live_values(self) -> dict[str, str]:
        """What the fuzzers start from (fuzz_strategies.Live), made over HTTP: an unfinished password
        login, a request awaiting approval, a spent code and its decoy grant, a pending device code.
        Leaves this client without cookies."""
        query = {
            "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
            "state": "s",
        }
        start = self.http.get(f"{self.issuer}/auth/local", params=query)
        assert start.status_code == 302, start.text
        consent = self.http.get(f"{self.issuer}/auth/mock", params={**query, "prompt": "consent"})
        approval = self.http.get(urljoin(str(consent.url), consent.headers["location"]))
        assert approval.status_code == 303 and "/approval" in approval.headers["location"], approval.text
        self.http.cookies.clear()
        code = self.code()
        decoy = self.redeem(code)
        assert decoy.status_code == 200, decoy.text
        grant = decoy.json()
        device = self.http.post(f"{self.issuer}/device/code", data={"client_id": "native", "scope": "openid"})
        assert device.status_code == 200, device.text
        self.http.cookies.clear()
        return {
            "auth_state": query_of(start.headers["location"])["state"],
            "approval_req": query_of(approval.headers["location"])["req"], "code": code,
            "refresh": grant["refresh_token"], "access": grant["access_token"], "id_token": grant["id_token"],
            "device_code": device.json()["device_code"], "user_code": device.json()["user_code"],
            # The forms' token for this CSRF cookie, without a session (see fuzz_runner._live_values).
            "csrf_cookie": "C" * 43, "csrf": csrf.token_for("C" * 43),
        }
