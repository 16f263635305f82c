"""The ASGI server adapter: the only module that knows which server runs the app (Hypercorn today)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.utils import wrap_app

from appliance.errors import PorticoError

log = logging.getLogger("portico.server")


@dataclass(frozen=True)
class Listener:
    """One address to listen on; TLS when both cert and key are given."""

    address: str  # "host:port"
    tls_cert: str = ""
    tls_key: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"


class ListenError(PorticoError):
    """A listener could not be opened (address in use, permission denied, bad TLS files)."""


def _hypercorn_config(listeners: list[Listener], graceful_timeout: float) -> HypercornConfig:
    tls = [item for item in listeners if item.tls]
    plain = [item for item in listeners if not item.tls]
    if len({(item.tls_cert, item.tls_key) for item in tls}) > 1:
        raise ListenError("all TLS listeners must share one certificate and key")
    config = HypercornConfig()
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("portico.hypercorn")
    config.keep_alive_timeout = 75
    if tls:
        config.certfile = tls[0].tls_cert
        config.keyfile = tls[0].tls_key
        config.bind = [item.address for item in tls]
        config.insecure_bind = [item.address for item in plain]
    else:
        config.bind = [item.address for item in plain]
    return config


async def serve(
    app: Any,
    listeners: list[Listener],
    shutdown: asyncio.Event,
    *,
    graceful_timeout: float = 10.0,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve `app` on every listener until `shutdown` is set, then finish requests in flight.

    The sockets are bound before serving starts, so a bad address fails here with a clear error and
    `on_ready` runs only once every listener accepts connections.
    """
    config = _hypercorn_config(listeners, graceful_timeout)
    try:
        if config.ssl_enabled:
            config.create_ssl_context()  # surface unreadable or mismatched TLS files before binding
        sockets = config.create_sockets()
        for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
            sock.listen(config.backlog)  # from here connections queue instead of being refused
    except OSError as exc:
        raise ListenError(f"cannot listen on {', '.join(item.url for item in listeners)}: {exc}") from exc
    except (ValueError, FileNotFoundError) as exc:
        raise ListenError(f"cannot set up the listeners: {exc}") from exc

    async def trigger() -> None:
        await shutdown.wait()

    served = asyncio.ensure_future(
        worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config, sockets=sockets,
                     shutdown_trigger=trigger)
    )
    for item in listeners:
        log.info("listening on %s", item.url)
    if on_ready is not None:
        on_ready()
    await served
