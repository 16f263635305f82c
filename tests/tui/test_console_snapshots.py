"""Snapshots of every console screen at 80x24 (pytest-textual-snapshot), from fixed API answers.

Update with `pytest tests/tui --snapshot-update` and look at the SVGs before accepting them.
"""

from __future__ import annotations

from typing import Any

import pytest
from static_api import StaticApi
from textual.pilot import Pilot
from textual.widgets import Button
from textual.worker import WorkerState

from appliance.tui.app import PorticoApp
from appliance.tui.connectorform import ConnectorForm
from appliance.tui.screens.audit import FOLLOW_GROUP

SIZE = (80, 24)


async def _loaded(pilot: Pilot[Any]) -> None:
    # Every worker but the audit screen's live tail, which runs for as long as the screen.
    for _ in range(400):
        if not [w for w in pilot.app.workers
                if w.group != FOLLOW_GROUP and w.state in (WorkerState.PENDING, WorkerState.RUNNING)]:
            break
        await pilot.pause(0.05)
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


async def _new_ldap_form(pilot: Pilot[Any]) -> None:
    await _loaded(pilot)
    await pilot.press("n")
    await _form_shown(pilot)
    await pilot.press(*"corp-ldap", "tab", "enter", *"ldap", "enter")  # the type, as a person picks it
    await pilot.pause()


async def _form_shown(pilot: Pilot[Any]) -> None:
    # The screen's action waits for the form's answer: wait for the form itself, not for the workers.
    for _ in range(100):
        if isinstance(pilot.app.screen, ConnectorForm):
            break
        await pilot.pause(0.05)
    await pilot.pause()


def test_connector_form_new_ldap(snap_compare: Any) -> None:
    """The top of a new LDAP connector's form: its own fields, then the type's keys (required ones *)."""
    assert snap_compare(PorticoApp(StaticApi(), start="connectors"), terminal_size=SIZE,
                        run_before=_new_ldap_form)


def test_connector_form_list_of_objects(snap_compare: Any) -> None:
    """Further down: nested blocks (groupSearch) and a list of objects with one entry (userMatchers)."""

    async def add_matcher(pilot: Pilot[Any]) -> None:
        await _new_ldap_form(pilot)
        pilot.app.screen.query_one("#add-groupSearch--userMatchers", Button).focus()
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press(*"DN", "tab", *"member")
        await pilot.pause()

    assert snap_compare(PorticoApp(StaticApi(), start="connectors"), terminal_size=SIZE,
                        run_before=add_matcher)


def test_connector_form_problems_next_to_fields(snap_compare: Any) -> None:
    """The server's problems under the fields they name; the first one focused."""

    async def refused(pilot: Pilot[Any]) -> None:
        await _new_ldap_form(pilot)
        form = pilot.app.screen
        assert isinstance(form, ConnectorForm)
        form.show_problems([
            {"path": "config.host", "message": "host is required"},
            {"path": "config.bindPW", "message": "bindPW is empty but bindDN is set"},
            {"path": "config.bindDN", "message": "bindPW is empty but bindDN is set"},
        ], "")
        await pilot.pause()

    assert snap_compare(PorticoApp(StaticApi(), start="connectors"), terminal_size=SIZE, run_before=refused)


def test_connector_form_edit_keeps_secrets_unchanged(snap_compare: Any) -> None:
    """Editing a stored GitHub connector: the secret is never shown ("unchanged"), orgs as entries."""

    async def edit(pilot: Pilot[Any]) -> None:
        await _loaded(pilot)
        await pilot.press("down", "e")
        await _form_shown(pilot)

    assert snap_compare(PorticoApp(StaticApi(), start="connectors"), terminal_size=SIZE, run_before=edit)
