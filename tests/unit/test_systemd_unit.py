"""systemd/portico.service: the settings that matter, systemd's own offline checks, and the server's side
of the contract (the sd_notify messages Type=notify and WatchdogSec= wait for, SIGHUP for ExecReload=)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "portico.service"
SYSUSERS = REPO / "systemd" / "portico.sysusers"
DOC = REPO / "docs" / "systemd.md"
SERVE = REPO / "appliance" / "cli" / "serve.py"
BINARY = "/usr/local/bin/portico"
CONFIG = "/etc/portico/config.yaml"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value in order (systemd keys repeat; an empty value resets a list)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment outside a section: {raw!r}"
        assert not line.endswith("\\"), "continuation lines are not used in this unit"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def one(unit: dict[str, dict[str, list[str]]], key: str, section: str = "Service") -> str:
    values = unit[section].get(key)
    assert values is not None, f"{key}= is missing from [{section}]"
    assert len(values) == 1, f"{key}= is set {len(values)} times"
    return values[0]


def systemd_tool(name: str) -> str | None:
    path = shutil.which(name)
    if path is None and os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not on PATH; CI must check the unit with systemd's own tools")
    return path


def doc_exposure() -> str:
    match = re.search(r"exposure[^\n]*?\*\*(\d+\.\d)\*\*", DOC.read_text())
    assert match, "docs/systemd.md must state the exposure figure as **N.N** near its top"
    return match.group(1)


# -- the settings ---------------------------------------------------------------------------------

def test_start_reload_and_stop_commands(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Type") == "notify"
    # The one-file build runs Python in a child of the bootloader (the main PID).
    assert one(unit, "NotifyAccess") == "all"
    assert one(unit, "ExecStartPre") == f"{BINARY} config check {CONFIG}"
    assert one(unit, "ExecStart") == f"{BINARY} serve {CONFIG}"
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "Restart") == "on-failure"
    assert one(unit, "KillMode") == "mixed"
    assert one(unit, "TimeoutStopSec")
    assert int(one(unit, "LimitNOFILE")) >= 65536
    assert one(unit, "WantedBy", "Install") == "multi-user.target"


def test_identity_and_directories(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "User") == "portico"
    assert one(unit, "Group") == "portico"
    assert "DynamicUser" not in unit["Service"]
    assert one(unit, "StateDirectory") == "portico"
    assert one(unit, "StateDirectoryMode") == "0700"
    assert one(unit, "ConfigurationDirectory") == "portico"
    assert one(unit, "RuntimeDirectory") == "portico"
    assert one(unit, "RuntimeDirectoryMode") == "0750"
    assert one(unit, "WorkingDirectory") == "/var/lib/portico"
    assert one(unit, "UMask") == "0077"
    # The sysusers snippet creates the account the unit runs as, with the state directory as home.
    entries = [line.split() for line in SYSUSERS.read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert [(e[0], e[1]) for e in entries] == [("u", "portico")]
    assert "/var/lib/portico" in entries[0]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("DevicePolicy", "closed"),
        ("PrivateIPC", "yes"),
        ("PrivateMounts", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("ProcSubset", "pid"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallErrorNumber", "EPERM"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("RemoveIPC", "yes"),
        ("KeyringMode", "private"),
    ],
)
def test_hardening(unit: dict[str, dict[str, list[str]]], key: str, value: str) -> None:
    assert one(unit, key) == value


def test_system_call_filter_is_an_allow_list_minus_privileged_calls(
    unit: dict[str, dict[str, list[str]]]
) -> None:
    assert unit["Service"]["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]


def test_no_ip_allow_list_because_clients_and_upstreams_are_anywhere(
    unit: dict[str, dict[str, list[str]]]
) -> None:
    assert "IPAddressDeny" not in unit["Service"]
    assert "PrivateNetwork" not in unit["Service"]


def test_watchdog_is_only_enabled_when_serve_pings_it(unit: dict[str, dict[str, list[str]]]) -> None:
    """WatchdogSec= with nobody pinging means systemd kills a healthy server every 30 s."""
    if "WatchdogSec" in unit["Service"]:
        assert "run_watchdog" in SERVE.read_text(), (
            "systemd/portico.service sets WatchdogSec= but appliance/cli/serve.py never starts "
            "appliance.cli.sdnotify.run_watchdog"
        )


# -- systemd's own offline checks -----------------------------------------------------------------

def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = systemd_tool("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify insists that every Exec binary exists: point them at a stand-in, keep the rest.
    stand_in = tmp_path / "portico"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    unit_copy = tmp_path / "portico.service"
    unit_copy.write_text(UNIT.read_text().replace(BINARY, str(stand_in)))
    result = subprocess.run([analyze, "verify", "--man=no", str(unit_copy)],
                            capture_output=True, text=True, timeout=60)
    # A misspelt key or value is only a warning (exit 0): any output at all is a failure.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_exposure_score_is_the_documented_figure() -> None:
    analyze = systemd_tool("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    documented = doc_exposure()
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    measured = re.search(r"Overall exposure level for portico\.service: (\d+\.\d)", result.stdout)
    assert measured, result.stdout[-500:]
    assert measured.group(1) == documented, "update the figure in docs/systemd.md (and the report)"
    # --threshold takes tenths: at the figure passes, one tenth below fails.
    tenths = round(float(documented) * 10)
    at = subprocess.run([analyze, "security", "--offline=yes", f"--threshold={tenths}", str(UNIT)],
                        capture_output=True, text=True, timeout=60)
    below = subprocess.run([analyze, "security", "--offline=yes", f"--threshold={tenths - 1}", str(UNIT)],
                           capture_output=True, text=True, timeout=60)
    assert at.returncode == 0
    assert below.returncode != 0


def test_sysusers_snippet_is_accepted(tmp_path: Path) -> None:
    sysusers = systemd_tool("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed")
    snippet = tmp_path / "portico.conf"
    shutil.copy(SYSUSERS, snippet)
    # --root: an empty tree, so the host's accounts are neither read nor written.
    result = subprocess.run([sysusers, "--dry-run", f"--root={tmp_path}", str(snippet)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "Creating group 'portico'" in out
    assert re.search(r"Creating user 'portico' \(Portico identity provider\)", out), out
    assert not (tmp_path / "etc").exists()


# -- the server's side of the contract ------------------------------------------------------------

class NotifySocket:
    """What systemd's notify socket sees: one dict of fields per datagram."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.seen: list[dict[str, str]] = []

    def wait_for(self, field: str, timeout: float = 10.0) -> dict[str, str]:
        """The first unread message carrying `field`; earlier messages are kept in `seen`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            self.seen.append(message)
            if field in message:
                return message
        pytest.fail(f"no {field} message within {timeout} s; got {self.seen}")


@pytest.fixture
def notify_socket() -> Iterator[tuple[NotifySocket, str]]:
    # A short directory: sun_path holds 108 bytes and pytest's tmp_path can be longer.
    folder = tempfile.mkdtemp(prefix="portico-notify-")
    path = os.path.join(folder, "notify")
    receiver = NotifySocket(path)
    yield receiver, path
    receiver.sock.close()
    shutil.rmtree(folder, ignore_errors=True)


def test_serve_speaks_the_protocol_the_unit_expects(
    portico_launcher: Any, notify_socket: tuple[NotifySocket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """READY=1 after the listeners are up, WATCHDOG=1 pings, a SIGHUP that does not kill the server
    (systemd counts death by SIGHUP as a clean exit, so Restart=on-failure would leave it down), and
    STOPPING=1 on SIGTERM."""
    receiver, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    def config(port: int) -> dict[str, Any]:
        return {
            "issuer": f"http://127.0.0.1:{port}/dex",
            "storage": {"type": "sqlite3", "config": {"file": "portico.db"}},
            "web": {"http": f"127.0.0.1:{port}"},
        }

    server = portico_launcher.start(config, name="notify")
    ready = receiver.wait_for("READY")
    assert ready["READY"] == "1"
    assert not any("STOPPING" in m for m in receiver.seen)
    # 1 s watchdog: pings every 0.5 s.
    receiver.wait_for("WATCHDOG", timeout=3.0)

    server.proc.send_signal(signal.SIGHUP)
    reloading = receiver.wait_for("RELOADING")
    assert int(reloading["MONOTONIC_USEC"]) > 0
    receiver.wait_for("READY")
    time.sleep(0.3)
    assert server.proc.poll() is None, f"SIGHUP killed the server:\n{server.stderr_tail()}"

    server.proc.send_signal(signal.SIGTERM)
    receiver.wait_for("STOPPING")
    assert server.proc.wait(15) == 0, server.stderr_tail()
