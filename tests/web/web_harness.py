"""The web test harness: a real app (memory storage, real KeyManager, config parsed from Dex-style YAML)
driven through Quart's test client, plus helpers that walk the browser side of the code flow."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

from quart import Quart
from quart.testing import QuartClient

from appliance.clock import FrozenClock
from appliance.config.load import parse_config
from appliance.config.schema import Config
from appliance.oidc.deps import Deps
from appliance.store.base import Storage

ISSUER = "http://127.0.0.1:5556/dex"
# bcrypt (cost 10) of "password", as in the embedded default config.
PASSWORD_HASH = "$2b$10$n0A05WKeUhJFXCDsgJvQR.BFPHqjGqQNcOtABwocdjj95ElrzymKS"

BASE_CONFIG = f"""
issuer: {ISSUER}
storage:
  type: memory
web:
  http: 127.0.0.1:5556
oauth2:
  skipApprovalScreen: {{skip}}
enablePasswordDB: true
staticPasswords:
  - email: admin@example.com
    hash: "{PASSWORD_HASH}"
    username: admin
    userID: fd9d7267-8f66-47a6-8e01-d26d687f7c77
    groups: [admins, developers]
staticClients:
  - id: web-app
    name: Web <App>
    secret: s3cret/with+special&chars
    redirectURIs: [https://app.example/callback, urn:ietf:wg:oauth:2.0:oob]
  - id: native
    name: Native
    public: true
  - id: peer
    name: Peer
    secret: peer-secret
    redirectURIs: [https://peer.example/cb]
    trustedPeers: [web-app]
connectors:
  - type: mockCallback
    id: mock
    name: Mock
  - type: mockPassword
    id: mockpw
    name: Mock Password
    config:
      username: kilgore
      password: trout-pass
"""

WEB_APP_SECRET = "s3cret/with+special&chars"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
HMAC_RE = re.compile(r'name="hmac" value="([^"]+)"')
REQ_RE = re.compile(r'name="req" value="([^"]+)"')


def make_config(text: str) -> Config:
    config, problems = parse_config(text)
    assert config is not None, [str(p) for p in problems]
    return config


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def basic(client_id: str, secret: str) -> dict[str, str]:
    """client_secret_basic as RFC 6749 2.3.1 says: form-URL-encode each part, then Base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def location(response: Any) -> str:
    value = response.headers.get("Location")
    assert value, f"no Location header (status {response.status_code})"
    return str(value)


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Harness:
    app: Quart
    client: QuartClient
    deps: Deps
    clock: FrozenClock
    storage: Storage
    config: Config
    notes: dict[str, Any] = field(default_factory=dict)

    async def text(self, response: Any) -> str:
        return str(await response.get_data(as_text=True))

    async def start(self, connector: str | None = None, **params: str) -> Any:
        """GET /auth with a code-flow request for web-app (override any parameter)."""
        query = {
            "client_id": "web-app",
            "redirect_uri": "https://app.example/callback",
            "response_type": "code",
            "scope": "openid email profile groups",
            "state": "st-123",
            "nonce": "n-456",
        }
        query.update(params)
        if connector is not None:
            query["connector_id"] = connector
        return await self.client.get("/dex/auth", query_string=query)

    async def password_login(self, login_url: str, username: str, password: str) -> Any:
        """GET the password form at login_url, then POST it with its CSRF token."""
        page = await self.client.get(path_and_query(login_url))
        assert page.status_code == 200, await self.text(page)
        token = CSRF_RE.search(await self.text(page))
        assert token is not None
        return await self.client.post(
            path_and_query(login_url),
            form={"login": username, "password": password, "csrf_token": html.unescape(token.group(1))},
        )

    async def approve(self, approval_url: str, decision: str = "approve") -> Any:
        page = await self.client.get(path_and_query(approval_url))
        assert page.status_code == 200, await self.text(page)
        body = await self.text(page)
        token, mac, req = CSRF_RE.search(body), HMAC_RE.search(body), REQ_RE.search(body)
        assert token and mac and req
        return await self.client.post(
            "/dex/approval",
            form={"csrf_token": html.unescape(token.group(1)), "req": html.unescape(req.group(1)),
                  "hmac": html.unescape(mac.group(1)), "approval": decision},
        )

    async def code_via_local(self, **params: str) -> str:
        """The whole browser leg through the local connector; returns the code from the redirect.
        A browser that logged in before in this harness has an SSO session: /auth then answers at once."""
        start = await self.start("local", **params)
        if start.status_code == 303:
            done = start
        else:
            assert start.status_code == 302, await self.text(start)
            login_start = await self.client.get(path_and_query(location(start)))
            assert login_start.status_code == 302, await self.text(login_start)
            done = await self.password_login(location(login_start), "admin@example.com", "password")
            assert done.status_code == 303, await self.text(done)
        target = location(done)
        if urlsplit(target).path == "/dex/approval":
            done = await self.approve(target)
            assert done.status_code == 303, await self.text(done)
            target = location(done)
        query = query_of(target)
        assert "code" in query, target
        return query["code"]

    async def token(self, form: dict[str, str], headers: dict[str, str] | None = None) -> Any:
        return await self.client.post("/dex/token", form=form, headers=headers)

    async def redeem(self, code: str, **extra: str) -> Any:
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": "https://app.example/callback"}
        form.update(extra)
        return await self.token(form, headers=basic("web-app", WEB_APP_SECRET))


HarnessFactory = Callable[..., Awaitable[Harness]]
