"""Helpers of the connector end-to-end tests: Dex configs with one upstream, the browser RP, /token calls."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
from e2e.e2e_support import CLIENT_ID, CLIENT_SECRET, FormLogin, require, rp_missing

HERE = Path(__file__).resolve().parent
BROWSER_SCRIPT = HERE / "browser_login.mjs"
FULL_SCOPE = "openid email profile groups offline_access"


def issuer_of(port: int) -> str:
    return f"http://127.0.0.1:{port}/dex"


def portico_config(port: int, connectors: list[dict[str, Any]], redirect_uris: list[str], state_dir: Path,
                   *, skip_approval: bool = False, post_logout_redirect_uris: list[str] | None = None,
                   ) -> dict[str, Any]:
    """A Dex config.yaml (as a dict): one confidential client, the given connectors, no password DB."""
    client: dict[str, Any] = {"id": CLIENT_ID, "secret": CLIENT_SECRET, "name": "Example App",
                              "redirectURIs": redirect_uris}
    if post_logout_redirect_uris:
        client["postLogoutRedirectURIs"] = post_logout_redirect_uris
    return {
        "issuer": issuer_of(port),
        "storage": {"type": "sqlite3", "config": {"file": str(state_dir / f"portico-{port}.db")}},
        "web": {"http": f"127.0.0.1:{port}"},
        "logger": {"level": "info"},
        "oauth2": {"skipApprovalScreen": skip_approval},
        "staticClients": [client],
        "connectors": connectors,
    }


def require_browser() -> None:
    require(rp_missing() is None, rp_missing() or "")


@dataclass
class BrowserRun:
    returncode: int
    result: dict[str, Any] | None
    stderr: str


def run_browser(issuer: str, redirect_uri: str, mode: str, workdir: Path, *, timeout_s: float = 90.0,
                **options: Any) -> BrowserRun:
    """browser_login.mjs: the whole login in Chromium, then the code (and refresh) grants (openid-client)."""
    workdir.mkdir(parents=True, exist_ok=True)
    result_file = workdir / "result.json"
    result_file.unlink(missing_ok=True)
    cfg = {"issuer": issuer, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
           "redirectUri": redirect_uri, "scope": FULL_SCOPE, "mode": mode, "resultFile": str(result_file),
           "artifacts": str(workdir / "artifacts"), "timeoutMs": int((timeout_s - 5) * 1000), **options}
    # The config (a password, the client secret) goes through the environment, not argv (visible in ps).
    env = {**os.environ, "BL_CONFIG": json.dumps(cfg)}
    proc = subprocess.run(["node", str(BROWSER_SCRIPT)], cwd=HERE, env=env, capture_output=True, text=True,
                          timeout=timeout_s, stdin=subprocess.DEVNULL, check=False)
    result = json.loads(result_file.read_text()) if proc.returncode == 0 and result_file.exists() else None
    return BrowserRun(proc.returncode, result, proc.stderr)


def token(issuer: str, **form: str) -> httpx.Response:
    """POST /token as the confidential client (client_secret_basic)."""
    return httpx.post(f"{issuer}/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET), timeout=30.0)


def refresh(issuer: str, refresh_token: str) -> httpx.Response:
    return token(issuer, grant_type="refresh_token", refresh_token=refresh_token)


def claims_of(jwt: str) -> dict[str, Any]:
    """The payload of a JWT that /token just handed out (its signature is openid-client's to check)."""
    import base64

    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def auth_params(redirect_uri: str, **extra: str) -> dict[str, str]:
    return {"client_id": CLIENT_ID, "redirect_uri": redirect_uri, "response_type": "code",
            "scope": FULL_SCOPE, "state": "st-1", "nonce": "n-1", **extra}


def start_login(issuer: str, redirect_uri: str, **extra: str) -> tuple[FormLogin, httpx.Response]:
    """/auth by hand (httpx), following Portico's redirects between its /auth pages only: the session and
    the first answer that leaves them (a page, or a redirect upstream or to /callback)."""
    login = FormLogin(issuer, redirect_uri)
    response = login.authorize(auth_params(redirect_uri, **extra))
    for _ in range(5):
        location = urljoin(str(response.url), response.headers.get("location", ""))
        if not response.is_redirect or not location.startswith(f"{issuer}/auth"):
            break
        response = login.http.get(location)
    return login, response


def follow(login: FormLogin, response: httpx.Response) -> httpx.Response:
    """Follow a redirect (to anywhere but the RP) one step."""
    location = response.headers.get("location", "")
    return login.http.get(urljoin(str(response.url), location))
