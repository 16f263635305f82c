"""Running an ASGI app's lifespan by hand: once for several listeners, or for an app built after start."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from appliance.errors import PorticoError

__all__ = ["LIFESPAN_TIMEOUT", "Lifespan", "LifespanError", "NoLifespan"]

log = logging.getLogger("portico.server")

Scope = dict[str, Any]
ASGI = Callable[[Any, Any, Any], Any]

LIFESPAN_TIMEOUT = 60.0  # the app's after_serving hooks get this long at shutdown


class LifespanError(PorticoError):
    """The app failed its start-up (a before_serving hook raised, or the app refused the lifespan)."""


class Lifespan:
    """Runs an app's ASGI lifespan (Quart's before_serving/after_serving) from start-up to shutdown."""

    def __init__(self, app: ASGI) -> None:
        self._app = app
        self._inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._started: asyncio.Future[str] = loop.create_future()  # "" = complete, else why it failed
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        try:
            await self._app(scope, self._inbox.get, self._send)
        except Exception as exc:
            if not self._started.done():
                self._started.set_result(f"{type(exc).__name__}: {exc}")
            else:
                log.error("the web app's lifespan failed: %r", exc)
        finally:
            if not self._started.done():
                self._started.set_result("the app ended its lifespan before starting")
            if not self._stopped.done():
                self._stopped.set_result(None)

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed") and not self._started.done():
            self._started.set_result("" if kind.endswith("complete") else
                                     str(message.get("message") or "lifespan startup failed"))
        elif kind.startswith("lifespan.shutdown") and not self._stopped.done():
            if kind.endswith("failed"):
                log.error("the web app failed to stop cleanly: %s", message.get("message", ""))
            self._stopped.set_result(None)

    async def startup(self) -> None:
        """Start the app; LifespanError (after shutting it down again) when it fails to."""
        # A context of its own: started from a request (an app built on first use), the lifespan task
        # would otherwise carry that request's id into every line its hooks log, for good.
        self._task = asyncio.create_task(self._run(), name="lifespan", context=contextvars.Context())
        self._inbox.put_nowait({"type": "lifespan.startup"})
        failure = await self._started
        if failure:
            await self.shutdown()
            raise LifespanError(f"the web app failed to start: {failure}")

    async def shutdown(self) -> None:
        if self._task is None:
            return
        if not self._task.done():
            self._inbox.put_nowait({"type": "lifespan.shutdown"})
            await asyncio.wait([self._stopped, self._task], timeout=LIFESPAN_TIMEOUT,
                               return_when=asyncio.FIRST_COMPLETED)
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class NoLifespan:
    """The app for the servers when the lifespan runs elsewhere (Lifespan): answers theirs at once."""

    def __init__(self, app: ASGI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        await answer_lifespan(receive, send)


async def answer_lifespan(receive: Any, send: Any,
                          on_shutdown: Callable[[], Awaitable[None]] | None = None) -> None:
    """A server's lifespan, answered: startup completes at once; at shutdown `on_shutdown` (if given)
    is awaited before the shutdown completes."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            if on_shutdown is not None:
                await on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
