"""A real `portico serve` process with its admin socket, for the reload, admin API and console tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from appliance.admin.client import AdminClient

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_config(port: int, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "issuer": f"http://127.0.0.1:{port}/dex",
        "storage": {"type": "sqlite3", "config": {"file": "portico.db"}},
        "web": {"http": f"127.0.0.1:{port}"},
        "enablePasswordDB": True,
        "staticClients": [{"id": "app", "name": "App", "secret": "app-secret",
                           "redirectURIs": ["http://127.0.0.1:5555/callback"]}],
    }
    config.update(extra)
    return config


def client_entry(client_id: str, secret: str = "s3cret") -> dict[str, Any]:
    return {"id": client_id, "name": client_id, "secret": secret,
            "redirectURIs": ["http://127.0.0.1:5555/callback"]}


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    config_path: Path
    socket: Path
    stderr_path: Path

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/dex"

    def admin(self) -> AdminClient:
        return AdminClient(str(self.socket), timeout=30.0)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def write_config(self, config: dict[str, Any] | str, path: Path | None = None) -> None:
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        (path or self.config_path).write_text(text)

    def token_error(self, client_id: str, secret: str) -> str:
        """The token endpoint's `error` for a bogus code: invalid_client when the client is unknown,
        invalid_grant (or similar) when it is known: tells which clients the live config has."""
        response = httpx.post(f"{self.issuer}/token", data={"grant_type": "authorization_code",
                              "code": "nope", "redirect_uri": "http://127.0.0.1:5555/callback"},
                              auth=(client_id, secret), timeout=10)
        return str(response.json().get("error", ""))

    def history(self) -> list[dict[str, Any]]:
        return list(self.admin().get("/v1/config")["history"])

    def stop(self) -> int:
        shutil.rmtree(self.socket.parent, ignore_errors=True)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def start_server(workdir: Path, make_config: Callable[[int], dict[str, Any]] | None = None, *,
                 config_path: Path | None = None, write: bool = True, args: tuple[str, ...] = (),
                 attempts: int = 3, socket: Path | None = None, socket_flag: bool = True) -> Server:
    """Start `portico serve` in `workdir` with its admin socket there; waits for /healthz and the socket.

    `socket`: where the socket is expected (the config's admin.socket, $PORTICO_ADMIN_SOCKET); with
    `socket_flag` False, no --admin-socket is passed, so the server finds the path itself."""
    last = ""
    for attempt in range(attempts):
        port = free_port()
        path = config_path or workdir / "config.yaml"
        if write:
            path.write_text(yaml.safe_dump((make_config or base_config)(port), sort_keys=False))
        else:  # the caller wrote the file with a placeholder port
            path.write_text(path.read_text().replace("PORT", str(port)))
        # A short path of its own: AF_UNIX paths are limited to 107 bytes, and the permission tests
        # need a folder that other users may enter.
        sock = socket or Path(tempfile.mkdtemp(prefix="portico-", dir="/tmp")) / "admin.sock"
        if socket is None:
            sock.parent.chmod(0o755)
        err = workdir / f"stderr-{attempt}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        with err.open("wb") as err_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "appliance", "serve", str(path),
                 *(("--admin-socket", str(sock)) if socket_flag else ()), *args],
                cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_file)
        server = Server(proc, port, workdir, path, sock, err)
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                if httpx.get(f"{server.issuer}/healthz", timeout=2).status_code == 200 and sock.exists():
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        server.stop()
        last = server.stderr()
        if "address already in use" not in last.lower():
            break
    raise AssertionError(f"portico serve did not become ready:\n{last[-3000:]}")
