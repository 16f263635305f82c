"""The systemd notification client (sd_notify): readiness, status, reload, stop and watchdog pings."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier", "run_watchdog"]

log = logging.getLogger("portico.sdnotify")

# systemd reads at most one pipe buffer (4096 bytes) per datagram and drops a longer one whole, so a
# long status line is cut rather than losing the READY=1 that travels with it.
_STATUS_MAX = 1024


class Notifier:
    """Sends sd_notify(3) messages to the socket named by $NOTIFY_SOCKET.

    Without $NOTIFY_SOCKET (not started by systemd, or not Type=notify) every method is a no-op, so
    the caller never checks. Sending never blocks and never raises: a lost notification is logged at
    debug level, because no notification is worth crashing an identity provider for. Each method
    returns True when the datagram was handed to the kernel, which only tests and logs need.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when a notification socket was given."""
        return self._address is not None

    def ready(self, status: str = "") -> bool:
        """Start-up (or a reload) is complete: systemd starts the units ordered after this one."""
        return self._send("READY=1", *_status_field(status))

    def reloading(self) -> bool:
        """A reload began; call ready() when it ends.

        MONOTONIC_USEC lets systemd 253+ (Type=notify-reload) match this message to the reload it
        asked for; systemd 252 ignores the unknown field, so sending it is harmless there.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutdown began: systemd shows "deactivating" instead of assuming a crash."""
        return self._send("STOPPING=1")

    def status(self, text: str) -> bool:
        """A one-line human status, shown by `systemctl status`."""
        return self._send(*_status_field(text))

    def watchdog(self) -> bool:
        """Tell systemd the process is alive (WatchdogSec=)."""
        return self._send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """The watchdog timeout in seconds, or None when systemd does not expect pings from us.

        $WATCHDOG_PID names the process systemd started. It is usually this process; it may also be
        our parent, because a PyInstaller one-file build runs Python in a child of its bootloader
        (the unit's main PID). Any other process inherited the variables and must not ping.
        """
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                pid = int(self._watchdog_pid)
            except ValueError:
                return None
            if pid not in (os.getpid(), os.getppid()):
                return None
        return usec / 1_000_000

    def close(self) -> None:
        """Close the socket; a later notification opens a new one."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, *fields: str) -> bool:
        if self._address is None or not fields:
            return False
        message = "\n".join(fields).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, self._address)
        except OSError as exc:
            # A socket that failed once may be in a bad state: the next message opens a fresh one.
            self.close()
            log.debug("sd_notify %s failed: %s", fields[0].split("=", 1)[0], exc)
            return False
        return True


def _socket_address(value: str) -> str | None:
    """The AF_UNIX address for $NOTIFY_SOCKET: a path, or "@name" for the abstract namespace."""
    if not hasattr(socket, "AF_UNIX"):
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value:
        # vsock: and other transports of newer systemd versions are not spoken here.
        log.debug("NOTIFY_SOCKET %r is not a Unix socket address; notifications are off", value)
    return None


def _status_field(text: str) -> tuple[str, ...]:
    """STATUS=text as one field: a newline would start a new assignment (a status of "x\\nREADY=1"
    would declare readiness), and NUL ends the message for systemd."""
    if not text:
        return ()
    clean = " ".join(text.replace("\0", " ").split())
    return (f"STATUS={clean[:_STATUS_MAX]}",)


async def run_watchdog(notifier: Notifier, interval: float) -> None:
    """Ping the watchdog every `interval / 2` seconds until cancelled.

    `interval` is Notifier.watchdog_interval(). The ping runs on the event loop on purpose: if the
    loop stalls the pings stop and systemd restarts the service, which is the failure this detects.
    Never returns and never raises except CancelledError; a failed ping is retried next period.
    """
    if interval <= 0:
        raise ValueError(f"watchdog interval must be positive, got {interval!r}")
    period = interval / 2
    while True:
        try:
            notifier.watchdog()
        except Exception as exc:
            # Notifier swallows OSError itself; this keeps the loop alive whatever else happens,
            # since a dead ping task means systemd kills a healthy server.
            log.debug("watchdog ping failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(period)
