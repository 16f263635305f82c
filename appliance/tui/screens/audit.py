"""The audit log: a live tail (polled every two seconds) with a filter."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input

from appliance.tui.screens.base import PorticoScreen, clip

__all__ = ["AuditScreen"]

POLL_S = 2.0


class AuditScreen(PorticoScreen):
    MODE = "audit"
    BINDINGS = [Binding("slash", "focus_filter", "Filter"), *PorticoScreen.BINDINGS]

    def __init__(self) -> None:
        super().__init__()
        self._last = ""
        self._query = ""

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield Input(placeholder="filter: words in action, target, result, uid=N (enter)", id="filter",
                    classes="filter", compact=True)
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("Time (UTC)", "uid:pid", "Action", "Target", "Result")
        super().on_mount()
        self.set_interval(POLL_S, self._poll)
        self.query_one(DataTable).focus()

    async def load(self) -> None:
        self._last = ""
        self.query_one(DataTable).clear()
        await self._append()

    def _poll(self) -> None:
        if self.is_current:
            self._tail()

    @work(exclusive=True, group="tail")
    async def _tail(self) -> None:
        await self._append()

    async def _append(self) -> None:
        events: list[dict[str, Any]] = await self.api.call(
            "GET", "/v1/audit", query={"after": self._last, "q": self._query, "limit": 500})
        table = self.query_one(DataTable)
        for e in events:
            if e["id"] in table.rows:
                continue
            table.add_row(e["time"][5:19].replace("T", " "), f"{e['uid']}:{e['pid']}", e["action"],
                          clip(e["target"] or "-", 20), clip(e["result"], 14), key=e["id"])
            self._last = e["id"]
        if events:
            table.move_cursor(row=table.row_count - 1)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._query = event.value.strip()
        self.action_refresh()
        self.query_one(DataTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()
