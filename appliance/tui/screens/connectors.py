"""Connectors: list with health, a real test, and stored connectors created and edited with a form per
type (validated and tested by the server before it saves them)."""

from __future__ import annotations

import json
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from appliance.tui.dialogs import ConfirmDialog, FormDialog, FormField, MessageDialog
from appliance.tui.screens.base import PorticoScreen, clip, selected_key

__all__ = ["ConnectorsScreen", "flatten"]


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


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

    async def _config_form(self, title: str, type_: str, current: dict[str, Any]) -> dict[str, Any] | None:
        forms: dict[str, Any] = await self.api.call("GET", "/v1/connector-types")
        spec = forms.get(type_)
        flat = flatten(current)
        if spec is None:  # a type without a form: its config as JSON
            form = await self.app.push_screen_wait(FormDialog(title, [
                FormField("config", "Config (JSON object)", json.dumps(current))]))
            if form is None:
                return None
            try:
                parsed = json.loads(form["config"] or "{}")
            except json.JSONDecodeError as exc:
                self.notify(f"not JSON: {exc}", severity="error")
                return None
            return parsed if isinstance(parsed, dict) else None
        fields = []
        for f in spec:
            value = flat.get(f["name"], "")
            if f["kind"] == "secret":
                value = ""  # never shown; left empty it stays as stored
            elif f["kind"] == "bool":
                value = "true" if value is True else ""
            elif isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            label = f["label"] + (" *" if f["required"] else "")
            fields.append(FormField(f["name"], label, str(value), f["kind"], f["placeholder"]))
        return await self.app.push_screen_wait(FormDialog(title, fields, submit="Test and save"))

    @work
    async def action_new(self) -> None:
        forms: dict[str, Any] = await self.api.call("GET", "/v1/connector-types")
        first = await self.app.push_screen_wait(FormDialog("New connector", [
            FormField("id", "ID", placeholder="corp-ldap"),
            FormField("type", f"Type ({', '.join(forms)})", placeholder=next(iter(forms), "")),
            FormField("name", "Name shown on the login page", placeholder="Corporate LDAP"),
        ], submit="Next"))
        if first is None:
            return
        if first["type"] not in forms:
            self.notify(f"unknown type {first['type']!r}", severity="error")
            return
        config = await self._config_form(f"{first['type']} settings for {first['id']}", first["type"], {})
        if config is None:
            return
        created = await self.call("POST", "/v1/connectors", {**first, "config": config})
        if created is not None:
            await self.app.push_screen_wait(MessageDialog("Connector saved", created["message"]))
            self.action_refresh()

    @work
    async def action_edit(self) -> None:
        c = self._selected()
        if c is None:
            return
        if c["read_only"]:
            self.notify(f"{c['id']} is not stored in the database: edit config.yaml", severity="warning")
            return
        config = await self._config_form(f"Edit {c['id']} ({c['type']})", c["type"], c.get("config") or {})
        if config is None:
            return
        if await self.call("PATCH", f"/v1/connectors/{c['id']}", {"config": config}) is not None:
            self.notify(f"{c['id']} tested and saved")
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
