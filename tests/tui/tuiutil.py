"""What the console tests share: a console on a server's socket, waiting for it to settle, reading its
widgets, and typing into its forms."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from adminutil import Server
from rich.console import Console
from rich.text import Text
from textual.content import Content
from textual.pilot import Pilot
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Select, Static
from textual.worker import WorkerState

from appliance.admin.client import AdminClient
from appliance.tui.app import PorticoApp
from appliance.tui.data import SocketApi
from appliance.tui.formdata import field_id
from appliance.tui.screens.audit import FOLLOW_GROUP

SIZE = (80, 24)


def console(server: Server, start: str) -> PorticoApp:
    return PorticoApp(SocketApi(AdminClient(str(server.socket))), start=start)


async def settle(pilot: Pilot[Any], limit_s: float = 20.0) -> None:
    """Let the screen's API calls (worker threads) finish and the UI catch up. An action's worker that
    waits for a dialog's answer counts as settled while that dialog is shown."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    app = pilot.app
    while loop.time() < deadline:
        await pilot.pause(0.05)
        busy = [w for w in app.workers if w.state in (WorkerState.PENDING, WorkerState.RUNNING)
                and not (w.group == "default" and isinstance(app.screen, ModalScreen))
                and w.group != FOLLOW_GROUP]  # the audit screen's live tail never ends
        if not busy:
            await pilot.pause()
            return
    raise AssertionError(f"the console did not settle: {list(app.workers)}")


def text_of(widget: Static) -> str:
    """What a Static shows, as plain text (strings, Text or rich renderables such as a Table)."""
    content = widget.content
    if isinstance(content, str):
        return content
    if isinstance(content, Text | Content):
        return content.plain
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(content)
    return console.export_text()


def rows(app: PorticoApp) -> list[list[str]]:
    table = app.screen.query_one(DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def notes(app: PorticoApp) -> list[str]:
    return [n.message for n in app._notifications]


def select_row(app: PorticoApp, key: str) -> None:
    table = app.screen.query_one(DataTable)
    table.move_cursor(row=table.get_row_index(key))


async def fill(pilot: Pilot[Any], values: dict[str, str]) -> None:
    """Type into fields by key path ("userSearch.baseDN"), or by id for the form's own ("h-name")."""
    for name, value in values.items():
        wid = name if name.startswith("h-") else field_id(name)
        pilot.app.screen.query_one(f"#{wid}", Input).value = value
    await pilot.pause()


async def choose_type(pilot: Pilot[Any], type_: str) -> None:
    """Pick the connector type as a person does: tab to the choice, open it, type to search, enter."""
    await pilot.press("tab", "enter", *type_, "enter")
    await settle(pilot)
    assert pilot.app.screen.query_one("#h-type", Select).value == type_


async def until(pilot: Pilot[Any], check: Any, limit_s: float = 10.0) -> float:
    """Wait (without pressing a key) until `check()` is true; how long it took."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while loop.time() - began < limit_s:
        if check():
            return loop.time() - began
        await pilot.pause(0.05)
    raise AssertionError(f"not within {limit_s} s")
