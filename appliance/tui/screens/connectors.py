"""Connectors: list with health, a real test, and stored connectors created and edited with a form built
from each type's config schema (validated and tested by the server before it saves them)."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from appliance.tui.connectorform import ConnectorForm
from appliance.tui.dialogs import ConfirmDialog, FormDialog, FormField, MessageDialog
from appliance.tui.screens.base import PorticoScreen, clip, selected_key

__all__ = ["ConnectorsScreen"]


class ConnectorsScreen(PorticoScreen):
    MODE = "connectors"
    BINDINGS = [Binding("t", "test", "Test"), Binding("n", "new", "New"), Binding("e", "edit", "Edit"),
                Binding("d", "delete", "Delete"), *PorticoScreen.BINDINGS]

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="detail", markup=False)
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("ID", "Type", "Name", "From", "Health", "Last test")
        super().on_mount()

    async def load(self) -> None:
        items: list[dict[str, Any]] = await self.api.call("GET", "/v1/connectors")
        self._rows = {c["id"]: c for c in items}
        table = self.query_one(DataTable)
        table.clear()
        for c in items:
            health = clip(c["state"] + (f": {c['message']}" if c["message"] else ""), 18)
            table.add_row(c["id"], c["type"], clip(c["name"], 16), c["source"], health,
                          clip(c["test_result"] or "-", 14), key=c["id"])
        self._detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def _detail(self) -> None:
        c = self._rows.get(selected_key(self.query_one(DataTable)) or "")
        text = ""
        if c is not None:
            text = (f"{c['id']} ({c['type']}) from {c['source']}"
                    + ("; read-only here: edit config.yaml" if c["read_only"] else "; stored: e to edit")
                    + (f"\nlast test {c['tested_at']}: {c['test_result']}" if c["tested_at"] else ""))
        self.query_one("#detail", Static).update(text)

    def _selected(self) -> dict[str, Any] | None:
        return self._rows.get(selected_key(self.query_one(DataTable)) or "")

    @work
    async def action_test(self) -> None:
        c = self._selected()
        if c is None:
            return
        creds = await self.app.push_screen_wait(FormDialog(f"Test {c['id']}", [
            FormField("username", "Test username (optional: a password login)"),
            FormField("password", "Test password", kind="secret")], submit="Test"))
        if creds is None:
            return
        self.notify(f"testing {c['id']}…", timeout=3)
        result = await self.call("POST", f"/v1/connectors/{c['id']}/test", creds)
        if result is not None:
            self.notify(result["message"], title="Test passed" if result["ok"] else "Test FAILED",
                        severity="information" if result["ok"] else "error", timeout=10)
            self.action_refresh()

    @work
    async def action_new(self) -> None:
        schemas = await self.call("GET", "/v1/connector-types")
        if schemas is None:
            return
        saved = await self.app.push_screen_wait(ConnectorForm(self.api, schemas))
        if saved is not None:
            await self.app.push_screen_wait(MessageDialog(f"Connector {saved['id']} saved", saved["message"]))
            self.action_refresh()

    @work
    async def action_edit(self) -> None:
        c = self._selected()
        if c is None:
            return
        if c["read_only"]:
            self.notify(f"{c['id']} is not stored in the database: edit config.yaml", severity="warning")
            return
        schemas = await self.call("GET", "/v1/connector-types")
        if schemas is None:
            return
        saved = await self.app.push_screen_wait(ConnectorForm(self.api, schemas, connector=c))
        if saved is not None:
            self.notify(f"{c['id']} tested and saved: {saved['message']}")
            self.action_refresh()

    @work
    async def action_delete(self) -> None:
        c = self._selected()
        if c is None:
            return
        if c["read_only"]:
            self.notify(f"{c['id']} is not stored in the database: remove it from config.yaml",
                        severity="warning")
            return
        if await self.app.push_screen_wait(ConfirmDialog(f"Delete connector {c['id']}?")):
            if await self.call("DELETE", f"/v1/connectors/{c['id']}") is not None:
                self.notify(f"{c['id']} deleted")
                self.action_refresh()
