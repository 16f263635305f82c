"""Real-process helpers for the brute-force and rate-limit tests: configs, the password grant, the
password form as a browser posts it, and the telemetry listener's counters."""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import urljoin

import bcrypt
import httpx
from adminutil import free_port

CLIENT_ID, CLIENT_SECRET = "app", "app-secret"
REDIRECT = "http://127.0.0.1:5555/callback"
PASSWORD = "correct horse battery staple"
USERS = ("jane", "bob", "carol", "dave", "erin")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
STATE = re.compile(r"state=[A-Za-z0-9]+")


@functools.cache
def password_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()


def email(user: str) -> str:
    return f"{user}@example.com"


def server_config(port: int, *, telemetry_port: int = 0, security: dict[str, Any] | None = None,
                  storage: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The local password DB with USERS, the password grant, a confidential client; fast delays."""
    config: dict[str, Any] = {
        "issuer": f"http://127.0.0.1:{port}/dex",
        "storage": storage or {"type": "sqlite3", "config": {"file": "portico.db"}},
        "web": {"http": f"127.0.0.1:{port}"},
        "oauth2": {"passwordConnector": "local", "skipApprovalScreen": True},
        "enablePasswordDB": True,
        "staticPasswords": [{"email": email(u), "hash": password_hash(), "username": u, "userID": f"id-{u}"}
                            for u in USERS],
        "staticClients": [{"id": CLIENT_ID, "name": "App", "secret": CLIENT_SECRET,
                           "redirectURIs": [REDIRECT]}],
        "security": security if security is not None else {
            "bruteForce": {"account": {"maxFailures": 3, "lockoutDuration": "10m"},
                           "delay": {"initial": "10ms", "max": "40ms"}},
        },
    }
    if telemetry_port:
        config["telemetry"] = {"http": f"127.0.0.1:{telemetry_port}"}
    config.update(extra)
    return config


def telemetry_port() -> int:
    return free_port()


def password_grant(issuer: str, username: str, password: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET), headers=headers, timeout=30,
                      data={"grant_type": "password", "username": username, "password": password,
                            "scope": "openid email"})


def fail_until_locked(issuer: str, username: str, times: int = 3) -> None:
    for _ in range(times):
        answer = password_grant(issuer, username, "wrong password")
        assert answer.status_code == 401, answer.text


class Browser:
    """The password form as a browser uses it: the page (with its CSRF cookie), then POSTs to it."""

    def __init__(self, issuer: str, connector: str = "local") -> None:
        self.http = httpx.Client(timeout=30, follow_redirects=False)
        start = self.http.get(f"{issuer}/auth/{connector}", params={
            "client_id": CLIENT_ID, "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid",
            "state": "st"})
        assert start.status_code == 302, start.text[:300]
        self.url = urljoin(str(start.url), start.headers["location"])
        page = self.http.get(self.url)
        assert page.status_code == 200, page.text[:300]
        found = CSRF.search(page.text)
        assert found is not None
        self.csrf = found.group(1)

    def post(self, username: str, password: str, **headers: str) -> httpx.Response:
        return self.http.post(self.url, headers=headers,
                              data={"csrf_token": self.csrf, "login": username, "password": password})

    def close(self) -> None:
        self.http.close()


def comparable_page(text: str, username: str) -> str:
    """A form page with what legitimately differs between two answers masked: the username typed
    (echoed in the form), the CSRF token, the auth request id."""
    return STATE.sub("state=S", CSRF.sub('name="csrf_token" value="T"', text.replace(username, "USER")))


def comparable_headers(response: httpx.Response) -> dict[str, str]:
    varying = {"date", "x-request-id", "content-length", "set-cookie"}
    return {k: v for k, v in response.headers.items() if k.lower() not in varying}


def counter(telemetry: str, name: str, **labels: str) -> float:
    """A counter's value on /metrics (0 when the series is absent)."""
    text = httpx.get(f"{telemetry}/metrics", timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
