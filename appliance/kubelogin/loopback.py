"""Browser login for the kubectl plugin: authorization code + PKCE (RFC 7636) answered on a loopback
redirect URI (RFC 8252 7.3), http://127.0.0.1:<port>/callback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TextIO
from urllib.parse import parse_qs, urlencode, urlsplit

from appliance.ids import new_secret
from appliance.kubelogin.provider import LoginError, Provider, Tokens

CALLBACK_PATH = "/callback"
_DONE_PAGE = (b"<!doctype html><meta charset=utf-8><title>Portico</title>"
              b"<p>You are logged in. You can close this window and go back to the terminal.</p>")
_FAILED_PAGE = (b"<!doctype html><meta charset=utf-8><title>Portico</title>"
                b"<p>The login did not succeed; the terminal says why.</p>")


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge): 64 URL-safe characters, well inside RFC 7636's 43-128."""
    verifier = new_secret(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _CallbackServer(HTTPServer):
    """Serves until one redirect carrying our state arrives; anything else is answered and ignored."""

    def __init__(self, port: int, state: str) -> None:
        super().__init__(("127.0.0.1", port), _CallbackHandler)
        self.expected_state = state
        self.result: dict[str, str] | None = None


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer
    timeout = 10  # a connection that never sends its request must not hold the login up

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self._answer(404, b"not found")
            return
        params = {key: values[0] for key, values in parse_qs(parts.query).items()}
        # The state binds the answer to this login: another page (or process) cannot feed us a code.
        if not hmac.compare_digest(params.get("state", "").encode(), self.server.expected_state.encode()):
            self._answer(400, b"this redirect does not belong to the login in progress")
            return
        self.server.result = params
        self._answer(200 if "code" in params else 400, _DONE_PAGE if "code" in params else _FAILED_PAGE)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        kind = "text/html; charset=utf-8" if body.startswith(b"<") else "text/plain; charset=utf-8"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # stderr is the user's terminal: it shows the prompts, not an access log


def open_browser(url: str) -> bool:
    """webbrowser.open with stdout pointed at stderr meanwhile: stdout carries the ExecCredential, and a
    browser that prints would corrupt it."""
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        return webbrowser.open(url)
    except webbrowser.Error:
        return False
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _wait(server: _CallbackServer, timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while server.result is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LoginError(f"no login arrived at the loopback redirect within {timeout_s:.0f} s")
        server.timeout = min(remaining, 1.0)
        server.handle_request()
    return server.result


def browser_login(provider: Provider, *, port: int, launch_browser: bool, timeout_s: float,
                  out: TextIO) -> Tokens:
    """Prints the authorization URL on `out` (kubectl shows the plugin's stderr), waits for the redirect,
    redeems the code with the PKCE verifier and validates the ID token, nonce included."""
    endpoints = provider.endpoints()
    settings = provider.settings
    state, nonce = new_secret(), new_secret()
    verifier, challenge = pkce_pair()
    try:
        server = _CallbackServer(port, state)
    except OSError as exc:
        raise LoginError(f"cannot listen on 127.0.0.1:{port} for the login redirect: {exc.strerror}") from exc
    with server:
        redirect_uri = f"http://127.0.0.1:{server.server_port}{CALLBACK_PATH}"
        query = urlencode({
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(settings.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        })
        separator = "&" if "?" in endpoints.authorization else "?"
        url = f"{endpoints.authorization}{separator}{query}"
        print(f"Log in to {settings.issuer} in a browser:\n\n    {url}\n", file=out, flush=True)
        if launch_browser and not open_browser(url):
            print("(no browser could be started here: open the URL above yourself)", file=out, flush=True)
        params = _wait(server, timeout_s)
    if "error" in params:
        detail = params.get("error_description", "")
        reason = params["error"] + (f": {detail}" if detail else "")
        raise LoginError(f"the issuer refused the login: {reason}")
    code = params.get("code", "")
    if not code:
        raise LoginError("the login redirect carried neither a code nor an error")
    body = provider.token({
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    })
    return provider.tokens_from(body, nonce=nonce)
