"""The admin API: JSON over HTTP/1.1 on a Unix socket, callers identified by SO_PEERCRED, audited.

Plain asyncio rather than a second Quart app behind Hypercorn: the caller's uid/pid must come from
the connection's socket (SO_PEERCRED), which ASGI does not expose, and the API is a small local
table of routes that must keep answering even when the public app is misconfigured.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import pwd
import re
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from appliance.admin.audit import AuditTrail, Caller
from appliance.admin.connectors import ConnectorService, InvalidConnector
from appliance.admin.lockouts import LockoutService
from appliance.admin.metrics import Metrics
from appliance.admin.service import AdminService, BadRequest, ReadOnly
from appliance.clock import Clock
from appliance.errors import AlreadyExists, ConnectorError, NotFound, PorticoError
from appliance.mfa.admin import reset_totp, with_totp

__all__ = ["AdminServer", "AdminSocketBusy", "Request"]

log = logging.getLogger("portico.admin")

MAX_BODY = 1024 * 1024
READ_TIMEOUT_S = 10.0
_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
            500: "Internal Server Error", 502: "Bad Gateway"}


class AdminSocketBusy(PorticoError):
    """Another live process answers on the admin socket path."""


class _HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    caller: Caller


@dataclass(frozen=True)
class Text:
    """A non-JSON answer (the Prometheus exposition)."""

    body: str
    content_type: str = "text/plain; version=0.0.4"


Handler = Callable[[Request], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    action: str = ""  # audit name of a mutating call; "" for reads
    target: str = ""  # the path parameter or body key naming the object


def peer_credentials(sock: socket.socket) -> Caller:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Caller(pid=pid, uid=uid, gid=gid)


@dataclass
class AdminServer:
    service: AdminService
    connectors: ConnectorService
    audit: AuditTrail
    metrics: Metrics
    clock: Clock
    path: str
    mode: int = 0o660
    group: str = ""  # chgrp the socket to this group (its members may call); "" keeps the process's
    _server: asyncio.AbstractServer | None = field(default=None, init=False)
    _routes: list[Route] = field(default_factory=list, init=False)
    _group_gid: int = field(default=-1, init=False)
    _member_cache: dict[int, bool] = field(default_factory=dict, init=False)

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._routes = self._table()
        await asyncio.to_thread(self._prepare_path)
        self._server = await asyncio.start_unix_server(self._connection, path=self.path)
        await asyncio.to_thread(self._set_permissions)
        log.info("admin API on unix:%s (mode %04o, group %s)", self.path, self.mode,
                 _group_name(self._group_gid))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def _prepare_path(self) -> None:
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, mode=0o750, exist_ok=True)
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise AdminSocketBusy(f"{self.path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.path)
        except OSError:
            os.unlink(self.path)  # a stale socket left by a process that died
            return
        finally:
            probe.close()
        raise AdminSocketBusy(f"another process answers on {self.path}")

    def _set_permissions(self) -> None:
        if self.group:
            os.chown(self.path, -1, grp.getgrnam(self.group).gr_gid)
        os.chmod(self.path, self.mode)
        self._group_gid = os.stat(self.path).st_gid

    # --- who may call -----------------------------------------------------------------------------

    async def _allowed(self, caller: Caller) -> bool:
        """root, the server's own user, and members of the socket's group (primary or supplementary)."""
        if caller.uid in (0, os.geteuid()) or caller.gid == self._group_gid:
            return True
        cached = self._member_cache.get(caller.uid)
        if cached is None:
            cached = await asyncio.to_thread(_in_group, caller.uid, self._group_gid)
            self._member_cache[caller.uid] = cached
        return cached

    # --- HTTP -------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            caller = peer_credentials(writer.get_extra_info("socket"))
            try:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    method, target, body = await _read_request(reader)
                status, payload = await self._dispatch(caller, method, target, body)
            except _HTTPError as exc:
                status, payload = exc.status, {"error": exc.code, "message": exc.message}
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
                return
            if isinstance(payload, Text):
                data, ctype = payload.body.encode(), payload.content_type
            else:
                data, ctype = json.dumps(payload, default=str).encode(), "application/json"
            head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode("latin-1") + data)
            await writer.drain()
        except ConnectionError:
            pass  # the caller left before the answer (a console leaving a long-polled audit tail)
        except Exception:
            log.exception("admin API connection failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(self, caller: Caller, method: str, target: str, raw: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        route, params, allowed_methods = self._match(method, url.path)
        if route is None:
            if allowed_methods:
                accepted = ", ".join(allowed_methods)
                raise _HTTPError(405, "method_not_allowed", f"{url.path} accepts {accepted}")
            raise _HTTPError(404, "not_found", f"no such endpoint: {method} {url.path}")
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            raise _HTTPError(400, "bad_json", f"the body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise _HTTPError(400, "bad_json", "the body must be a JSON object")
        self.metrics.admin_calls += 1
        action = route.action or f"read {url.path}"
        item = params.get(route.target) or str(body.get(route.target, "")) if route.target else ""
        if not await self._allowed(caller):
            self.metrics.admin_denied += 1
            log.warning("admin API: uid %d (pid %d) refused: %s %s", caller.uid, caller.pid, method, url.path)
            await self._audit(caller, action, item, body, "denied")
            return 403, {"error": "forbidden", "message": f"uid {caller.uid} may not use the admin API: "
                         f"ask for membership of group {_group_name(self._group_gid)!r}"}
        req = Request(method, url.path, params, dict(parse_qsl(url.query)), body, caller)
        try:
            result = await route.handler(req)
            status, outcome = (201 if route.action.endswith(".create") else 200), "ok"
        except Exception as exc:
            status, code, message = _error_of(exc)
            result, outcome = {"error": code, "message": message}, f"error: {message}"
            if isinstance(exc, InvalidConnector):  # where each problem is, for the console's form
                result["problems"] = exc.problems
        if route.action:
            if isinstance(result, dict) and not item:
                item = str(result.get("id", "") or result.get("email", ""))
            await self._audit(caller, route.action, item, body, outcome)
        return status, result

    async def _audit(self, caller: Caller, action: str, target: str, body: dict[str, Any],
                     result: str) -> None:
        try:
            await self.audit.write(caller, self.clock.now(), action, target, body, result)
        except Exception:
            log.exception("admin API: could not write the audit event for %s", action)

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
        methods: list[str] = []
        for route in self._routes:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method != method:
                methods.append(route.method)
                continue
            return route, {k: unquote(v) for k, v in m.groupdict().items()}, []
        return None, {}, methods

    def _table(self) -> list[Route]:
        s, c = self.service, self.connectors
        lk = LockoutService(s.deps)

        def r(method: str, path: str, handler: Handler, action: str = "", target: str = "") -> Route:
            pattern = re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path))
            return Route(method, pattern, handler, action, target)

        return [
            r("GET", "/v1/overview", lambda q: s.overview()),
            r("GET", "/v1/metrics", self._metrics),
            r("GET", "/v1/config", lambda q: s.config()),
            r("POST", "/v1/reload", lambda q: s.reload(), "config.reload"),
            r("GET", "/v1/clients", lambda q: s.clients()),
            r("POST", "/v1/clients", lambda q: s.create_client(q.body), "clients.create", "id"),
            r("GET", "/v1/clients/{id}", lambda q: s.client(q.params["id"])),
            r("PATCH", "/v1/clients/{id}", lambda q: s.update_client(q.params["id"], q.body),
              "clients.update", "id"),
            r("DELETE", "/v1/clients/{id}", lambda q: s.delete_client(q.params["id"]),
              "clients.delete", "id"),
            r("GET", "/v1/users", lambda q: with_totp(s.deps, s.users())),
            r("POST", "/v1/users", lambda q: s.create_user(q.body), "users.create", "email"),
            r("PATCH", "/v1/users/{email}", lambda q: s.update_user(q.params["email"], q.body),
              "users.update", "email"),
            r("POST", "/v1/users/{email}/password", lambda q: s.set_password(q.params["email"], q.body),
              "users.password", "email"),
            r("DELETE", "/v1/users/{email}", lambda q: s.delete_user(q.params["email"]),
              "users.delete", "email"),
            r("POST", "/v1/users/{email}/totp/reset", lambda q: reset_totp(s.deps, q.params["email"]),
              "users.totp_reset", "email"),
            r("GET", "/v1/connectors", lambda q: c.list()),
            r("GET", "/v1/connector-types", self._forms),
            r("POST", "/v1/connectors/validate", lambda q: c.validate(q.body), "connectors.validate", "id"),
            r("POST", "/v1/connectors/{id}/validate", lambda q: c.validate(q.body, q.params["id"]),
              "connectors.validate", "id"),
            r("POST", "/v1/connectors", lambda q: c.create(q.body), "connectors.create", "id"),
            r("PATCH", "/v1/connectors/{id}", lambda q: c.update(q.params["id"], q.body),
              "connectors.update", "id"),
            r("DELETE", "/v1/connectors/{id}", lambda q: c.delete(q.params["id"]), "connectors.delete", "id"),
            r("POST", "/v1/connectors/{id}/test", lambda q: c.test(q.params["id"], q.body),
              "connectors.test", "id"),
            r("GET", "/v1/sessions", lambda q: s.sessions(q.query.get("user", ""))),
            r("DELETE", "/v1/sessions/{id}", lambda q: s.revoke(q.params["id"]), "sessions.revoke", "id"),
            r("POST", "/v1/sessions/revoke", lambda q: s.revoke_user(str(q.body.get("user", ""))),
              "sessions.revoke_user", "user"),
            r("GET", "/v1/keys", lambda q: s.keys()),
            r("POST", "/v1/keys/rotate", lambda q: s.rotate_keys(), "keys.rotate"),
            r("GET", "/v1/audit", self._audit_tail),
            r("GET", "/v1/lockouts", lambda q: lk.list(q.query.get("all", "") in ("1", "true"))),
            r("DELETE", "/v1/lockouts/{id}", lambda q: lk.clear(q.params["id"]), "lockouts.clear", "id"),
            r("POST", "/v1/lockouts/clear", lambda q: lk.clear_matching(q.body), "lockouts.clear"),
        ]

    async def _metrics(self, req: Request) -> Any:
        if req.query.get("format") == "prometheus":
            return Text(self.metrics.prometheus())
        return self.metrics.as_dict()

    async def _forms(self, req: Request) -> Any:
        return self.connectors.forms()

    async def _audit_tail(self, req: Request) -> Any:
        try:
            limit = int(req.query.get("limit", "200"))
            wait = float(req.query.get("wait", "0"))
        except ValueError as exc:
            raise BadRequest("limit and wait must be numbers") from exc
        events = await self.audit.tail(req.query.get("after", ""), max(1, min(limit, 1000)), wait,
                                       req.query.get("q", ""))
        return [{"id": e.id, "time": e.time.isoformat(), "uid": e.uid, "pid": e.pid, "gid": e.gid,
                 "action": e.action, "target": e.target, "details": e.details, "result": e.result}
                for e in events]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    line = (await reader.readuntil(b"\r\n")).decode("latin-1").split()
    if len(line) != 3 or not line[2].startswith("HTTP/1."):
        raise _HTTPError(400, "bad_request", "not an HTTP/1.x request")
    headers: dict[str, str] = {}
    for _ in range(100):
        raw = await reader.readuntil(b"\r\n")
        if raw == b"\r\n":
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or "0")
    if length > MAX_BODY:
        raise _HTTPError(413, "too_large", f"the body is over {MAX_BODY} bytes")
    body = await reader.readexactly(length) if length else b""
    return line[0].upper(), line[1], body


def _error_of(exc: Exception) -> tuple[int, str, str]:
    if isinstance(exc, NotFound):
        return 404, "not_found", str(exc)
    if isinstance(exc, AlreadyExists):
        return 409, "exists", str(exc)
    if isinstance(exc, ReadOnly):
        return 409, "read_only", str(exc)
    if isinstance(exc, BadRequest):
        return 400, "bad_request", str(exc)
    if isinstance(exc, ConnectorError):
        return 502, "connector_error", str(exc)
    if isinstance(exc, PorticoError):
        return 500, "error", str(exc)
    log.exception("admin API: internal error", exc_info=exc)
    return 500, "internal", "internal error; see the server log"


def _in_group(uid: int, gid: int) -> bool:
    try:
        name = pwd.getpwuid(uid).pw_name
        group = grp.getgrgid(gid)
    except KeyError:
        return False
    return name in group.gr_mem


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
