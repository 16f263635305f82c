"""Helpers for the end-to-end tests: Dex-style configs, the `sub` encoding, HTML forms, the Node RP."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import bcrypt
import httpx
import pytest

RP_DIR = Path(__file__).resolve().parent / "rp"
CHROMIUM = "/usr/bin/chromium"

CLIENT_ID = "example-app"
CLIENT_SECRET = "ZXhhbXBsZS1hcHAtc2VjcmV0"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "password"
ADMIN_USERNAME = "admin"
ADMIN_USER_ID = "08a8684b-db88-4b73-90a9-3cd1661f5466"
ADMIN_GROUPS = ["admins", "developers"]
FULL_SCOPE = "openid email profile groups offline_access"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """A missing real component fails under CI=true and skips elsewhere, with the same reason."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required component missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def dex_sub(user_id: str, connector_id: str) -> str:
    """Dex's `sub`: base64url (no padding) of protobuf {1: user_id, 2: connector_id}.

    Written out here, independently of the server's encoder, so a wrong encoding there fails.
    """
    message = b""
    for number, value in ((1, user_id), (2, connector_id)):
        raw = value.encode()
        message += bytes([(number << 3) | 2]) + _varint(len(raw)) + raw
    return base64.urlsafe_b64encode(message).rstrip(b"=").decode()


@functools.cache
def admin_password_hash() -> str:
    # Cost 10: Dex's minimum, and fast enough that logins do not dominate the run.
    return bcrypt.hashpw(ADMIN_PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()


def make_config(
    port: int,
    redirect_uris: list[str],
    storage: dict[str, Any],
    *,
    skip_approval: bool,
) -> dict[str, Any]:
    """A Dex config.yaml (as a dict) with one confidential client and the local password DB."""
    return {
        "issuer": f"http://127.0.0.1:{port}/dex",
        "storage": storage,
        "web": {"http": f"127.0.0.1:{port}"},
        "logger": {"level": "info"},
        "oauth2": {"skipApprovalScreen": skip_approval},
        "staticClients": [
            {
                "id": CLIENT_ID,
                "secret": CLIENT_SECRET,
                "name": "Example App",
                "redirectURIs": redirect_uris,
            }
        ],
        "enablePasswordDB": True,
        "staticPasswords": [
            {
                "email": ADMIN_EMAIL,
                "hash": admin_password_hash(),
                "username": ADMIN_USERNAME,
                "userID": ADMIN_USER_ID,
                "groups": ADMIN_GROUPS,
            }
        ],
    }


def sqlite_storage(path: Path) -> dict[str, Any]:
    return {"type": "sqlite3", "config": {"file": str(path)}}


def create_postgres_database() -> tuple[dict[str, Any], Callable[[], None]]:
    """A new, empty database on 127.0.0.1:5432 (tests/pgutil.py): its storage section and its dropper."""
    import pgutil

    try:
        config = asyncio.run(pgutil.create_test_database())
    except pgutil.PostgresUnavailable as exc:
        require(False, str(exc))
    name = str(config["database"])
    return {"type": "postgres", "config": config}, lambda: asyncio.run(pgutil.drop_test_database(name))


# ---------------------------------------------------------------- HTML forms


@dataclass
class Form:
    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)
    input_types: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = Form(action=a.get("action", ""), method=a.get("method", "get").lower())
            self.forms.append(self._current)
        elif self._current is None:
            return
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind == "submit":
                self._current.buttons.append((a["name"], a.get("value", "")))
            else:
                self._current.inputs[a["name"]] = a.get("value", "")
                self._current.input_types[a["name"]] = kind
        elif tag == "button" and a.get("name"):
            self._current.buttons.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def parse_forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def find_form(html: str, field_name: str, button_value: str | None = None) -> Form:
    """The form holding an input named field_name, or a button named so (with that value, if given)."""
    for form in parse_forms(html):
        if button_value is None and field_name in form.inputs:
            return form
        if any(n == field_name and button_value in (None, v) for n, v in form.buttons):
            return form
    raise AssertionError(f"no form with a field {field_name!r} in page:\n{html[:2000]}")


def is_approval_page(html: str) -> bool:
    return any(name == "approval" for form in parse_forms(html) for name, _ in form.buttons)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# ---------------------------------------------------------------- login with httpx, as a browser would


@dataclass
class LoginResult:
    """Where the browser would land on the RP (the redirect URI with its query) and what it saw."""

    callback_url: str
    approval_page: bool


class FormLogin:
    """Walks /auth → password form → (approval) by hand, stopping at the redirect back to the RP."""

    def __init__(self, issuer: str, redirect_uri: str) -> None:
        self.issuer = issuer
        self.redirect_uri = redirect_uri
        self.http = httpx.Client(timeout=10.0, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def authorize(self, params: dict[str, str]) -> httpx.Response:
        return self.http.get(f"{self.issuer}/auth", params=params)

    def follow_to_page(self, response: httpx.Response, limit: int = 5) -> httpx.Response:
        """Follows redirects that stay on the issuer; stops at a page or at a redirect to the RP."""
        for _ in range(limit):
            location = response.headers.get("location")
            if response.status_code not in (301, 302, 303, 307) or location is None:
                return response
            target = urljoin(str(response.url), location)
            if target.startswith(self.redirect_uri):
                return response
            response = self.http.get(target)
        raise AssertionError(f"too many redirects, last at {response.url}")

    def login_page(self, params: dict[str, str]) -> httpx.Response:
        page = self.follow_to_page(self.authorize(params))
        assert page.status_code == 200, f"expected the login form, got {page.status_code}: {page.text[:500]}"
        return page

    def submit_login(self, page: httpx.Response, password: str = ADMIN_PASSWORD,
                     csrf_override: str | None = None) -> httpx.Response:
        form = find_form(page.text, "password")
        assert form.input_types.get("csrf_token") == "hidden", f"login form lacks hidden csrf_token: {form}"
        data = {k: v for k, v in form.inputs.items() if form.input_types.get(k) == "hidden"}
        if csrf_override is not None:
            data["csrf_token"] = csrf_override
        data.update({"login": ADMIN_EMAIL, "password": password})
        return self.http.post(urljoin(str(page.url), form.action or str(page.url)), data=data)

    def submit_approval(self, page: httpx.Response, decision: str = "approve",
                        csrf_override: str | None = None) -> httpx.Response:
        # Dex's page has one form per button; a single form with both buttons serves as well.
        form = find_form(page.text, "approval", decision)
        for name in ("req", "hmac", "csrf_token"):
            assert form.input_types.get(name) == "hidden", f"approval form lacks hidden {name}: {form}"
        data = dict(form.inputs)
        if csrf_override is not None:
            data["csrf_token"] = csrf_override
        data["approval"] = decision
        return self.http.post(urljoin(str(page.url), form.action or str(page.url)), data=data)

    def run(self, params: dict[str, str], decision: str = "approve") -> LoginResult:
        """The whole browser part of the flow; returns the RP's callback URL."""
        response = self.follow_to_page(self.submit_login(self.login_page(params)))
        approval = False
        if response.status_code == 200 and is_approval_page(response.text):
            approval = True
            response = self.follow_to_page(self.submit_approval(response, decision))
        location = response.headers.get("location", "")
        assert response.status_code in (302, 303) and location.startswith(self.redirect_uri), (
            f"expected a redirect to {self.redirect_uri}, got {response.status_code} "
            f"location={location!r}: {response.text[:500]}")
        return LoginResult(callback_url=location, approval_page=approval)


# ---------------------------------------------------------------- the Node relying party


def rp_missing() -> str | None:
    """Why the Node RP cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    for package in ("openid-client", "playwright-core"):
        if not (RP_DIR / "node_modules" / package / "package.json").exists():
            return f"{RP_DIR}/node_modules/{package} is missing (run `npm ci` in {RP_DIR})"
    return None


@dataclass
class RPRun:
    returncode: int
    result: dict[str, Any] | None
    stdout: str
    stderr: str


def run_rp(issuer: str, redirect_uri: str, *, approval: str = "approve", auth: str = "basic",
           artifacts: Path | None = None, timeout_s: float = 90.0) -> RPRun:
    """Runs rp.mjs; credentials go through the environment, not argv (argv is visible in ps)."""
    env = dict(os.environ)
    env.update({
        "RP_ISSUER": issuer,
        "RP_CLIENT_ID": CLIENT_ID,
        "RP_CLIENT_SECRET": CLIENT_SECRET,
        "RP_REDIRECT_URI": redirect_uri,
        "RP_USERNAME": ADMIN_EMAIL,
        "RP_PASSWORD": ADMIN_PASSWORD,
        "RP_APPROVAL": approval,
        "RP_AUTH": auth,
        "RP_TIMEOUT_MS": str(int((timeout_s - 5) * 1000)),
    })
    if artifacts is not None:
        env["RP_ARTIFACTS"] = str(artifacts)
    proc = subprocess.run(
        ["node", str(RP_DIR / "rp.mjs")], cwd=RP_DIR, env=env, capture_output=True, text=True,
        timeout=timeout_s, stdin=subprocess.DEVNULL, check=False,
    )
    result = None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        result = json.loads(lines[-1])
    return RPRun(proc.returncode, result, proc.stdout, proc.stderr)
