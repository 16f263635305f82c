"""Clients: list; create with a generated secret shown once; edit redirect URIs and trusted peers; delete."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from appliance.tui.dialogs import ConfirmDialog, FormDialog, FormField, MessageDialog
from appliance.tui.screens.base import PorticoScreen, clip, selected_key

__all__ = ["ClientsScreen"]


class ClientsScreen(PorticoScreen):
    MODE = "clients"
    BINDINGS = [Binding("n", "new", "New"), Binding("e", "edit", "Edit"), Binding("d", "delete", "Delete"),
                *PorticoScreen.BINDINGS]

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="detail", markup=False)
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("ID", "Name", "From", "Redirect URIs")
        super().on_mount()

    async def load(self) -> None:
        clients: list[dict[str, Any]] = await self.api.call("GET", "/v1/clients")
        self._rows = {c["id"]: c for c in clients}
        table = self.query_one(DataTable)
        keep = selected_key(table)
        table.clear()
        for c in clients:
            source = "config (read-only)" if c["read_only"] else "storage"
            uris = clip(", ".join(c["redirect_uris"]) or "-", 34)
            table.add_row(c["id"], c["name"] or "-", source, uris, key=c["id"])
        if keep in self._rows:
            table.move_cursor(row=table.get_row_index(keep))
        self._show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        key = selected_key(self.query_one(DataTable))
        c = self._rows.get(key or "")
        text = "" if c is None else (
            f"{c['id']}: {'public' if c['public'] else 'confidential'}; trusted peers: "
            f"{', '.join(c['trusted_peers']) or 'none'}"
            + ("; from the config file: edit config.yaml to change it" if c["read_only"] else ""))
        self.query_one("#detail", Static).update(text)

    @work
    async def action_new(self) -> None:
        form = await self.app.push_screen_wait(FormDialog("New client", [
            FormField("id", "Client ID (empty: generated)", placeholder="kubernetes"),
            FormField("name", "Name", placeholder="Kubernetes"),
            FormField("redirect_uris", "Redirect URIs (comma separated)", kind="list",
                      placeholder="http://localhost:8000"),
            FormField("trusted_peers", "Trusted peers (comma separated)", kind="list"),
            FormField("public", "Public client (no secret)", kind="bool"),
        ], submit="Create"))
        if form is None:
            return
        created = await self.call("POST", "/v1/clients", form)
        if created is None:
            return
        secret = created.get("secret") or ""
        text = (f"Client ID: {created['id']}\nSecret:    {secret}\n\n"
                "Copy the secret now: it is not shown again."
                if secret else f"Client ID: {created['id']}\nPublic client: no secret.")
        await self.app.push_screen_wait(MessageDialog("Client created", text))
        self.action_refresh()

    @work
    async def action_edit(self) -> None:
        c = self._rows.get(selected_key(self.query_one(DataTable)) or "")
        if c is None:
            return
        if c["read_only"]:
            self.notify(f"{c['id']} comes from the config file: edit config.yaml", severity="warning")
            return
        form = await self.app.push_screen_wait(FormDialog(f"Edit client {c['id']}", [
            FormField("name", "Name", c["name"]),
            FormField("redirect_uris", "Redirect URIs (comma separated)", ", ".join(c["redirect_uris"]),
                      "list"),
            FormField("trusted_peers", "Trusted peers (comma separated)", ", ".join(c["trusted_peers"]),
                      "list"),
        ]))
        if form is not None and await self.call("PATCH", f"/v1/clients/{c['id']}", form) is not None:
            self.notify(f"client {c['id']} saved")
            self.action_refresh()

    @work
    async def action_delete(self) -> None:
        c = self._rows.get(selected_key(self.query_one(DataTable)) or "")
        if c is None:
            return
        if c["read_only"]:
            self.notify(f"{c['id']} comes from the config file: remove it there", severity="warning")
            return
        if await self.app.push_screen_wait(ConfirmDialog(f"Delete client {c['id']}?")):
            if await self.call("DELETE", f"/v1/clients/{c['id']}") is not None:
                self.notify(f"client {c['id']} deleted")
                self.action_refresh()
