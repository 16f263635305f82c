"""Serving a fake upstream: a Quart app under Hypercorn on 127.0.0.1, in its own thread and event loop."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

STARTUP_TIMEOUT = 10.0


class FakeServer:
    """One app on a loopback port picked by the kernel. TLS when a certificate and key are given.

    The thread owns its loop, so a server outlives any one test's event loop (session fixtures).
    """

    def __init__(self, app: Any, certfile: Path | None = None, keyfile: Path | None = None) -> None:
        self.app = app
        self._certfile = certfile
        self._keyfile = keyfile
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = int(self._sock.getsockname()[1])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"fake-{self.port}", daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        scheme = "https" if self._certfile else "http"
        return f"{scheme}://{self.host}"

    def _config(self) -> Config:
        config = Config()
        # Hypercorn takes the descriptor over (and closes it when it stops).
        config.bind = [f"fd://{self._sock.detach()}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("fakes.hypercorn")
        config.graceful_timeout = 0.5
        if self._certfile and self._keyfile:
            config.certfile = str(self._certfile)
            config.keyfile = str(self._keyfile)
        return config

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await serve(self.app, self._config(), shutdown_trigger=self._stop.wait)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test through start()/stop()
            self._error = exc
            self._ready.set()

    def start(self) -> FakeServer:
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT) or self._error is not None:
            raise RuntimeError(f"fake server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STARTUP_TIMEOUT)
        if self._sock.fileno() != -1:  # never handed over: the server did not start
            self._sock.close()
