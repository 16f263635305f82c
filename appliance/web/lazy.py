"""An ASGI app imported and built on the first request that reaches it: the Quart app behind the fast path."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from appliance.web.lifespan import Lifespan, answer_lifespan

__all__ = ["LazyApp"]

log = logging.getLogger("portico.web")

A = TypeVar("A", bound=Callable[..., Any])

_FAILED_BODY = b"Internal Server Error\n"
_FAILED_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"),
                   (b"content-length", str(len(_FAILED_BODY)).encode()), (b"cache-control", b"no-store")]


class LazyApp(Generic[A]):
    """Stands in for an ASGI app until a request needs it; then `load` runs in a thread (the imports:
    a few tenths of a second of blocking work, during which the event loop goes on serving), `build`
    makes the app on the loop, and the app's lifespan starts (Quart's before_serving hooks) before the
    request is handed over. Requests that arrive meanwhile wait for that one build.

    The build is a task of its own, so a first request that is cancelled (its client left) does not
    cancel it for the others. A build that fails is logged, its requests are answered 500, and the
    next request tries again.

    The servers' lifespan ends here: their startup completes at once (nothing is built), and their
    shutdown ends the app's lifespan if the app was built.
    """

    def __init__(self, build: Callable[[], A], load: Callable[[], object] | None = None) -> None:
        self._build = build
        self._load = load
        self._app: A | None = None
        self._lifespan: Lifespan | None = None
        self._building: asyncio.Task[A] | None = None
        self.builds = 0  # how many builds ran (tests count them)

    @property
    def app(self) -> A | None:
        """The app, once built (None before)."""
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send, self.aclose)
            return
        app = self._app
        if app is None:
            try:
                app = await self.get()
            except Exception:  # logged by the build; the request still gets an answer
                await _answer_failed(send)
                return
        await app(scope, receive, send)

    async def get(self) -> A:
        """The app, built now if it is not yet (once, whoever asks at the same time)."""
        if self._app is not None:
            return self._app
        task = self._building
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            # A context of its own: the build must not carry the first request's id into its logs.
            task = asyncio.create_task(self._start(), name="web-app-build", context=contextvars.Context())
            task.add_done_callback(_retrieve)  # every waiter may have left: the failure is logged anyway
            self._building = task
        return await asyncio.shield(task)

    async def _start(self) -> A:
        self.builds += 1
        started = time.monotonic()
        try:
            if self._load is not None:
                await asyncio.to_thread(self._load)
            app = self._build()
            lifespan = Lifespan(app)
            await lifespan.startup()
        except Exception:
            log.exception("the web app could not be built; the next request tries again")
            raise
        self._lifespan = lifespan
        self._app = app
        log.info("web app built on first use in %.0f ms", (time.monotonic() - started) * 1000)
        return app

    async def aclose(self) -> None:
        """End the app's lifespan, if it was built (after a build in progress finishes)."""
        task = self._building
        if task is not None and not task.done():
            await asyncio.gather(task, return_exceptions=True)
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is not None:
            await lifespan.shutdown()


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _answer_failed(send: Any) -> None:
    await send({"type": "http.response.start", "status": 500, "headers": list(_FAILED_HEADERS)})
    await send({"type": "http.response.body", "body": _FAILED_BODY})
