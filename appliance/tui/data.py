"""The console's data layer: admin API calls on the event loop, cancellable. No UI imports here."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol
from urllib.parse import urlencode

from appliance.admin.client import AdminAPIError, AdminClient, AdminUnavailable, answer, unavailable

__all__ = ["AdminAPIError", "AdminUnavailable", "Api", "SocketApi"]

_MAX_ANSWER = 16 * 1024 * 1024


class Api(Protocol):
    """What the screens call: one JSON request to the admin API."""

    @property
    def where(self) -> str: ...

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   query: dict[str, Any] | None = None) -> Any: ...


class SocketApi:
    """The admin API over its Unix socket, spoken by asyncio (the wire contract of AdminClient: one
    request per connection, which the server closes after its answer).

    Async rather than AdminClient in a worker thread: a call can be cancelled at once (leaving a
    screen, quitting), which the audit screen's long-polling tail needs; a thread would hold the
    console open until the server answered.
    """

    def __init__(self, client: AdminClient) -> None:
        self._path = client.path
        self._timeout = client.timeout

    @property
    def where(self) -> str:
        return self._path

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   query: dict[str, Any] | None = None) -> Any:
        clean = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        target = path + (f"?{urlencode(clean)}" if clean else "")
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {target} HTTP/1.1\r\nHost: portico\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode("latin-1")
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_unix_connection(self._path, limit=_MAX_ANSWER)
                try:
                    writer.write(head + data)
                    await writer.drain()
                    raw = await reader.read(_MAX_ANSWER)
                    while chunk := await reader.read(_MAX_ANSWER):
                        raw += chunk
                finally:
                    writer.close()
        except TimeoutError as exc:
            raise AdminUnavailable(f"no answer from {self._path} within {self._timeout:.0f} s") from exc
        except OSError as exc:
            raise unavailable(self._path, exc) from exc
        return _parse(raw, self._path)


def _parse(raw: bytes, where: str) -> Any:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if not sep or len(status_line) < 2 or not status_line[1].isdigit():
        raise AdminUnavailable(f"{where} answered something that is not HTTP")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "")
    if length.isdigit():
        body = body[: int(length)]
    return answer(int(status_line[1]), headers.get("content-type", ""), body)
