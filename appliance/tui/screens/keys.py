"""Signing keys: the current key, its age and next rotation, verification keys; rotate now."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from appliance.tui.dialogs import ConfirmDialog
from appliance.tui.screens.base import PorticoScreen
from appliance.tui.screens.overview import duration

__all__ = ["KeysScreen"]


class KeysScreen(PorticoScreen):
    MODE = "keys"
    BINDINGS = [Binding("R", "rotate", "Rotate now"), *PorticoScreen.BINDINGS]

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield Static("", id="info", markup=False)
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("Key ID", "Use", "Until")
        super().on_mount()

    async def load(self) -> None:
        k: dict[str, Any] = await self.api.call("GET", "/v1/keys")
        self.query_one("#info", Static).update(
            f"Algorithm {k['algorithm']}; current key age {duration(k['age_s'])}; next rotation "
            f"{k['next_rotation'][:19].replace('T', ' ')} (in {duration(k['next_rotation_in_s'])})")
        table = self.query_one(DataTable)
        table.clear()
        table.add_row(k["current_kid"], "signing (current)", k["next_rotation"][:19].replace("T", " "),
                      key=k["current_kid"])
        for v in k["verification_keys"]:
            table.add_row(v["kid"], "verification only", v["expiry"][:19].replace("T", " "), key=v["kid"])

    @work
    async def action_rotate(self) -> None:
        question = ("Rotate the signing key now? Tokens signed with the current key stay valid until they "
                    "expire.")
        if await self.app.push_screen_wait(ConfirmDialog(question, yes="Rotate")):
            done = await self.call("POST", "/v1/keys/rotate")
            if done is not None:
                self.notify(f"new signing key {done['current_kid']}")
                self.action_refresh()
