"""The sd_notify client against a real AF_UNIX datagram socket, as systemd's notify socket is."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.cli.sdnotify import Notifier, run_watchdog

# sun_path holds 108 bytes; a deep pytest tmp_path can be longer than that.
_SUN_PATH_MAX = 107


class Receiver:
    """The systemd side: a bound datagram socket that collects what the notifier sends."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(2.0)

    def message(self) -> dict[str, str]:
        data = self.sock.recv(4096)
        assert b"\0" not in data
        fields = data.decode().split("\n")
        return dict(field.split("=", 1) for field in fields)

    def pending(self) -> int:
        """How many datagrams are queued, without waiting for more."""
        self.sock.setblocking(False)
        count = 0
        try:
            while True:
                self.sock.recv(4096)
                count += 1
        except BlockingIOError:
            return count
        finally:
            self.sock.settimeout(2.0)


@pytest.fixture
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    if len(str(tmp_path / "notify.sock")) <= _SUN_PATH_MAX:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="sdn-"))
    yield short
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def receiver(socket_dir: Path) -> Iterator[tuple[Receiver, str]]:
    path = str(socket_dir / "notify.sock")
    rx = Receiver(path)
    yield rx, path
    rx.sock.close()


def test_path_socket_receives_each_message(receiver: tuple[Receiver, str]) -> None:
    rx, path = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled

    assert notifier.ready("serving https://id.example.com/dex")
    assert rx.message() == {"READY": "1", "STATUS": "serving https://id.example.com/dex"}

    assert notifier.ready()
    assert rx.message() == {"READY": "1"}

    assert notifier.status("rotating keys")
    assert rx.message() == {"STATUS": "rotating keys"}

    assert notifier.watchdog()
    assert rx.message() == {"WATCHDOG": "1"}

    assert notifier.stopping()
    assert rx.message() == {"STOPPING": "1"}
    notifier.close()


def test_reloading_carries_the_monotonic_clock(receiver: tuple[Receiver, str]) -> None:
    rx, path = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    message = rx.message()
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after
    assert set(message) == {"RELOADING", "MONOTONIC_USEC"}


def test_status_cannot_smuggle_other_assignments(receiver: tuple[Receiver, str]) -> None:
    rx, path = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.status("bad config\nREADY=1\0STOPPING=1")
    assert rx.message() == {"STATUS": "bad config READY=1 STOPPING=1"}
    assert notifier.status("x" * 5000)
    assert len(rx.message()["STATUS"]) == 1024


def test_abstract_namespace_socket() -> None:
    name = f"portico-test-{secrets.token_hex(8)}"
    rx = Receiver("\0" + name)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled
        assert notifier.ready("up")
        assert rx.message() == {"READY": "1", "STATUS": "up"}
        assert notifier.watchdog()
        assert rx.message() == {"WATCHDOG": "1"}
    finally:
        rx.sock.close()


@pytest.mark.parametrize("value", ["", "@", "vsock:2:1234", "relative/notify.sock"])
def test_without_a_usable_socket_every_call_is_a_noop(value: str) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": value} if value else {})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.reloading()
    assert not notifier.status("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    notifier.close()


def test_reads_the_process_environment_by_default(
    receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rx, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert Notifier().ready()
    assert rx.message() == {"READY": "1"}
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not Notifier().enabled


def test_a_vanished_socket_is_swallowed_and_a_new_one_is_used(socket_dir: Path) -> None:
    path = str(socket_dir / "notify.sock")
    notifier = Notifier({"NOTIFY_SOCKET": path})
    # Nobody listens yet: the send fails quietly.
    assert not notifier.ready()
    rx = Receiver(path)
    try:
        # systemd (re)created its socket: the next message gets through.
        assert notifier.watchdog()
        assert rx.message() == {"WATCHDOG": "1"}
    finally:
        rx.sock.close()
    os.unlink(path)
    assert not notifier.watchdog()


@pytest.mark.timeout(30)
def test_sending_never_blocks_when_the_receiver_is_full(receiver: tuple[Receiver, str]) -> None:
    rx, path = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    started = time.monotonic()
    results = [notifier.status("y" * 1000) for _ in range(5000)]
    # A blocking socket would hang here once the receive queue is full.
    assert time.monotonic() - started < 5.0
    assert results[0]
    assert not all(results), "the receive queue never filled; the test proves nothing"
    assert rx.pending() > 0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "self"}, 30.0),
        ({"WATCHDOG_USEC": "500000"}, 0.5),
        # A PyInstaller one-file build: systemd's main PID is the bootloader, our parent.
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "parent"}, 10.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "other"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "nonsense"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    pids = {"self": str(os.getpid()), "parent": str(os.getppid()), "other": str(2**22 + 7)}
    if "WATCHDOG_PID" in env:
        env = {**env, "WATCHDOG_PID": pids.get(env["WATCHDOG_PID"], env["WATCHDOG_PID"])}
    assert Notifier(env).watchdog_interval() == expected


async def test_run_watchdog_pings_at_half_the_interval(receiver: tuple[Receiver, str]) -> None:
    rx, path = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    task = asyncio.create_task(run_watchdog(notifier, 0.4))
    await asyncio.sleep(0.7)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rx.sock.setblocking(False)
    pings = []
    try:
        while True:
            pings.append(rx.sock.recv(4096))
    except BlockingIOError:
        pass
    # Half the interval pings at t = 0, 0.2, 0.4, 0.6 s; pinging once per interval would give 2.
    # Three is accepted: a loaded machine may wake the last sleep late.
    assert set(pings) == {b"WATCHDOG=1"}
    assert 3 <= len(pings) <= 4, pings


async def test_run_watchdog_survives_a_missing_socket(socket_dir: Path) -> None:
    path = str(socket_dir / "notify.sock")
    notifier = Notifier({"NOTIFY_SOCKET": path})
    task = asyncio.create_task(run_watchdog(notifier, 0.1))
    await asyncio.sleep(0.15)
    assert not task.done(), "the watchdog task died when nobody listened"
    rx = Receiver(path)
    try:
        await asyncio.sleep(0.15)
        assert not task.done()
        assert rx.message() == {"WATCHDOG": "1"}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rx.sock.close()


async def test_run_watchdog_refuses_a_nonsense_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        await run_watchdog(Notifier({}), 0)
