"""Config: the current file (secrets masked), the last reload results with their errors, reload now."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static, TextArea

from appliance.tui.screens.base import PorticoScreen

__all__ = ["ConfigScreen", "report_text"]


def report_text(report: dict[str, Any]) -> Text:
    colour = {"applied": "green", "unchanged": "green", "rejected": "red"}.get(report["result"], "white")
    text = Text()
    text.append(f"{report['at'][:19].replace('T', ' ')} ", style="dim")
    text.append(report["result"], style=f"bold {colour}")
    text.append(f" ({report['trigger']}) {report['message']}")
    for change in report["changes"]:
        text.append(f"\n  changed: {change}")
    for p in report["problems"]:
        where = f"line {p['line']}: " if p["line"] else ""
        path = f"{p['path']}: " if p["path"] else ""
        text.append(f"\n  {p['severity']}: {where}{path}{p['message']}",
                    style="red" if p["severity"] == "error" else "yellow")
    if report["restart_required"]:
        text.append("\n  restart needed for: " + ", ".join(report["restart_required"]), style="yellow")
    return text


class ConfigScreen(PorticoScreen):
    MODE = "config"
    BINDINGS = [Binding("l", "reload", "Reload now"), *PorticoScreen.BINDINGS]

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield Static("", id="info")
        yield TextArea("", id="config-text", read_only=True, language=None, show_line_numbers=True)
        yield from self.compose_bottom()

    async def load(self) -> None:
        data: dict[str, Any] = await self.api.call("GET", "/v1/config")
        info = Text()
        info.append(f"{data['path']}", style="bold")
        info.append(f"  generation {data['generation']}\n")
        history = data["history"]
        if history:
            info.append_text(report_text(history[0]))
        self.query_one("#info", Static).update(info)
        area = self.query_one(TextArea)
        if area.text != data["text"]:
            area.load_text(data["text"])

    @work
    async def action_reload(self) -> None:
        report = await self.call("POST", "/v1/reload")
        if report is not None:
            failed = report["result"] == "rejected"
            self.notify(report_text(report).plain, title="Reload",
                        severity="error" if failed else "information", timeout=8)
            self.action_refresh()
