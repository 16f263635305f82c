"""The console's data layer: admin API calls off the UI thread. No UI imports here."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from appliance.admin.client import AdminAPIError, AdminClient, AdminUnavailable

__all__ = ["AdminAPIError", "AdminUnavailable", "Api", "SocketApi"]


class Api(Protocol):
    """What the screens call: one JSON request to the admin API."""

    @property
    def where(self) -> str: ...

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   query: dict[str, Any] | None = None) -> Any: ...


class SocketApi:
    """The admin API over its Unix socket; each call runs in a worker thread (the client blocks)."""

    def __init__(self, client: AdminClient) -> None:
        self._client = client

    @property
    def where(self) -> str:
        return self._client.path

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   query: dict[str, Any] | None = None) -> Any:
        clean = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        return await asyncio.to_thread(self._client.call, method, path, body, clean or None)
