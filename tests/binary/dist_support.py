"""What test_binary.py needs around the binary: running it, configs, the login flow, a terminal."""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import importlib.util
import os
import pty
import re
import secrets
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from e2e.e2e_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    make_config,
    query,
    sqlite_storage,
)
from joserfc import jwt
from joserfc.jwk import KeySet

ROOT = Path(__file__).resolve().parents[2]
BUILD_SH = ROOT / "packaging" / "build.sh"
DIST_BINARY = ROOT / "dist" / "portico"
REPORT = ROOT / "dist" / "build-report.json"
BUILD_TIMEOUT_S = 600
STOP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 30.0
REDIRECT_URI = "http://127.0.0.1:5555/callback"
LIBRARIES = ("quart", "hypercorn", "joserfc", "cryptography", "bcrypt", "aiosqlite", "asyncpg", "PyYAML")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _load(name: str, path: Path) -> ModuleType:
    """A module of packaging/ by path (the folder is not a package: `packaging` is a PyPI name)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


measure = _load("portico_packaging_measure", ROOT / "packaging" / "measure.py")


@dataclass(frozen=True)
class Installed:
    """A copy of the binary in its own folder, and the environment of a host without Python."""

    binary: Path
    workdir: Path
    env: dict[str, str]

    def run(self, *args: str, stdin: str = "", timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary), *args], cwd=self.workdir, env=self.env, capture_output=True,
                              text=True, timeout=timeout, input=stdin, check=False)



def commands(installed: Installed) -> set[str]:
    """The subcommands `portico --help` lists."""
    out = installed.run("--help").stdout
    # argparse indents each subcommand by 4 spaces under "positional arguments:" (metavar COMMAND).
    commands = set(re.findall(r"^ {4}([a-z][a-z-]*)\b", out, re.MULTILINE))
    assert "serve" in commands, out
    return commands


# ---------------------------------------------------------------- configs


def self_signed_cert_b64() -> str:
    """A throwaway certificate for a SAML connector that only has to open (no IdP to log in with)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


def dead_port() -> int:
    """A loopback port nobody listens on: connectors pointed at it fail only when used."""
    return int(measure.free_port())


def full_config(port: int, workdir: Path, saml: dict[str, Any]) -> dict[str, Any]:
    """The local password DB, one confidential client, and connectors of every lazily imported kind."""
    config = make_config(port, [REDIRECT_URI], sqlite_storage(workdir / "state" / "portico.db"),
                         skip_approval=False)
    dead = f"127.0.0.1:{dead_port()}"
    config["connectors"] = [
        {"type": "ldap", "id": "ldap", "name": "LDAP", "config": {
            "host": dead, "insecureNoSSL": True,
            "userSearch": {"baseDN": "ou=people,dc=example,dc=org", "username": "uid", "idAttr": "uid",
                           "emailAttr": "mail", "nameAttr": "cn"}}},
        {"type": "oidc", "id": "oidc", "name": "Upstream OIDC", "config": {
            "issuer": f"http://{dead}/upstream", "clientID": "portico", "clientSecret": "s3cret",
            "redirectURI": f"http://127.0.0.1:{port}/dex/callback"}},
        {"type": "oauth", "id": "oauth", "name": "Upstream OAuth", "config": {
            "clientID": "portico", "clientSecret": "s3cret", "redirectURI": f"http://127.0.0.1:{port}/dex/callback",
            "authorizationURL": f"http://{dead}/authorize", "tokenURL": f"http://{dead}/token",
            "userInfoURL": f"http://{dead}/userinfo"}},
        {"type": "authproxy", "id": "proxy", "name": "Auth proxy", "config": {}},
        {"type": "saml", "id": "saml", "name": "SAML", "config": saml},
    ]
    return config


def write_yaml(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ---------------------------------------------------------------- the running server


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    issuer: str
    port: int
    log: Path
    socket: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_server(installed: Installed, make: Any, tag: str, first_port: int | None = None) -> Server:
    """`portico serve` on `first_port` or a free port, retried on another when that one was taken."""
    last = ""
    for attempt in range(3):
        port = first_port if attempt == 0 and first_port else measure.free_port()
        config = write_yaml(installed.workdir / f"{tag}-{attempt}.yaml", make(port))
        log = installed.workdir / f"{tag}-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(installed.binary), "serve", str(config)], cwd=installed.workdir,
                                    env=installed.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        server = Server(proc, f"http://127.0.0.1:{port}/dex", port, log,
                        Path(installed.env["PORTICO_ADMIN_SOCKET"]))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                discovery = httpx.get(f"{server.issuer}/.well-known/openid-configuration", timeout=2)
                if discovery.status_code == 200:
                    return server
            except httpx.TransportError:
                time.sleep(0.05)
        stop_server(server)
        last = server.tail()
        if "address already in use" not in last.lower():
            break
    pytest.fail(f"portico serve did not answer discovery:\n{last}", pytrace=False)


def stop_server(server: Server) -> int | None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
            return None
    return server.proc.returncode


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def auth_params(connector: str) -> tuple[dict[str, str], str]:
    verifier, challenge = pkce()
    return {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code",
            "scope": "openid email profile groups", "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8), "code_challenge": challenge, "code_challenge_method": "S256",
            "connector_id": connector}, verifier


def redeem(server: Server, callback_url: str, params: dict[str, str], verifier: str) -> dict[str, Any]:
    """The code at /token (client_secret_basic + PKCE); the ID token verified against /keys."""
    answer = query(callback_url)
    assert answer.get("state") == params["state"] and answer.get("code"), callback_url
    token = httpx.post(f"{server.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "authorization_code", "code": answer["code"], "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier})
    assert token.status_code == 200, token.text
    body = token.json()
    keys = KeySet.import_key_set(httpx.get(f"{server.issuer}/keys").json())
    decoded = jwt.decode(body["id_token"], keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": server.issuer}, aud={"essential": True, "value": CLIENT_ID},
        nonce={"essential": True, "value": params["nonce"]}, exp={"essential": True},
    ).validate(decoded.claims)
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    userinfo = httpx.get(f"{server.issuer}/userinfo", headers=bearer)
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == decoded.claims["sub"]
    return dict(decoded.claims)


def pty_run(installed: Installed, args: list[str], expect: str, keys: bytes,
             timeout: float = 30.0) -> tuple[int | None, str]:
    """Runs the binary on a pseudo-terminal (120x40): waits for `expect` on screen, types `keys`."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([str(installed.binary), *args], cwd=installed.workdir, env=installed.env,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    screen = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the program closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            text = re.sub(r"\x1b\[[0-9;?<>=]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b\][^\x07]*\x07", "",
                          screen.decode(errors="replace"))
            if not sent and expect in text:
                time.sleep(0.5)  # let the first refresh finish: a real operator does not type at once
                os.write(master, keys)
                sent = True
            if proc.poll() is not None and not ready:
                break
        try:
            code = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = re.sub(r"\x1b\[[0-9;?<>=]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b\][^\x07]*\x07", "",
                  screen.decode(errors="replace"))
    assert sent, f"{expect!r} never appeared on the terminal:\n{text[-3000:]}"
    return code, text


def source_modules(package_dir: Path, older_than: float) -> set[str]:
    """Dotted names of the modules under package_dir whose file existed before `older_than`."""
    names = set()
    for path in package_dir.rglob("*.py"):
        if "__pycache__" in path.parts or path.stat().st_mtime >= older_than:
            continue
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


