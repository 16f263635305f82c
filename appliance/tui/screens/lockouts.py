"""Brute-force lockouts: locked accounts and client addresses (and, on demand, the failure counters);
clear one or all."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from appliance.tui.dialogs import ConfirmDialog
from appliance.tui.screens.base import PorticoScreen, clip, selected_key

__all__ = ["LockoutsScreen"]


def _who(row: dict[str, Any]) -> str:
    return clip(row["subject"], 32) if row["kind"] == "account" else row["subject"]


class LockoutsScreen(PorticoScreen):
    MODE = "lockouts"
    BINDINGS = [Binding("c", "clear", "Clear"), Binding("C", "clear_all", "Clear all"),
                Binding("a", "toggle_all", "Show counters"), *PorticoScreen.BINDINGS]

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, dict[str, Any]] = {}
        self._everything = False

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="detail", markup=False)
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("Kind", "Account or address", "Connector", "Failures",
                                              "Locked until (UTC)")
        super().on_mount()
        self.query_one(DataTable).focus()

    async def load(self) -> None:
        rows: list[dict[str, Any]] = await self.api.call(
            "GET", "/v1/lockouts", query={"all": "1" if self._everything else ""})
        self._rows = {r["id"]: r for r in rows}
        table = self.query_one(DataTable)
        table.clear()
        for r in rows:
            kind = "account" if r["kind"] == "account" else "address"
            table.add_row(kind, _who(r), r["connector_id"] or "-", str(r["failures"]),
                          r["locked_until"][:19].replace("T", " ") or "not locked", key=r["id"])
        locked = sum(1 for r in rows if r["locked"])
        text = f"{locked} locked" + (f", {len(rows) - locked} counting failures" if self._everything else "")
        self.query_one("#detail", Static).update(
            text + ". A lockout ends by itself; clearing it lets the account or address log in at once.")

    def action_toggle_all(self) -> None:
        self._everything = not self._everything
        self.action_refresh()

    @work
    async def action_clear(self) -> None:
        r = self._rows.get(selected_key(self.query_one(DataTable)) or "")
        if r is None:
            return
        what = f"account {r['subject']} ({r['connector_id']})" if r["kind"] == "account" else \
            f"address {r['subject']}"
        if await self.app.push_screen_wait(ConfirmDialog(f"Clear the lockout and failures of {what}?",
                                                         yes="Clear")):
            if await self.call("DELETE", f"/v1/lockouts/{quote(r['id'], safe='')}") is not None:
                self.notify(f"cleared {what}")
                self.action_refresh()

    @work
    async def action_clear_all(self) -> None:
        if not self._rows:
            self.notify("nothing to clear")
            return
        if await self.app.push_screen_wait(ConfirmDialog("Clear every lockout and failure counter?",
                                                         yes="Clear all")):
            done = await self.call("POST", "/v1/lockouts/clear", {"all": True})
            if done is not None:
                self.notify(f"cleared {len(done['cleared'])}")
                self.action_refresh()
