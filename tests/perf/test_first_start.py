"""The first start on a new state: the listeners answer discovery while the first signing key is generated;
whatever needs the key waits for it (appliance/web/public.py's KeyGate), and the server tells systemd and
the readiness probe it is ready only once the key exists."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from adminutil import free_port
from e2e.e2e_support import make_config, sqlite_storage

from appliance.clock import SystemClock
from appliance.keys.manager import KeyManager
from appliance.store.models import Keys
from appliance.web.public import KeyGate

DISCOVERY = "/dex/.well-known/openid-configuration"


class HeldKeyStore:
    """Key storage whose first read waits until the test lets it go (or fails, when told to)."""

    def __init__(self) -> None:
        self.keys = Keys()
        self.release = asyncio.Event()
        self.fail = False

    async def get_keys(self) -> Keys:
        await self.release.wait()
        if self.fail:
            raise OSError("database unreachable")
        return self.keys

    async def update_keys(self, updater: Callable[[Keys], Keys]) -> Keys:
        self.keys = updater(self.keys)
        return self.keys


def manager(store: HeldKeyStore) -> KeyManager:
    return KeyManager(store, SystemClock(), algorithm="ES256", rotation_period=timedelta(hours=6),
                      id_token_lifetime=timedelta(hours=1))


class Recorder:
    """The app behind the gate: records which paths reached it, and whether the keys were loaded then."""

    def __init__(self, keys: KeyManager) -> None:
        self.keys = keys
        self.seen: list[tuple[str, bool]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.seen.append((scope["path"], self.keys.loaded))


def http(path: str) -> dict[str, Any]:
    return {"type": "http", "path": path, "method": "GET", "headers": []}


async def test_discovery_passes_at_once_and_the_rest_waits_for_the_first_key() -> None:
    store = HeldKeyStore()
    keys = manager(store)
    app = Recorder(keys)
    gate = KeyGate(app, keys, [DISCOVERY])
    first = asyncio.create_task(keys.ensure_loaded())
    paths = ("/dex/keys", "/dex/token", "/dex/auth")
    held = [asyncio.create_task(gate(http(path), None, None)) for path in paths]
    await gate(http(DISCOVERY), None, None)
    await asyncio.sleep(0.05)
    assert app.seen == [(DISCOVERY, False)] and not any(task.done() for task in held)

    store.release.set()
    await asyncio.wait_for(asyncio.gather(first, *held), 30)
    assert sorted(app.seen[1:]) == [("/dex/auth", True), ("/dex/keys", True), ("/dex/token", True)]
    await gate(http("/dex/keys"), None, None)  # loaded: straight through
    assert app.seen[-1] == ("/dex/keys", True)


async def test_a_failed_first_load_lets_the_waiting_requests_go_on_without_keys() -> None:
    """They meet KeysNotLoaded in the app as before the gate existed (the server is stopping by then),
    rather than hanging until the shutdown gives up on them."""
    store = HeldKeyStore()
    keys = manager(store)
    app = Recorder(keys)
    gate = KeyGate(app, keys, [DISCOVERY])
    first = asyncio.create_task(keys.ensure_loaded())
    held = asyncio.create_task(gate(http("/dex/keys"), None, None))
    await asyncio.sleep(0.05)
    assert not held.done()
    store.fail = True
    store.release.set()
    with pytest.raises(OSError, match="unreachable"):
        await first
    await asyncio.wait_for(held, 5)
    assert app.seen == [("/dex/keys", False)]
    assert await keys.wait_loaded() is False


def _notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    return sock


def _datagrams(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_new_state_answers_at_once_and_is_ready_only_with_its_key(tmp_path: Path) -> None:
    """A real `portico serve` on an empty database: the first /keys asked right after the first answered
    discovery is the key the server generated (never an error), and neither READY=1 nor /healthz/ready
    comes before the log says the key was made."""
    notify = tmp_path / "notify.sock"
    receiver = _notify_socket(notify)
    port, telemetry_port = free_port(), free_port()
    config = make_config(port, ["http://127.0.0.1:5555/callback"], sqlite_storage(tmp_path / "new.db"),
                         skip_approval=True)
    config["telemetry"] = {"http": f"127.0.0.1:{telemetry_port}"}
    path = tmp_path / "first.yaml"
    path.write_text(yaml.safe_dump(config))
    issuer = str(config["issuer"]).rstrip("/")
    log = tmp_path / "first.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONUNBUFFERED": "1",
           "NOTIFY_SOCKET": str(notify)}
    command = shlex.split(os.environ.get("PORTICO_E2E_COMMAND", "")) or [sys.executable, "-m", "appliance"]
    with log.open("wb") as err:
        proc = subprocess.Popen([*command, "serve", str(path), "--admin-socket", str(tmp_path / "a.sock")],
                                cwd=tmp_path, env=env, stdout=err, stderr=subprocess.STDOUT)
    messages: list[str] = []
    try:
        with httpx.Client(timeout=10.0) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    ready = client.get(f"http://127.0.0.1:{telemetry_port}/healthz/ready").status_code
                except httpx.TransportError:
                    ready = 0
                # Ready is never said before the key exists (read the log after the probe answered).
                messages += _datagrams(receiver)
                if ready == 200 or any(m.startswith("READY=1") for m in messages):
                    assert "signing keys rotated" in log.read_text(), "ready before the signing key existed"
                try:
                    if client.get(issuer + "/.well-known/openid-configuration").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.005)
            keys = client.get(issuer + "/keys")
            assert keys.status_code == 200, keys.text
            made = re.search(r"new kid (\S+)", log.read_text())
            assert made is not None and [key["kid"] for key in keys.json()["keys"]] == [made.group(1)]
            deadline = time.monotonic() + 30
            while not any(m.startswith("READY=1") for m in messages) and time.monotonic() < deadline:
                messages += _datagrams(receiver)
                time.sleep(0.01)
            assert any(m.startswith("READY=1") for m in messages), log.read_text()[-3000:]
            assert client.get(f"http://127.0.0.1:{telemetry_port}/healthz/ready").status_code == 200
        text = log.read_text()
        assert text.index("signing keys rotated") < text.index("ready in")
    finally:
        proc.terminate()
        proc.wait(30)
        receiver.close()
