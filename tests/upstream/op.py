"""A real upstream OpenID Provider for tests (node-oidc-provider, op.mjs here) and a browser stand-in.

`UpstreamOP` runs the provider as a child process on a free loopback port with RSA keys made here,
so tests can restart it with another key (rollover) and sign forged tokens with its real key.
`browse` walks its built-in login and consent pages over HTTP as a browser would (cookies, redirects,
form posts) and returns the query of the redirect to the callback URL, which is never contacted.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc.jwk import RSAKey

OP_DIR = Path(__file__).resolve().parent
OP_SCRIPT = OP_DIR / "op.mjs"
READY_TIMEOUT_S = 20.0
CALLBACK = "http://127.0.0.1:5556/dex/callback"  # Portico's; nothing listens there in these tests
SECRET = "portico-upstream-secret"

DEFAULT_ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {
        "claims": {
            "name": "Alice Liddell",
            "preferred_username": "alice",
            "email": "alice@example.org",
            "email_verified": True,
            "groups": ["admins", "devs", "wonderland-team"],
            "org": "acme",
            "team": "red|blue",
            "login": "aliddell",
            "uid_number": 12345678,
        },
        "userinfo": {"department": "research", "nickname": "al"},
    },
    "bob": {
        "claims": {
            "name": "Bob Builder",
            "email": "bob@example.org",
            "email_verified": True,
            "groups": ["builders"],
        },
    },
    "carol": {  # an unverified email address
        "claims": {"name": "Carol", "email": "carol@example.org", "email_verified": False, "groups": []},
    },
    "dave": {  # no email_verified claim at all
        "claims": {"name": "Dave", "email": "dave@example.org"},
    },
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail under CI=true, where a missing real component must never pass silently."""
    if in_ci():
        pytest.fail(f"the upstream OpenID Provider is required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}, private=True)


def client(client_id: str, auth_method: str = "client_secret_basic", secret: str = SECRET,
           redirect_uri: str = CALLBACK, post_logout_redirect_uri: str = "") -> dict[str, Any]:
    """A registered client; a Portico upstream-logout callback defaults to the one beside `redirect_uri`
    (Portico's /callback and /logout/callback share the issuer's path)."""
    if not post_logout_redirect_uri:
        post_logout_redirect_uri = redirect_uri.removesuffix("/callback") + "/logout/callback"
    return {
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uris": [redirect_uri],
        "post_logout_redirect_uris": [post_logout_redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": auth_method,
    }


DEFAULT_CLIENTS = [
    client("portico"),
    client("portico-post", "client_secret_post"),
    client("other-app"),
    client("odd-secret", secret="s3cr3t:with+odd/chars&="),
]


@dataclass(frozen=True)
class TLSFiles:
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files."""

    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    @classmethod
    def make(cls, directory: Path) -> TLSFiles:
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Portico test upstream CA")])
        ca = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        files = cls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
        files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
        return files


@dataclass
class UpstreamOP:
    """One oidc-provider process; `restart(key)` brings it back on the same port and issuer."""

    workdir: Path
    port: int = field(default_factory=free_port)
    key: RSAKey = field(default_factory=lambda: new_key("key-a"))
    # Published beside `key` but never used to sign: the old key during a rollover.
    retired: list[RSAKey] = field(default_factory=list)
    accounts: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_ACCOUNTS))
    tls: TLSFiles | None = None  # serve HTTPS with this certificate
    # The registered clients; a real Portico on another port needs one with its own callback URL.
    clients: list[dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_CLIENTS))
    end_session: bool = True  # advertise an end_session_endpoint (RP-Initiated Logout)
    process: subprocess.Popen[bytes] | None = None
    started: bool = False

    @property
    def issuer(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def connector_config(self, **extra: Any) -> dict[str, Any]:
        """A Dex `oidc` connector block for this provider."""
        return {"issuer": self.issuer, "clientID": "portico", "clientSecret": SECRET, "redirectURI": CALLBACK,
                **extra}

    def write_accounts(self) -> None:
        path = self.workdir / "accounts.json"
        path.write_text(json.dumps(self.accounts))

    def start(self) -> None:
        node = shutil.which("node")
        if node is None:
            unavailable("node is not installed")
        if not (OP_DIR / "node_modules" / "oidc-provider").is_dir():
            unavailable("oidc-provider is not installed: run `npm ci` in tests/upstream")
        for _ in range(3):
            if self._launch(node):
                self.started = True
                return
            if self.started:  # a restart keeps its issuer, so it cannot move to another port
                break
            self.port = free_port()  # someone took the free port first: try another one
        raise RuntimeError(f"oidc-provider could not listen on {self.issuer}: {self.log_tail()}")

    def _launch(self, node: str) -> bool:
        """Start the process; True once it answers, False when its port was taken."""
        self.write_accounts()
        settings = {
            "issuer": self.issuer,
            "port": self.port,
            # oidc-provider signs with the first key of an algorithm and publishes them all.
            "jwks": {"keys": [k.as_dict(private=True) for k in (self.key, *self.retired)]},
            "clients": self.clients,
            "postOnlyClients": ["portico-post"],
            "accountsFile": str(self.workdir / "accounts.json"),
            "cookieKeys": ["test-cookie-key-one", "test-cookie-key-two"],
            "endSession": self.end_session,
        }
        if self.tls is not None:
            settings["tls"] = {"cert": str(self.tls.cert), "key": str(self.tls.key)}
        settings_path = self.workdir / "op.json"
        settings_path.write_text(json.dumps(settings))
        log_path = self.workdir / "op.log"
        log_path.write_bytes(b"")
        with open(log_path, "ab") as log:  # the child keeps its own copy of the handle
            self.process = subprocess.Popen(
                [node, str(OP_SCRIPT), str(settings_path)], cwd=OP_DIR, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "NODE_ENV": "test"},
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        verify = self.tls.context() if self.tls else True
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "EADDRINUSE" in self.log_tail():
                    return False
                raise RuntimeError(f"oidc-provider exited: {self.log_tail()}")
            try:
                url = self.issuer + "/.well-known/openid-configuration"
                if httpx.get(url, timeout=1, verify=verify).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"oidc-provider did not answer within {READY_TIMEOUT_S} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, key: RSAKey | None = None, retired: list[RSAKey] | None = None) -> None:
        """Stop and start again, signing with `key` and also publishing `retired` (default: none);
        its in-memory grants are lost."""
        self.stop()
        if key is not None:
            self.key = key
            self.retired = list(retired or [])
        self.start()

    def log_tail(self) -> str:
        path = self.workdir / "op.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


class _Forms(HTMLParser):
    """The first <form> of a page: its action and the values of its named inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
        elif tag == "input" and self.action is not None and not self._done and "name" in a:
            self.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._done = True


async def browse(login_url: str, login: str, *, callback: str = CALLBACK, abort: bool = False,
                 verify: ssl.SSLContext | bool = True, max_steps: int = 12) -> dict[str, str]:
    """Log in as `login` on the provider's pages (any password) and consent; the callback's query.

    With abort=True the first interaction is cancelled, as a user pressing "Cancel" would.
    """
    async with httpx.AsyncClient(follow_redirects=False, timeout=10, verify=verify) as http:
        response = await http.get(login_url)
        for _ in range(max_steps):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if location.startswith(callback):
                    return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))
                response = await http.get(location)
                continue
            if response.status_code != 200:
                raise AssertionError(f"the provider answered {response.status_code}: {response.text[:800]}")
            page = _Forms()
            page.feed(response.text)
            if page.action is None:
                raise AssertionError(f"no form on the provider's page: {response.text[:800]}")
            action = urljoin(str(response.url), page.action)
            if abort:
                response = await http.get(action + "/abort")
                continue
            fields = dict(page.fields)
            if fields.get("prompt") == "login":
                fields.update(login=login, password="any password")
            response = await http.post(action, data=fields)
    raise AssertionError("the login did not come back to the callback URL")
