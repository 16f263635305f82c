"""The console's TOTP column and reset action (users screen), driven by Pilot against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from adminutil import Server, base_config, start_server
from textual.widgets import DataTable

from appliance.admin.client import AdminClient
from appliance.errors import NotFound
from appliance.store.models import TOTPSecret, UserMFA, mfa_key
from appliance.store.sqlite import open_sqlite
from appliance.tui.app import PorticoApp
from appliance.tui.data import SocketApi

pytestmark = pytest.mark.timeout(120)
SIZE = (100, 24)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    def config(port: int) -> dict[str, Any]:
        return base_config(port, mfa={"authenticators": [{"id": "totp", "type": "TOTP"}],
                                      "defaultMFAChain": ["totp"]})

    running = start_server(tmp_path_factory.mktemp("tui-totp"), config)
    yield running
    running.stop()


async def settle(pilot: Any, limit_s: float = 20.0) -> None:
    from test_console_pilot import settle as settle_console

    await settle_console(pilot, limit_s)


def rows(app: PorticoApp) -> dict[str, list[str]]:
    table = app.screen.query_one(DataTable)
    cells = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
    return {row[0]: row for row in cells}


async def enrolled_in_storage(db: Path, user_id: str, confirmed: bool = True) -> None:
    storage = await open_sqlite(str(db))
    try:
        await storage.user_mfa.create(UserMFA(user_id=user_id, connector_id="local", totp={
            "totp": TOTPSecret(secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", created_at=datetime.now(UTC),
                               confirmed=confirmed)}))
    finally:
        await storage.close()


async def stored(db: Path, user_id: str) -> UserMFA | None:
    storage = await open_sqlite(str(db))
    try:
        return await storage.user_mfa.get(mfa_key(user_id, "local"))
    except NotFound:
        return None
    finally:
        await storage.close()


async def test_users_show_totp_and_reset_it(server: Server) -> None:
    admin = server.admin()
    jane = await asyncio.to_thread(admin.post, "/v1/users", {"email": "jane@example.com", "password": "pw"})
    bob = await asyncio.to_thread(admin.post, "/v1/users", {"email": "bob@example.com", "password": "pw"})
    db = server.workdir / "portico.db"
    await enrolled_in_storage(db, jane["user_id"])
    await enrolled_in_storage(db, bob["user_id"], confirmed=False)  # started, never confirmed

    app = PorticoApp(SocketApi(AdminClient(str(server.socket))), start="users")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = rows(app)
        assert shown["jane@example.com"][-1] == "TOTP"
        assert shown["bob@example.com"][-1] == "-"
        assert "Reset 2FA" in str(app.screen.active_bindings.get("t").binding.description)  # type: ignore[union-attr]

        table = app.screen.query_one(DataTable)
        table.move_cursor(row=table.get_row_index("jane@example.com"))
        await pilot.press("t")
        await settle(pilot)
        await pilot.press("escape")  # cancelled: nothing happens
        await settle(pilot)
        assert await stored(db, jane["user_id"]) is not None
        # Closing a dialog reloads the table (the cursor goes back to the top): choose the row again.
        table = app.screen.query_one(DataTable)
        table.move_cursor(row=table.get_row_index("jane@example.com"))
        await pilot.press("t")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert rows(app)["jane@example.com"][-1] == "-", [n.message for n in app._notifications]
        assert any("TOTP of jane@example.com reset" in n.message for n in app._notifications)

    assert await stored(db, jane["user_id"]) is None
    assert await stored(db, bob["user_id"]) is not None  # only the one chosen
    audit = await asyncio.to_thread(admin.get, "/v1/audit", q="totp_reset")
    assert [(e["action"], e["target"], e["result"]) for e in audit] == [
        ("users.totp_reset", "jane@example.com", "ok")]
