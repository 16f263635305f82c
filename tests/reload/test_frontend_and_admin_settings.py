"""A running server's frontend folder edited live (templates, static files, theme), and where its admin
socket comes from (the config file's admin.socket, $PORTICO_ADMIN_SOCKET, --admin-socket)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from adminutil import Server, base_config, start_server, wait_for

pytestmark = pytest.mark.timeout(120)

PAGE = """{% extends "portico/base.html" %}
{% block content %}<h1 id="custom">{{ title }} VERSION</h1>
<link rel="stylesheet" id="theme-link" href="{{ asset_url('theme', 'theme.css') }}">{% endblock %}
"""


def _error_page(server: Server) -> str:
    """A page anyone can fetch: /auth without a client is the error page (error.html)."""
    return httpx.get(f"{server.issuer}/auth", timeout=10).text


def _write_template(folder: Path, version: str) -> None:
    (folder / "templates" / "error.html").write_text(PAGE.replace("VERSION", version))


def _reports(server: Server, result: str) -> list[dict[str, Any]]:
    return [r for r in server.history() if r["result"] == result]


def test_templates_static_files_and_theme_change_without_a_restart(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "templates").mkdir(parents=True)
    (web / "static").mkdir()
    (web / "themes" / "light").mkdir(parents=True)
    _write_template(web, "one")
    (web / "themes" / "light" / "theme.css").write_text("body { color: #111; }\n")
    server = start_server(tmp_path, lambda port: base_config(port, frontend={"dir": str(web)}))
    try:
        pid = server.proc.pid
        first = _error_page(server)
        assert "one</h1>" in first
        theme_link = first.split('id="theme-link" href="')[1].split('"')[0]

        # A template edit is served after the reload the watcher makes, by the same process.
        _write_template(web, "two")
        wait_for(lambda: "two</h1>" in _error_page(server), what="the edited template")
        assert any("frontend files" in r["changes"] for r in _reports(server, "applied"))

        # A broken template is refused like a bad config edit: the old one keeps serving, and the
        # reload result names the file and the line.
        (web / "templates" / "error.html").write_text(PAGE.replace("VERSION", "three {% if %}"))
        report = wait_for(lambda: next(iter(_reports(server, "rejected")), None), what="a rejected reload")
        problem = report["problems"][-1]
        assert problem["path"] == "frontend.dir"
        assert f"template {web / 'templates' / 'error.html'}:2: " in problem["message"]
        assert "error.html:2: " in server.stderr()
        assert "two</h1>" in _error_page(server)

        _write_template(web, "four")
        wait_for(lambda: "four</h1>" in _error_page(server), what="the fixed template")

        # A new static file is served, and a theme edit changes the stylesheet link (its hash).
        (web / "static" / "note.txt").write_text("hello from the frontend folder\n")
        note = httpx.get(f"{server.issuer}/static/note.txt", timeout=10)
        assert note.status_code == 200 and note.text == "hello from the frontend folder\n"
        (web / "themes" / "light" / "theme.css").write_text("body { color: #222; }\n")

        def new_theme_link() -> str:
            link = _error_page(server).split('id="theme-link" href="')[1].split('"')[0]
            return link if link != theme_link else ""

        link = wait_for(new_theme_link, what="the new theme hash")
        theme = httpx.get(f"http://127.0.0.1:{server.port}{link}", timeout=10)
        assert theme.text == "body { color: #222; }\n"
        assert server.proc.pid == pid and server.proc.poll() is None
    finally:
        server.stop()


def _socket_config(socket: Path) -> Callable[[int], dict[str, Any]]:
    return lambda port: base_config(port, admin={"socket": str(socket)})


def _is_socket(path: Path) -> bool:
    return path.exists() and stat.S_ISSOCK(path.stat().st_mode)


def test_the_admin_socket_path_comes_from_the_config_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTICO_ADMIN_SOCKET", raising=False)
    configured = tmp_path / "run" / "admin.sock"
    server = start_server(tmp_path, _socket_config(configured), socket=configured, socket_flag=False)
    try:
        assert _is_socket(configured) and stat.S_IMODE(configured.stat().st_mode) == 0o660
        overview = server.admin().get("/v1/overview")
        assert f"unix:{configured} (admin)" in overview["listeners"]
        # The CLI finds the socket through the same config file (no --socket, no environment).
        cli = [sys.executable, "-m", "appliance", "keys", "list", "--json",
               "--config", str(server.config_path)]
        done = subprocess.run(cli, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout), done.stdout
        without = subprocess.run(cli[:-2], capture_output=True, text=True, timeout=60, check=False,
                                 env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "elsewhere")})
        assert without.returncode == 3 and "portico:" in without.stderr  # the default is not there
        # A restart-only setting: a changed path is reported and the socket stays where it is.
        moved = tmp_path / "run" / "moved.sock"
        server.write_config(_socket_config(moved)(server.port))
        # Nothing else changed: the reload applies nothing ("unchanged") and says what waits.
        report = wait_for(lambda: next((r for r in server.history() if r["trigger"] == "watch"), None),
                          what="the reload")
        assert report["result"] == "unchanged" and report["restart_required"] == ["admin.socket"]
        assert _is_socket(configured) and not moved.exists()
        assert server.admin().get("/v1/overview")["issuer"] == server.issuer
    finally:
        server.stop()


def test_the_environment_and_the_flag_win_over_the_config_file(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    configured = tmp_path / "run" / "config.sock"
    from_env = tmp_path / "env" / "admin.sock"
    monkeypatch.setenv("PORTICO_ADMIN_SOCKET", str(from_env))
    (tmp_path / "a").mkdir()
    server = start_server(tmp_path / "a", _socket_config(configured), socket=from_env, socket_flag=False)
    try:
        assert _is_socket(from_env) and not configured.exists()
        assert f"unix:{from_env} (admin)" in server.admin().get("/v1/overview")["listeners"]
    finally:
        server.stop()
    flagged = tmp_path / "flag" / "admin.sock"
    flagged.parent.mkdir()
    (tmp_path / "b").mkdir()
    server = start_server(tmp_path / "b", _socket_config(configured), socket=flagged)  # --admin-socket
    try:
        assert _is_socket(flagged) and not configured.exists() and not from_env.exists()
    finally:
        server.stop()
