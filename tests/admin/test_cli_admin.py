"""`portico clients|users|keys|sessions|connectors|reload|audit` against a running server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from adminutil import REPO_ROOT, Server, start_server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("cli"))
    yield running
    running.stop()


def portico(server: Server | None, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    sock = ["--socket", str(server.socket)] if server else ["--socket", "/nonexistent/admin.sock"]
    return subprocess.run([sys.executable, "-m", "appliance", *args, *sock], input=stdin, text=True,
                          capture_output=True, timeout=60, cwd=REPO_ROOT)


def test_clients_add_list_rm(server: Server) -> None:
    added = portico(server, "clients", "add", "--id", "kubernetes", "--name", "Kubernetes",
                    "--redirect-uri", "http://localhost:8000")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.split("secret: ")[1].split()[0]
    assert server.token_error("kubernetes", secret) == "invalid_grant"
    listed = portico(server, "clients", "list")
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "config" in lines["app"] and "storage" in lines["kubernetes"] and secret not in listed.stdout
    refused = portico(server, "clients", "rm", "app")
    assert refused.returncode == 1 and "config file" in refused.stderr
    assert portico(server, "clients", "rm", "kubernetes").returncode == 0


def test_users_keys_sessions_connectors_reload_audit(server: Server) -> None:
    made = portico(server, "users", "add", "bob@example.com", "--group", "dev", stdin="pw of bob\n")
    assert made.returncode == 0, made.stderr
    assert "bob@example.com" in portico(server, "users", "list").stdout
    assert portico(server, "users", "groups", "bob@example.com", "ops").stdout.strip().endswith("ops")
    assert portico(server, "users", "passwd", "bob@example.com", stdin="new pw\n").returncode == 0
    rotated = portico(server, "keys", "rotate")
    assert rotated.returncode == 0 and "->" in rotated.stdout
    assert "next rotation" in portico(server, "keys", "list").stdout
    assert portico(server, "sessions", "list").stdout.startswith("ID")
    tested = portico(server, "connectors", "test", "local")
    assert tested.returncode == 0 and tested.stdout.startswith("ok:")
    reload = portico(server, "reload")
    assert reload.returncode == 0 and reload.stdout.startswith("applied")
    audit = portico(server, "audit", "--filter", "users")
    assert "users.create" in audit.stdout and "users.password" in audit.stdout
    assert "pw of bob" not in audit.stdout and "new pw" not in audit.stdout


def test_rejected_reload_exits_1(server: Server, tmp_path: Path) -> None:
    original = server.config_path.read_text()
    try:
        server.config_path.write_text(original + "bogusKey: 1\n")
        result = portico(server, "reload")
        assert result.returncode == 1
        assert "bogusKey" in result.stdout and "rejected" in result.stdout
    finally:
        server.config_path.write_text(original)


def test_clear_error_without_a_server() -> None:
    result = portico(None, "clients", "list")
    assert result.returncode == 3
    assert "no admin socket at /nonexistent/admin.sock" in result.stderr
    assert "Traceback" not in result.stderr
