"""The console's behaviour, screen by screen, driven by Textual's Pilot against a real running server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from adminutil import REPO_ROOT, Server, start_server
from static_api import ANSWERS
from textual.widgets import Input, Static, TextArea
from tuiutil import choose_type, console, fill, notes, rows, select_row, settle, text_of, until

from appliance.admin.client import AdminAPIError, AdminClient
from appliance.store.models import Claims, OfflineSession, RefreshToken
from appliance.store.sqlite import open_sqlite
from appliance.tui.app import PorticoApp
from appliance.tui.data import SocketApi

pytestmark = pytest.mark.timeout(120)
SIZE = (80, 24)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("tui"))
    yield running
    running.stop()


async def test_overview_shows_the_server(server: Server) -> None:
    app = console(server, "overview")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        summary = text_of(app.screen.query_one("#summary", Static))
        assert server.issuer in summary and "sqlite3" in summary and "applied" in summary
        assert ["local", "local", "builtin", "open", "-"] == rows(app)[0]
        await pilot.press("2")
        await settle(pilot)
        assert app.current_mode == "clients"


async def test_clients_create_edit_delete(server: Server) -> None:
    app = console(server, "clients")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await pilot.press(*"tui-app")  # typed for real into the focused first field
        await fill(pilot, {"name": "TUI App", "redirect_uris": "http://127.0.0.1:7000/cb"})
        await pilot.press("ctrl+s")
        await settle(pilot)
        shown = text_of(app.screen.query(Static).filter(".dialog-text").first())
        secret = shown.split("Secret:")[1].split()[0]
        assert server.token_error("tui-app", secret) == "invalid_grant"
        await pilot.press("enter")
        await settle(pilot)
        assert any(r[0] == "tui-app" and r[2] == "storage" for r in rows(app))

        select_row(app, "tui-app")
        await pilot.press("e")
        await fill(pilot, {"trusted_peers": "app"})
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert server.admin().get("/v1/clients/tui-app")["trusted_peers"] == ["app"]

        select_row(app, "app")  # from the config file: refused with a clear message
        await pilot.press("d")
        await settle(pilot)
        assert any("comes from the config file" in n for n in notes(app))

        select_row(app, "tui-app")
        await pilot.press("d")
        await pilot.press("y")
        await settle(pilot)
        assert all(r[0] != "tui-app" for r in rows(app))
        with pytest.raises(AdminAPIError):
            server.admin().get("/v1/clients/tui-app")


async def test_users_create_groups_password_delete(server: Server) -> None:
    app = console(server, "users")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await fill(pilot, {"email": "tui@example.com", "username": "tui", "password": "pw one",
                           "groups": "dev, ops"})
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert ["tui@example.com", "tui", "dev, ops", "storage", "-"] in rows(app)
        select_row(app, "tui@example.com")
        await pilot.press("g")
        await fill(pilot, {"groups": "admins"})
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert ["tui@example.com", "tui", "admins", "storage", "-"] in rows(app)
        await pilot.press("p")
        await fill(pilot, {"password": "pw two"})
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert any("password of tui@example.com changed" in n for n in notes(app))
        await pilot.press("d", "y")
        await settle(pilot)
        assert all(r[0] != "tui@example.com" for r in rows(app))


async def test_connectors_form_test_and_delete(server: Server) -> None:
    app = console(server, "connectors")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        await pilot.press(*"tui-mock")  # typed for real into the focused id field
        await choose_type(pilot, "mockPassword")
        # The settings are the type's schema (required keys marked), then the optional test login.
        labels = [text_of(label) for label in app.screen.query("#config-rows .field-name").results(Static)]
        assert labels == ["username *", "password *", "username", "password"]
        await fill(pilot, {"h-name": "TUI Mock", "username": "alice"})
        await pilot.press("ctrl+s")  # the password is missing: the server says so, under that field
        await settle(pilot)
        error = app.screen.query_one("#e-password", Static)
        assert "no password supplied" in text_of(error) and not error.has_class("hidden")
        assert app.screen.query_one("#f-password", Input).has_focus
        await fill(pilot, {"password": "wonder"})
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert ["tui-mock", "mockPassword", "TUI Mock", "storage", "open", "-"] in rows(app)

        select_row(app, "tui-mock")
        await pilot.press("t")
        await fill(pilot, {"username": "alice", "password": "wonder"})
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert any(n.startswith("logged in as") for n in notes(app))
        assert any(r[0] == "tui-mock" and r[5].startswith("ok: logged in") for r in rows(app))

        select_row(app, "tui-mock")
        await pilot.press("d", "y")
        await settle(pilot)
        assert all(r[0] != "tui-mock" for r in rows(app))


async def test_sessions_filter_and_revoke(server: Server) -> None:
    now = datetime.now(UTC)

    async def seed() -> None:
        storage = await open_sqlite(str(server.workdir / "portico.db"))
        try:
            for n in (1, 2):
                await storage.refresh_tokens.create(RefreshToken(
                    id=f"tui-rt{n}", token="d", client_id="app", connector_id="local",
                    claims=Claims(user_id="tui-user", email="carol@example.com"), scopes=("openid",),
                    created_at=now, last_used=now))
            await storage.offline_sessions.create(OfflineSession("tui-user", "local"))
        finally:
            await storage.close()

    await seed()
    app = console(server, "sessions")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"carol@example.com", "enter")
        await settle(pilot)
        assert {r[0] for r in rows(app)} == {"tui-rt1", "tui-rt2"}
        select_row(app, "tui-rt1")
        await pilot.press("x", "y")
        await settle(pilot)
        assert [r[0] for r in rows(app)] == ["tui-rt2"]
        await pilot.press("X", "y")
        await settle(pilot)
        assert rows(app) == []
    left = await asyncio.to_thread(server.admin().get, "/v1/sessions", user="tui-user")
    assert left["refresh_tokens"] == []


async def test_keys_rotate(server: Server) -> None:
    app = console(server, "keys")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = rows(app)[0][0]
        await pilot.press("R", "y")
        await settle(pilot)
        table = rows(app)
        assert table[0][0] != before and table[0][1] == "signing (current)"
        assert [before, "verification only"] == table[1][:2]


async def test_config_shows_file_and_reload_errors(server: Server) -> None:
    original = server.config_path.read_text()
    app = console(server, "config")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert "staticClients" in app.screen.query_one(TextArea).text
            assert "app-secret" not in app.screen.query_one(TextArea).text
            server.config_path.write_text(original + "unknownKey: 1\n")
            await pilot.press("l")
            await settle(pilot)
            info = text_of(app.screen.query_one("#info", Static))
            assert "rejected" in info and "unknownKey" in info
            assert f"line {len(original.splitlines()) + 1}" in info
            assert any("rejected" in n for n in notes(app))
    finally:
        server.config_path.write_text(original)


async def test_audit_tail_and_filter(server: Server) -> None:
    admin = server.admin()
    await asyncio.to_thread(admin.post, "/v1/clients", {"id": "audit-probe", "redirect_uris": ["http://x/cb"]})
    app = console(server, "audit")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert any(r[2] == "clients.create" and r[3] == "audit-probe" and r[1].startswith(f"{os.geteuid()}:")
                   for r in rows(app))
        before = len(rows(app))
        # Live: a new event shows up without a key press, as soon as the server writes it (the tail
        # call is held by the server until then), well before any polling interval.
        await asyncio.to_thread(admin.delete, "/v1/clients/audit-probe")
        took = await until(pilot, lambda: len(rows(app)) == before + 1)
        assert rows(app)[-1][2] == "clients.delete" and took < 1.5
        await pilot.press("slash", *"delete audit-probe", "enter")
        await settle(pilot)
        assert [r[2] for r in rows(app)] == ["clients.delete"]
        assert "filter 'delete audit-probe'" in text_of(app.screen.query_one("#detail", Static))
        # The filter holds for the live tail too: a matching event appears, another one does not.
        await asyncio.to_thread(admin.post, "/v1/clients", {"id": "audit-other", "redirect_uris": ["http://x/cb"]})
        await asyncio.to_thread(admin.post, "/v1/clients", {"id": "audit-probe", "redirect_uris": ["http://x/cb"]})
        await asyncio.to_thread(admin.delete, "/v1/clients/audit-probe")
        await until(pilot, lambda: len(rows(app)) == 2)
        await asyncio.sleep(0.5)  # anything else that was coming would be here by now
        assert [(r[2], r[3]) for r in rows(app)] == [("clients.delete", "audit-probe")] * 2
        await pilot.press("slash", "ctrl+u", "enter")  # an empty filter shows everything again
        await settle(pilot)
        assert {"audit-other", "audit-probe"} <= {r[3] for r in rows(app)}


async def test_clear_error_when_the_server_is_not_running(tmp_path: Path) -> None:
    app = PorticoApp(SocketApi(AdminClient(str(tmp_path / "none.sock"))), start="overview")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        error = text_of(app.screen.query_one("#error", Static))
        assert "Cannot reach the Portico server" in error and "none.sock" in error
        assert "press r" in error


async def test_init_wizard_writes_a_valid_config(tmp_path: Path) -> None:
    output = tmp_path / "config.yaml"
    app = PorticoApp(SocketApi(AdminClient(str(tmp_path / "none.sock"))), init_output=str(output))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.screen.query_one("#w-issuer", Input).value = "https://auth.example.net/dex"
        app.screen.query_one("#w-admin_password", Input).value = "first admin pw"
        app.screen.query_one("#w-sqlite_file", Input).value = str(tmp_path / "p.db")
        await pilot.press("ctrl+s")
        await settle(pilot)
        result = app.screen.query_one(TextArea).text
        assert "--oidc-issuer-url=https://auth.example.net/dex" in result
        assert "--oidc-client-id=kubernetes" in result and "oidc-login" in result
        await pilot.press("enter")
    assert app.return_value == result
    check = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "appliance", "config", "check", str(output)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    text = output.read_text()
    assert text.startswith("# Portico configuration") and "first admin pw" not in text
    assert oct(output.stat().st_mode & 0o777) == "0o600"


def _shape(value: Any) -> Any:
    """The keys of an answer (of its first element for lists), recursively one level down."""
    if isinstance(value, list):
        return _shape(value[0]) if value else "list"
    if isinstance(value, dict):
        return sorted(value)
    return type(value).__name__


def test_static_answers_match_the_real_api(server: Server) -> None:
    """The snapshot tests' fixed answers (static_api.py) keep the real API's shape."""
    admin = server.admin()
    admin.post("/v1/clients", {"id": "shape-probe", "redirect_uris": ["http://x/cb"]})
    admin.post("/v1/users", {"email": "shape@example.com", "password": "x"})
    for path, fixed in ANSWERS.items():
        real = admin.get(path)
        if real in ([], {}):
            continue
        if path == "/v1/connector-types":  # keyed by the registry's types: compare one form's fields
            assert "mockPassword" in real
            assert _shape(real["mockPassword"]) == _shape(fixed["mockPassword"])
            continue
        assert _shape(real) == _shape(fixed), path
        if isinstance(fixed, dict):
            for key, value in fixed.items():
                if isinstance(value, dict | list) and value and real[key]:
                    assert _shape(real[key]) == _shape(value), f"{path} {key}"
