"""The console application: screens as modes switched with 1-9, and `run` for the command line."""

from __future__ import annotations

from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from appliance.admin.client import AdminClient
from appliance.tui.data import Api, SocketApi
from appliance.tui.screens.audit import AuditScreen
from appliance.tui.screens.base import NAV
from appliance.tui.screens.clients import ClientsScreen
from appliance.tui.screens.config import ConfigScreen
from appliance.tui.screens.connectors import ConnectorsScreen
from appliance.tui.screens.keys import KeysScreen
from appliance.tui.screens.lockouts import LockoutsScreen
from appliance.tui.screens.overview import OverviewScreen
from appliance.tui.screens.sessions import SessionsScreen
from appliance.tui.screens.users import UsersScreen
from appliance.tui.screens.wizard import WizardScreen

__all__ = ["PorticoApp", "run"]


class PorticoApp(App[str]):
    """`portico tui`: every screen talks to the server through `api` (the admin API) only."""

    CSS_PATH = "portico.tcss"
    TITLE = "Portico"
    MODES: ClassVar = {
        "overview": OverviewScreen, "clients": ClientsScreen, "users": UsersScreen,
        "connectors": ConnectorsScreen, "sessions": SessionsScreen, "keys": KeysScreen,
        "config": ConfigScreen, "audit": AuditScreen, "lockouts": LockoutsScreen,
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(key, f"switch_mode('{mode}')", label, show=False) for key, mode, label in NAV),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, api: Api, *, start: str = "overview", init_output: str = "") -> None:
        super().__init__()
        self.api = api
        self._start = start
        self._init_output = init_output

    def on_mount(self) -> None:
        if self._init_output:
            self.push_screen(WizardScreen(self._init_output))
        else:
            self.switch_mode(self._start)


def run(command: str, socket: str | None, output: str) -> int:
    """`portico tui` or `portico init`; the wizard's summary is printed when the console closes."""
    if command == "init":
        app = PorticoApp(SocketApi(AdminClient(socket)), init_output=output or "config.yaml")
    else:
        app = PorticoApp(SocketApi(AdminClient(socket)))
    result = app.run()
    if result:
        print(result)
    return 0
