"""TOTP in a real browser against the real server: a user enrols (reading the secret off the page and
computing codes with pyotp, as an authenticator app would), logs in with a code, then with a recovery
code, and enrols again after an administrator reset TOTP over the real admin socket (the CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from adminutil import REPO_ROOT, Server, free_port, start_server
from e2e_support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ADMIN_USER_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    admin_password_hash,
    dex_sub,
    require,
    rp_missing,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
DRIVER = Path(__file__).resolve().parent / "totp_browser.mjs"


def config(port: int, redirect_uri: str) -> dict[str, Any]:
    return {
        "issuer": f"http://127.0.0.1:{port}/dex",
        "storage": {"type": "sqlite3", "config": {"file": "portico.db"}},
        "web": {"http": f"127.0.0.1:{port}"},
        "oauth2": {"skipApprovalScreen": True},
        "enablePasswordDB": True,
        "staticPasswords": [{"email": ADMIN_EMAIL, "hash": admin_password_hash(), "username": "admin",
                             "userID": ADMIN_USER_ID}],
        "staticClients": [{"id": CLIENT_ID, "secret": CLIENT_SECRET, "name": "Example App",
                           "redirectURIs": [redirect_uri]}],
        "mfa": {
            "authenticators": [{"id": "totp-1", "type": "TOTP", "config": {"issuer": "Portico E2E"},
                                "connectorTypes": ["local"]}],
            "defaultMFAChain": ["totp-1"],
        },
    }


class App:
    """The user's authenticator app: pyotp over the secret read off the enrolment page. It never
    offers a code for a time step it already used (the server would refuse it), waiting instead."""

    def __init__(self) -> None:
        self.totp: pyotp.TOTP | None = None
        self.used: set[int] = set()
        self.last_code = ""

    def enrol(self, secret: str) -> None:
        self.totp, self.used = pyotp.TOTP(secret), set()

    def code(self) -> str:
        assert self.totp is not None
        while True:
            now = time.time()
            step = int(now) // 30
            # Drift of one step ahead is accepted: use it rather than wait for the clock.
            for candidate in (step, step + 1):
                if candidate not in self.used and all(candidate > used for used in self.used):
                    self.used.add(candidate)
                    self.last_code = self.totp.at(candidate * 30)
                    return self.last_code
            time.sleep(30 - now % 30 + 0.2)


class Login:
    """One run of the browser driver, answered line by line."""

    def __init__(self, server: Server, redirect_uri: str, artifacts: Path) -> None:
        cfg = {"issuer": server.issuer, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
               "redirectUri": redirect_uri, "username": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
               "artifacts": str(artifacts), "timeoutMs": 150000}
        self.proc = subprocess.Popen(
            ["node", str(DRIVER)], cwd=DRIVER.parent, env={**os.environ, "TB_CONFIG": json.dumps(cfg)},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self.pages: list[dict[str, Any]] = []

    def next(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            assert self.proc.stderr is not None
            raise AssertionError(f"driver ended (exit {self.proc.returncode}): {self.proc.stderr.read()}")
        message: dict[str, Any] = json.loads(line)
        self.pages.append(message)
        return message

    def answer(self, code: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"code": code}) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    require(rp_missing() is None, rp_missing() or "")
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    running = start_server(tmp_path_factory.mktemp("totp-e2e"), lambda port: config(port, redirect_uri))
    yield running, redirect_uri
    running.stop()


def login(
    server: tuple[Server, str], tmp_path: Path, answer: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one browser login; `answer(page)` gives the code for each enrol/verify page."""
    run = Login(server[0], server[1], tmp_path / "artifacts")
    try:
        while True:
            message = run.next()
            if "result" in message:
                return message["result"], run.pages[:-1]
            if message["page"] in ("enrol", "verify"):
                run.answer(answer(message))
    finally:
        run.close()


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "appliance", *args, "--socket", str(server.socket)],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def test_enrol_code_recovery_code_and_admin_reset(server: tuple[Server, str], tmp_path: Path) -> None:
    app = App()
    sub = dex_sub(ADMIN_USER_ID, "local")

    # 1. First login: the enrolment page shows the QR code and the secret; the app reads the secret.
    def enrol(page: dict[str, Any]) -> str:
        assert page["page"] == "enrol" and page["qr_width"] > 100
        app.enrol(page["secret"])
        return app.code()

    result, pages = login(server, tmp_path, enrol)
    assert result["trail"] == ["enrol", "recovery", "callback"], result["trail"]
    assert result["csp_violations"] == []
    assert result["claims"]["sub"] == sub and result["claims"]["email"] == ADMIN_EMAIL
    codes = pages[-1]["codes"]
    assert pages[-1]["page"] == "recovery" and len(codes) == 10 and len(set(codes)) == 10
    first_secret = pages[0]["secret"]

    # 2. Another browser: a code. The code used at enrolment is tried first and refused (single use).
    tries: list[dict[str, Any]] = []

    def code(page: dict[str, Any]) -> str:
        tries.append(page)
        assert page["page"] == "verify"
        return app.last_code if len(tries) == 1 else app.code()

    result, _ = login(server, tmp_path, code)
    assert [t["error"] for t in tries] == [False, True]
    assert result["trail"] == ["verify", "verify", "callback"] and result["claims"]["sub"] == sub

    # 3. A recovery code instead of the app; the same recovery code a second time is refused.
    recovery: list[dict[str, Any]] = []

    def with_recovery(page: dict[str, Any]) -> str:
        recovery.append(page)
        return codes[3] if len(recovery) < 3 else app.code()

    result, _ = login(server, tmp_path, with_recovery)
    assert result["trail"] == ["verify", "callback"]
    result, _ = login(server, tmp_path, with_recovery)
    assert [p["error"] for p in recovery] == [False, False, True]
    assert result["trail"] == ["verify", "verify", "callback"]

    # 4. The administrator resets TOTP through the real admin socket; the list shows it before and after.
    listed = cli(server[0], "users", "list")
    assert listed.returncode == 0 and "enrolled" in listed.stdout, listed
    reset = cli(server[0], "users", "totp-reset", ADMIN_EMAIL)
    assert reset.returncode == 0, reset.stderr
    assert f"TOTP of {ADMIN_EMAIL} reset" in reset.stdout
    users = json.loads(cli(server[0], "users", "list", "--json").stdout)
    assert [u["totp"] for u in users if u["email"] == ADMIN_EMAIL] == [False]
    audit = server[0].admin().get("/v1/audit", q="totp")
    assert [(e["action"], e["target"], e["result"]) for e in audit][-1:] == [
        ("users.totp_reset", ADMIN_EMAIL, "ok")]
    assert all("secret" not in json.dumps(e) for e in audit)

    # 5. The next login enrols again, with a new secret.
    result, pages = login(server, tmp_path, enrol)
    assert result["trail"] == ["enrol", "recovery", "callback"]
    assert pages[0]["secret"] != first_secret
