"""What every console screen shares: the navigation bar, API calls with clear errors, refreshing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from appliance.tui.data import AdminAPIError, AdminUnavailable, Api

if TYPE_CHECKING:
    from appliance.tui.app import PorticoApp

__all__ = ["NAV", "NavBar", "PorticoScreen", "clip", "selected_key"]

NAV = (("1", "overview", "Overview"), ("2", "clients", "Clients"), ("3", "users", "Users"),
       ("4", "connectors", "Connectors"), ("5", "sessions", "Sessions"), ("6", "keys", "Keys"),
       ("7", "config", "Config"), ("8", "audit", "Audit"), ("9", "lockouts", "Lockouts"))


class NavBar(Static):
    """One line: the screens and their keys, the current one highlighted (fits 80 columns)."""

    def __init__(self, current: str) -> None:
        super().__init__(id="nav")
        self._current = current

    def render(self) -> str:
        parts = []
        for key, mode, label in NAV:
            if mode == self._current:
                parts.append(f"[reverse b]{key}{label}[/]")
            else:
                parts.append(f"[b $accent]{key}[/]{label}")
        return " ".join(parts)


class PorticoScreen(Screen[None]):
    """A screen of the console. Subclasses set MODE and implement load()."""

    MODE = ""
    BINDINGS = [Binding("r", "refresh", "Refresh")]
    # A screen whose bindings fill the 80-column footer leaves out the "^p palette" hint (ctrl+p works).
    PALETTE_HINT = True

    def compose_top(self) -> ComposeResult:
        yield NavBar(self.MODE)
        yield Static("", id="error", classes="error hidden", markup=False)

    def compose_bottom(self) -> ComposeResult:
        yield Footer(show_command_palette=self.PALETTE_HINT)

    @property
    def portico(self) -> PorticoApp:
        return cast("PorticoApp", self.app)

    @property
    def api(self) -> Api:
        return self.portico.api

    def on_mount(self) -> None:
        self.action_refresh()

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self._load()

    @work(exclusive=True, group="load")
    async def _load(self) -> None:
        try:
            await self.load()
        except AdminUnavailable as exc:
            self.show_error(f"Cannot reach the Portico server: {exc}\n"
                            "Start it (`systemctl start portico` or `portico serve CONFIG`), then press r.\n"
                            "No configuration yet? `portico init` writes a first one.")
            return
        except AdminAPIError as exc:
            self.show_error(f"The server refused: {exc.message}")
            return
        self.show_error("")

    async def load(self) -> None:
        raise NotImplementedError

    def show_error(self, message: str) -> None:
        box = self.query_one("#error", Static)
        box.update(message)
        box.set_class(not message, "hidden")

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   query: dict[str, Any] | None = None) -> Any | None:
        """An API call from an action: errors become a notification, the answer None."""
        try:
            return await self.api.call(method, path, body, query)
        except AdminUnavailable as exc:
            self.notify(str(exc), title="Server unreachable", severity="error", timeout=10)
        except AdminAPIError as exc:
            self.notify(exc.message, title=f"Refused ({exc.code})", severity="error", timeout=10)
        return None


def clip(text: str, width: int = 30) -> str:
    """A table cell no wider than `width` (so that an 80-column table needs no horizontal scrolling)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def selected_key(table: DataTable[Any]) -> str | None:
    """The key of the row under the cursor, or None for an empty table."""
    if table.row_count == 0:
        return None
    row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    return str(row_key.value) if row_key.value is not None else None
