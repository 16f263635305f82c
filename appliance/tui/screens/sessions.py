"""Sessions and refresh tokens: filter by user, revoke one or all of a user's."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from appliance.tui.dialogs import ConfirmDialog
from appliance.tui.screens.base import PorticoScreen, selected_key

__all__ = ["SessionsScreen"]


class SessionsScreen(PorticoScreen):
    MODE = "sessions"
    BINDINGS = [Binding("x", "revoke", "Revoke"), Binding("X", "revoke_all", "Revoke all of user"),
                Binding("slash", "focus_filter", "Filter"), *PorticoScreen.BINDINGS]

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield Input(placeholder="user id, email or username (enter to filter)", id="filter", classes="filter",
                    compact=True)
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="detail", markup=False)
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("Token", "User", "Client", "Connector", "Last used")
        super().on_mount()
        self.query_one(DataTable).focus()

    async def load(self) -> None:
        user = self.query_one("#filter", Input).value.strip()
        data: dict[str, Any] = await self.api.call("GET", "/v1/sessions", query={"user": user})
        tokens = data["refresh_tokens"]
        self._rows = {t["id"]: t for t in tokens}
        table = self.query_one(DataTable)
        table.clear()
        for t in tokens:
            table.add_row(t["id"][:14], t["email"] or t["username"] or t["user_id"], t["client_id"],
                          t["connector_id"], t["last_used"][:19].replace("T", " "), key=t["id"])
        self.query_one("#detail", Static).update(
            f"{len(tokens)} refresh token(s) in {len(data['offline_sessions'])} offline session(s)"
            + (f" for {user!r}" if user else ""))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_refresh()
        self.query_one(DataTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    @work
    async def action_revoke(self) -> None:
        t = self._rows.get(selected_key(self.query_one(DataTable)) or "")
        if t is None:
            return
        question = f"Revoke the refresh token of {t['email'] or t['user_id']} for {t['client_id']}?"
        if await self.app.push_screen_wait(ConfirmDialog(question, yes="Revoke")):
            if await self.call("DELETE", f"/v1/sessions/{t['id']}") is not None:
                self.notify("revoked")
                self.action_refresh()

    @work
    async def action_revoke_all(self) -> None:
        t = self._rows.get(selected_key(self.query_one(DataTable)) or "")
        user = self.query_one("#filter", Input).value.strip() or (t["user_id"] if t else "")
        if not user:
            self.notify("type a user in the filter, or select one of their tokens", severity="warning")
            return
        if await self.app.push_screen_wait(ConfirmDialog(f"Revoke every refresh token of {user}?",
                                                         yes="Revoke all")):
            done = await self.call("POST", "/v1/sessions/revoke", {"user": user})
            if done is not None:
                self.notify(f"revoked {len(done['revoked'])} token(s)")
                self.action_refresh()
