"""Users of the local password database: create, reset password, set groups, reset TOTP, delete."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from appliance.tui.dialogs import ConfirmDialog, FormDialog, FormField
from appliance.tui.screens.base import PorticoScreen, selected_key

__all__ = ["UsersScreen"]


def _path(email: str, *rest: str) -> str:
    return "/".join([f"/v1/users/{quote(email, safe='@')}", *rest])


class UsersScreen(PorticoScreen):
    MODE = "users"
    BINDINGS = [Binding("n", "new", "New"), Binding("p", "password", "Password"),
                Binding("g", "groups", "Groups"), Binding("t", "totp_reset", "Reset 2FA"),
                Binding("d", "delete", "Delete"), *PorticoScreen.BINDINGS]
    PALETTE_HINT = False

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Static("Local password database (enablePasswordDB). Users from the config file are read-only.",
                     id="detail", markup=False)
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("Email", "Username", "Groups", "From", "2FA")
        super().on_mount()

    async def load(self) -> None:
        users: list[dict[str, Any]] = await self.api.call("GET", "/v1/users")
        self._rows = {u["email"]: u for u in users}
        table = self.query_one(DataTable)
        table.clear()
        for u in users:
            table.add_row(u["email"], u["username"] or "-", ", ".join(u["groups"]) or "-",
                          "config (read-only)" if u["read_only"] else "storage",
                          "TOTP" if u.get("totp") else "-", key=u["email"])

    def _selected(self, verb: str) -> dict[str, Any] | None:
        u = self._rows.get(selected_key(self.query_one(DataTable)) or "")
        if u is not None and u["read_only"]:
            self.notify(f"{u['email']} comes from the config file (staticPasswords): {verb} it there",
                        severity="warning")
            return None
        return u

    @work
    async def action_new(self) -> None:
        form = await self.app.push_screen_wait(FormDialog("New user", [
            FormField("email", "Email", placeholder="jane@example.com"),
            FormField("username", "Username", placeholder="jane"),
            FormField("password", "Password", kind="secret"),
            FormField("groups", "Groups (comma separated)", kind="list", placeholder="developers"),
        ], submit="Create"))
        if form is not None and await self.call("POST", "/v1/users", form) is not None:
            self.notify(f"user {form['email']} created")
            self.action_refresh()

    @work
    async def action_password(self) -> None:
        u = self._selected("change")
        if u is None:
            return
        form = await self.app.push_screen_wait(FormDialog(f"New password for {u['email']}", [
            FormField("password", "Password", kind="secret")]))
        if form is not None and await self.call("POST", _path(u["email"], "password"), form) is not None:
            self.notify(f"password of {u['email']} changed")

    @work
    async def action_groups(self) -> None:
        u = self._selected("change")
        if u is None:
            return
        form = await self.app.push_screen_wait(FormDialog(f"Groups of {u['email']}", [
            FormField("groups", "Groups (comma separated)", ", ".join(u["groups"]), "list")]))
        if form is not None and await self.call("PATCH", _path(u["email"]), form) is not None:
            self.action_refresh()

    @work
    async def action_totp_reset(self) -> None:
        # Users from the config file too: their second factor lives in storage, not in the file.
        u = self._rows.get(selected_key(self.query_one(DataTable)) or "")
        if u is None:
            return
        if not await self.app.push_screen_wait(ConfirmDialog(
                f"Reset two-factor authentication of {u['email']}? They set it up again at their next login.",
                yes="Reset")):
            return
        result = await self.call("POST", _path(u["email"], "totp", "reset"))
        if result is not None:
            self.notify(f"TOTP of {u['email']} reset" if result["reset"]
                        else f"{u['email']} had no TOTP to reset")
            self.action_refresh()

    @work
    async def action_delete(self) -> None:
        u = self._selected("remove")
        if u is None:
            return
        if await self.app.push_screen_wait(ConfirmDialog(f"Delete user {u['email']}?")):
            if await self.call("DELETE", _path(u["email"])) is not None:
                self.notify(f"user {u['email']} deleted")
                self.action_refresh()
