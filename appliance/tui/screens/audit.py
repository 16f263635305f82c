"""The audit log: a live tail (the server holds each call until an event comes) with a filter."""

from __future__ import annotations

import asyncio
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from appliance.tui.data import AdminAPIError, AdminUnavailable
from appliance.tui.screens.base import PorticoScreen, clip

__all__ = ["FOLLOW_GROUP", "AuditScreen"]

WAIT_S = 10.0  # how long the server may hold one tail call when nothing happens (a long poll)
RETRY_S = 2.0  # the pause after a call that failed, or that came back at once with nothing
FOLLOW_GROUP = "follow"  # the worker group of the tail: it runs for as long as the screen exists


class AuditScreen(PorticoScreen):
    MODE = "audit"
    BINDINGS = [Binding("slash", "focus_filter", "Filter"), *PorticoScreen.BINDINGS]

    def __init__(self) -> None:
        super().__init__()
        self._last = ""
        self._query = ""
        # Bumped by every reload: an answer to a call made before it (an older filter) is dropped.
        self._generation = 0
        self._loaded = False

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield Input(placeholder="filter: words in action, target, result, uid=N (enter; empty: all)",
                    id="filter", classes="filter", compact=True)
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="detail", markup=False)
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("Time (UTC)", "uid:pid", "Action", "Target", "Result")
        super().on_mount()
        self.query_one(DataTable).focus()

    async def load(self) -> None:
        self._generation += 1
        generation = self._generation
        events: list[dict[str, Any]] = await self.api.call(
            "GET", "/v1/audit", query={"q": self._query, "limit": 500})
        if generation != self._generation:
            return
        self._last = ""
        self.query_one(DataTable).clear()
        self._add(events)
        self._loaded = True
        self._follow()  # restarted: a call still waiting with the old filter is cancelled

    @work(exclusive=True, group=FOLLOW_GROUP)
    async def _follow(self) -> None:
        """The live tail: new events appear as they are written, without a key press."""
        loop = asyncio.get_running_loop()
        while True:
            if not (self.is_current and self._loaded):
                await asyncio.sleep(0.2)
                continue
            generation, began = self._generation, loop.time()
            try:
                events: list[dict[str, Any]] = await self.api.call("GET", "/v1/audit", query={
                    "after": self._last, "q": self._query, "limit": 500, "wait": WAIT_S})
            except (AdminUnavailable, AdminAPIError):
                await asyncio.sleep(RETRY_S)  # the screen's refresh shows why; the tail tries again
                continue
            if generation == self._generation:
                self._add(events)
            if not events and loop.time() - began < RETRY_S / 2:
                await asyncio.sleep(RETRY_S)  # a server that does not hold calls: poll, do not spin

    def _add(self, events: list[dict[str, Any]]) -> None:
        table = self.query_one(DataTable)
        at_end = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        for e in events:
            if e["id"] in table.rows:
                continue
            table.add_row(e["time"][5:19].replace("T", " "), f"{e['uid']}:{e['pid']}", e["action"],
                          clip(e["target"] or "-", 20), clip(e["result"], 14), key=e["id"])
            self._last = e["id"]
        if events and at_end:  # follow the tail unless the cursor was moved up to read
            table.move_cursor(row=table.row_count - 1)
        shown = f"filter {self._query!r}: " if self._query else ""
        self.query_one("#detail", Static).update(f"{shown}{table.row_count} events; new ones appear as "
                                                 "they are written")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._query = event.value.strip()
        self.action_refresh()
        self.query_one(DataTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()
