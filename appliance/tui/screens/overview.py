"""The overview: issuer, version, uptime, storage, listeners, connectors, keys, reloads, activity."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from appliance.tui.screens.base import PorticoScreen, clip

__all__ = ["OverviewScreen", "duration"]


def duration(seconds: float | int | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    sign = "-" if s < 0 else ""
    s = abs(s)
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{sign}{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{sign}{s // 86400}d{s % 86400 // 3600:02d}h"


class OverviewScreen(PorticoScreen):
    MODE = "overview"

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield Static("", id="summary")
        yield DataTable(id="connectors", cursor_type="row", zebra_stripes=True)
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Connector", "Type", "Source", "Health", "Last test")
        super().on_mount()
        self.set_interval(10, self.action_refresh)

    async def load(self) -> None:
        data: dict[str, Any] = await self.api.call("GET", "/v1/overview")
        self.query_one("#summary", Static).update(_summary(data))
        table = self.query_one(DataTable)
        table.clear()
        for c in data["connectors"]:
            health = (Text("open", style="green") if c["state"] == "open"
                      else Text(clip(f"{c['state']} {c['message']}", 24), style="red"))
            table.add_row(c["id"], c["type"], c["source"], health, clip(c["test_result"] or "-", 24),
                          key=c["id"])


def _summary(data: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    keys = data["keys"]
    last = data["config"]["last_reload"] or {}
    result = last.get("result", "-")
    colour = {"applied": "green", "unchanged": "green", "rejected": "red"}.get(result, "white")
    restart = last.get("restart_required") or []
    grid.add_row("Issuer", f"{data['issuer']}  [dim](portico {data['version']}, up "
                 f"{duration(data['uptime_s'])})[/]")
    grid.add_row("Storage", f"{data['storage']['type']} {data['storage']['where']}")
    grid.add_row("Listeners", "  ".join(data["listeners"]))
    grid.add_row("Signing key", f"{keys['algorithm']} {keys['current_kid'][:12]}…, age "
                 f"{duration(keys['age_s'])}, next rotation in {duration(keys['next_rotation_in_s'])}")
    grid.add_row("Last reload", f"[{colour}]{result}[/] ({last.get('trigger', '-')}, generation "
                 f"{data['config']['generation']}) {last.get('message', '')}"
                 + (f"\n[yellow]restart needed for: {', '.join(restart)}[/]" if restart else ""))
    grid.add_row("Last hour", f"{data['activity']['logins_last_hour']} logins, "
                 f"{data['activity']['tokens_last_hour']} token responses")
    return grid
