"""Snapshots of every console screen at 80x24 (pytest-textual-snapshot), from fixed API answers.

Update with `pytest tests/tui --snapshot-update` and look at the SVGs before accepting them.
"""

from __future__ import annotations

from typing import Any

import pytest
from static_api import StaticApi
from textual.pilot import Pilot

from appliance.tui.app import PorticoApp

SIZE = (80, 24)


async def _loaded(pilot: Pilot[Any]) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("mode", ["overview", "clients", "users", "connectors", "sessions", "keys", "config",
                                  "audit"])
def test_screen(snap_compare: Any, mode: str) -> None:
    assert snap_compare(PorticoApp(StaticApi(), start=mode), terminal_size=SIZE, run_before=_loaded)


def test_new_client_dialog(snap_compare: Any) -> None:
    async def open_dialog(pilot: Pilot[Any]) -> None:
        await _loaded(pilot)
        await pilot.press("n")
        await pilot.pause()

    assert snap_compare(PorticoApp(StaticApi(), start="clients"), terminal_size=SIZE, run_before=open_dialog)


def test_delete_confirmation(snap_compare: Any) -> None:
    async def confirm(pilot: Pilot[Any]) -> None:
        await _loaded(pilot)
        await pilot.press("down", "d")
        await pilot.pause()

    assert snap_compare(PorticoApp(StaticApi(), start="users"), terminal_size=SIZE, run_before=confirm)


def test_server_not_running(snap_compare: Any) -> None:
    assert snap_compare(PorticoApp(StaticApi(unavailable=True)), terminal_size=SIZE, run_before=_loaded)


def test_init_wizard(snap_compare: Any) -> None:
    app = PorticoApp(StaticApi(unavailable=True), init_output="/etc/portico/config.yaml")
    assert snap_compare(app, terminal_size=SIZE)
