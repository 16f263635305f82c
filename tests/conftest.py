"""Shared fixtures for tests that run real processes: free ports and the `portico serve` launcher."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
# Keys in user_properties that the terminal summary prints (works under xdist: reports carry them).
FIGURE_PREFIX = "figure:"


def server_command() -> list[str]:
    """The server under test: this checkout's package, or PORTICO_E2E_COMMAND (e.g. a built binary)."""
    override = os.environ.get("PORTICO_E2E_COMMAND")
    return shlex.split(override) if override else [sys.executable, "-m", "appliance"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago (the launcher retries a lost race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One running `portico serve` process and what the tests need to talk to it."""

    proc: subprocess.Popen[bytes]
    port: int
    issuer: str
    config_path: Path
    stderr_path: Path
    cold_start_s: float
    exit_code: int | None = field(default=None)

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stderr_tail(self, lines: int = 60) -> str:
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; returns the exit code (negative: killed by signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        self.exit_code = self.proc.returncode
        return self.exit_code


class ServerLauncher:
    """Starts real server processes from a config dict and stops every one it started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[ServerProcess] = []

    @staticmethod
    def free_port() -> int:
        return free_port()

    def start(self, make_config: Any, name: str = "portico", attempts: int = 3) -> ServerProcess:
        """`make_config(port)` returns the config dict for a server listening on that port.

        A port picked by free_port() can be taken by someone else before the server binds it, so a
        server that dies saying so is started again on a new port.
        """
        last = ""
        for attempt in range(attempts):
            port = free_port()
            server = self._start_once(make_config(port), port, f"{name}-{attempt}")
            if isinstance(server, ServerProcess):
                return server
            last = server
            if "address already in use" not in last.lower() and "errno 98" not in last.lower():
                break
        pytest.fail(f"portico serve did not become ready:\n{last}", pytrace=False)

    def _start_once(self, config: dict[str, Any], port: int, tag: str) -> ServerProcess | str:
        config_path = self.workdir / f"{tag}.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        stderr_path = self.workdir / f"{tag}.stderr.log"
        issuer = str(config["issuer"]).rstrip("/")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env["PYTHONUNBUFFERED"] = "1"
        # Each test server gets its own admin socket, unless the test chose one: servers running side by
        # side must not fight over the default path.
        # (a short folder of its own: a Unix socket path is limited to 107 bytes)
        socket_dir = tempfile.mkdtemp(prefix="portico-")
        env.setdefault("PORTICO_ADMIN_SOCKET", os.path.join(socket_dir, "admin.sock"))
        # The checkout itself, first: the server under test is this tree even without `pip install -e`.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with stderr_path.open("wb") as err, (self.workdir / f"{tag}.stdout.log").open("wb") as out:
            started = time.monotonic()
            proc = subprocess.Popen(
                [*server_command(), "serve", str(config_path)],
                cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            )
        server = ServerProcess(proc, port, issuer, config_path, stderr_path, cold_start_s=0.0)
        self.started.append(server)
        deadline = started + READY_TIMEOUT_S
        last_error = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    return f"exited with code {proc.returncode} before ready; stderr:\n{server.stderr_tail()}"
                try:
                    response = client.get(f"{issuer}/healthz")
                    if response.status_code == 200:
                        server.cold_start_s = time.monotonic() - started
                        return server
                    last_error = f"healthz answered {response.status_code}: {response.text[:200]}"
                except httpx.TransportError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.05)
        server.stop()
        return (f"not ready after {READY_TIMEOUT_S:.0f} s ({last_error}); stderr:\n{server.stderr_tail()}")

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def free_tcp_port() -> int:
    return free_port()


@pytest.fixture
def portico_launcher(tmp_path: Path) -> Iterator[ServerLauncher]:
    """Function-scoped launcher: every server it started is stopped when the test ends."""
    launcher = ServerLauncher(tmp_path)
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def portico_module_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerLauncher]:
    """Module-scoped launcher, for a server that several tests of one module share."""
    launcher = ServerLauncher(tmp_path_factory.mktemp("portico-module"))
    yield launcher
    launcher.stop_all()


@pytest.fixture
def report_figure(record_property: Any) -> Any:
    """report_figure(name, value): printed in the run's closing summary (also under xdist)."""

    def report(name: str, value: object) -> None:
        record_property(f"{FIGURE_PREFIX}{name}", value)

    return report


_figures: list[tuple[str, str, object]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for key, value in report.user_properties:
        if key.startswith(FIGURE_PREFIX):
            _figures.append((report.nodeid, key.removeprefix(FIGURE_PREFIX), value))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _figures:
        return
    terminalreporter.section("figures")
    for nodeid, name, value in sorted(_figures, key=lambda item: (item[1], item[0])):
        terminalreporter.write_line(f"{name}: {value}  ({nodeid})")
