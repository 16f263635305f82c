"""The admin API client (stdlib only): the socket's default path, and calls with clear failures.

The console and the CLI subcommands use this module and nothing else of `appliance.admin`: it is
the wire contract, and it never touches the database.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["AdminAPIError", "AdminClient", "AdminUnavailable", "answer", "default_socket_path",
           "server_socket_path", "unavailable"]

SOCKET_NAME = "admin.sock"
ENV_SOCKET = "PORTICO_ADMIN_SOCKET"
SYSTEM_DIR = "/run/portico"


class AdminUnavailable(Exception):
    """The server cannot be reached: not running, wrong path, or no permission (the text says which)."""


class AdminAPIError(Exception):
    """The server answered with an error."""

    def __init__(self, status: int, code: str, message: str,
                 problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        # Where each problem is ({"path": "config.host", "message": ...}), when the server says.
        self.problems = problems or []


def _user_dir() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime:
        return os.path.join(runtime, "portico")
    return f"/tmp/portico-{os.getuid()}"  # noqa: S108 - a per-user folder, created 0700 by the server


def server_socket_path(configured: str = "") -> str:
    """Where `portico serve` listens when --admin-socket is not given: $PORTICO_ADMIN_SOCKET, the config
    file's admin.socket (`configured`, relative to the working directory), systemd's
    $RUNTIME_DIRECTORY, /run/portico for root, else the user's runtime folder."""
    if os.environ.get(ENV_SOCKET):
        return os.environ[ENV_SOCKET]
    if configured:
        return os.path.abspath(configured)
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return os.path.join(runtime, SOCKET_NAME)
    if os.geteuid() == 0:
        return os.path.join(SYSTEM_DIR, SOCKET_NAME)
    return os.path.join(_user_dir(), SOCKET_NAME)


def default_socket_path() -> str:
    """Where a client looks: $PORTICO_ADMIN_SOCKET, else the system socket when it exists (an operator
    calling the systemd service), else the user's own."""
    if os.environ.get(ENV_SOCKET):
        return os.environ[ENV_SOCKET]
    for candidate in (os.path.join(SYSTEM_DIR, SOCKET_NAME), os.path.join(_user_dir(), SOCKET_NAME)):
        if os.path.exists(candidate):
            return candidate
    return server_socket_path()


def unavailable(path: str, exc: OSError) -> AdminUnavailable:
    """Why the socket at `path` cannot be used, in words that say what to do."""
    if isinstance(exc, FileNotFoundError):
        return AdminUnavailable(f"no admin socket at {path}: is `portico serve` running? "
                                f"(set {ENV_SOCKET} or --socket if it listens elsewhere)")
    if isinstance(exc, PermissionError):
        return AdminUnavailable(f"permission denied on {path}: run as the service user or root, or join "
                                "the group that owns the socket (e.g. `usermod -aG portico $USER`, then "
                                "log in again)")
    if isinstance(exc, ConnectionRefusedError):
        return AdminUnavailable(f"nobody answers on {path}: the server is not running "
                                "(a stale socket file was left behind)")
    if exc.errno in (errno.ENOTSOCK, errno.ECONNREFUSED):
        return AdminUnavailable(f"{path} is not a live admin socket")
    return AdminUnavailable(f"cannot talk to {path}: {exc}")


def answer(status: int, content_type: str, raw: bytes) -> Any:
    """The payload of a response (JSON, or text), or AdminAPIError for an error status."""
    payload: Any = json.loads(raw) if content_type.startswith("application/json") and raw else raw.decode()
    if status >= 400:
        if isinstance(payload, dict):
            problems = payload.get("problems")
            raise AdminAPIError(status, str(payload.get("error", "")), str(payload.get("message", payload)),
                                problems if isinstance(problems, list) else None)
        raise AdminAPIError(status, "error", str(payload))
    return payload


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("portico", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class AdminClient:
    """Blocking calls to the admin API (the console runs them in a worker thread)."""

    def __init__(self, path: str | None = None, timeout: float = 30.0) -> None:
        self.path = path or default_socket_path()
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             query: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        target = path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else b""
        conn = _UnixConnection(self.path, timeout or self.timeout)
        try:
            try:
                conn.request(method, target, body=data,
                             headers={"Content-Type": "application/json", "Content-Length": str(len(data))})
                response = conn.getresponse()
                raw = response.read()
            except OSError as exc:
                raise unavailable(self.path, exc) from exc
        finally:
            conn.close()
        return answer(response.status, response.getheader("Content-Type", ""), raw)

    # Convenience wrappers: one per endpoint the console and CLI use.

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, query={k: v for k, v in query.items() if v not in (None, "")})

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, body or {})

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)

    @staticmethod
    def item(kind: str, key: str, *rest: str) -> str:
        """`/v1/{kind}/{key}` with the key escaped (emails, ids with odd characters)."""
        return "/".join([f"/v1/{kind}", quote(key, safe="@"), *rest])
