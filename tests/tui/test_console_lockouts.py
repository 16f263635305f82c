"""The console's lockouts screen: Pilot against a real server (lock an account, see it, clear it, find
the clear in the audit log), and a snapshot from fixed answers."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import bcrypt
import httpx
import pytest
from adminutil import Server, base_config, start_server
from textual.pilot import Pilot
from tuiutil import SIZE, console, notes, rows, select_row, settle

from appliance.tui.app import PorticoApp

pytestmark = pytest.mark.timeout(120)

AT = "2026-03-01T09:30:00+00:00"
ANSWERS: dict[str, list[dict[str, Any]]] = {
    "locked": [
        {"id": "account:ldap:jdoe", "kind": "account", "connector_id": "ldap", "subject": "jdoe",
         "failures": 10, "locked": True, "locked_until": "2026-03-01T09:45:00+00:00", "window_start": AT,
         "last_attempt": AT, "lockouts": 1},
        {"id": "ip:203.0.113.7", "kind": "ip", "connector_id": "", "subject": "203.0.113.7", "failures": 100,
         "locked": True, "locked_until": "2026-03-01T09:41:12+00:00", "window_start": AT, "last_attempt": AT,
         "lockouts": 2},
    ],
    "counters": [
        {"id": "account:local:jane@example.com", "kind": "account", "connector_id": "local",
         "subject": "jane@example.com", "failures": 2, "locked": False, "locked_until": "",
         "window_start": AT, "last_attempt": AT, "lockouts": 0},
    ],
}


class LockoutsApi:
    """Fixed answers for the lockouts screen (with ?all=1, the counters too)."""

    @property
    def where(self) -> str:
        return "/run/portico/admin.sock"

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   query: dict[str, Any] | None = None) -> Any:
        assert (method, path) == ("GET", "/v1/lockouts"), (method, path)
        everything = (query or {}).get("all") == "1"
        return copy.deepcopy(ANSWERS["locked"] + (ANSWERS["counters"] if everything else []))


def test_lockouts_screen(snap_compare: Any) -> None:
    async def loaded(pilot: Pilot[Any]) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(PorticoApp(LockoutsApi(), start="lockouts"), terminal_size=SIZE, run_before=loaded)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    password_hash = bcrypt.hashpw(b"right password", bcrypt.gensalt(rounds=10)).decode()

    def config(port: int) -> dict[str, Any]:
        return base_config(
            port, oauth2={"passwordConnector": "local"},
            staticPasswords=[{"email": "pilot@example.com", "hash": password_hash, "username": "pilot",
                              "userID": "pilot-id"}],
            security={"bruteForce": {"account": {"maxFailures": 2},
                                     "delay": {"initial": "10ms", "max": "20ms"}}})

    running = start_server(tmp_path_factory.mktemp("tui-lockouts"), config)
    yield running
    running.stop()


def grant(server: Server, password: str) -> int:
    return httpx.post(f"{server.issuer}/token", auth=("app", "app-secret"), timeout=30, data={
        "grant_type": "password", "username": "pilot@example.com", "password": password,
        "scope": "openid"}).status_code


async def test_see_and_clear_a_lockout(server: Server) -> None:
    for _ in range(2):
        assert await asyncio.to_thread(grant, server, "wrong") == 401
    assert await asyncio.to_thread(grant, server, "right password") == 401  # locked
    app = console(server, "lockouts")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = rows(app)
        assert [r[:4] for r in table] == [["account", "pilot@example.com", "local", "2"]]
        assert table[0][4] != "not locked"
        await pilot.press("a")  # the counters too: the address has one failure per attempt
        await settle(pilot)
        assert ["address", "127.0.0.1", "-", "2", "not locked"] in rows(app)
        select_row(app, "account:local:pilot@example.com")
        await pilot.press("c", "y")
        await settle(pilot)
        assert any(n.startswith("cleared account pilot@example.com") for n in notes(app))
        assert all(r[1] != "pilot@example.com" for r in rows(app))
    assert await asyncio.to_thread(grant, server, "right password") == 200
    audit = await asyncio.to_thread(server.admin().get, "/v1/audit", q="lockouts")
    actions = [(e["action"], e["target"]) for e in audit]
    assert ("lockouts.start", "account:local:pilot@example.com") in actions
    assert ("lockouts.clear", "account:local:pilot@example.com") in actions
