"""The ASGI server adapter: the only module that knows which server runs the app (Granian or Hypercorn)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appliance.errors import PorticoError
from appliance.web.lifespan import ASGI, Lifespan, LifespanError, NoLifespan
from appliance.web.tls import ServerTLS, StrictTransport, TLSFilesError, TLSSettings

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

log = logging.getLogger("portico.server")

# Both run inside this process's event loop. Granian's embedded server parses HTTP in Rust and serves
# the benchmark's light endpoints several times faster on one core (bench/README.md has the figures);
# Hypercorn stays supported (pure Python, no native code) and is the fallback where Granian is missing.
# HTTPS listeners are always Hypercorn on Python's ssl, whatever web.server says: Granian can neither
# cap the TLS version nor change certificates under open connections (docs/security.md, "TLS").
SERVERS = ("granian", "hypercorn")
DEFAULT_SERVER = "granian"
BACKLOG = 1024  # connections the kernel queues before accept
MAX_CONNECTIONS = 4096  # Granian's backpressure: open connections served at once per listener
# Several processes on one port (the benchmark's one-worker-per-core launcher sets it; not a setting).
REUSE_PORT = False


@dataclass(frozen=True)
class Listener:
    """One address to listen on; TLS when both cert and key are given."""

    address: str  # "host:port"
    tls_cert: str = ""
    tls_key: str = ""
    tls_min_version: str = ""  # "1.2" or "1.3"; "" = 1.2 (Dex's default)
    tls_max_version: str = ""  # "" = 1.3
    # The live certificate holder (reloads swap pairs in it); None: loaded from the fields above.
    tls_context: ServerTLS | None = field(default=None, compare=False)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"


class ListenError(PorticoError):
    """A listener could not be opened (address in use, permission denied, bad TLS files)."""


class ServerError(PorticoError):
    """The app failed its start-up, or the server stopped without being asked to."""


def resolve_server(name: str) -> str:
    """The server that will run: `name` ("" = the default), or Hypercorn when Granian is not installed."""
    name = name or DEFAULT_SERVER
    if name not in SERVERS:
        raise ServerError(f'unknown web server "{name}"; one of {", ".join(SERVERS)}')
    if name == "granian":
        try:
            import granian  # noqa: F401
        except ImportError:
            log.warning("web.server is granian but granian is not installed: serving with hypercorn")
            return "hypercorn"
    return name


async def serve(
    app: Any,
    listeners: list[Listener],
    shutdown: asyncio.Event,
    *,
    graceful_timeout: float = 10.0,
    on_ready: Callable[[], None] | None = None,
    server: str = "",
) -> None:
    """Serve `app` on every listener until `shutdown` is set, then finish requests in flight.

    The sockets are bound before serving starts, so a bad address fails here with a clear error and
    `on_ready` runs only once every listener accepts connections.
    """
    if any(item.tls for item in listeners):
        await _serve_with_tls(app, listeners, shutdown, graceful_timeout, on_ready, server)
    elif resolve_server(server) == "granian":
        await _serve_granian(app, listeners, shutdown, graceful_timeout, on_ready)
    else:
        await _serve_hypercorn(app, listeners, shutdown, graceful_timeout, on_ready)


def _split_address(address: str) -> tuple[str, int]:
    # As Hypercorn reads its binds: "[::1]:5556" -> ("::1", 5556); ":5556" -> ("", 5556), every address.
    host, _, port = address.replace("[", "").replace("]", "").rpartition(":")
    try:
        return host, int(port)
    except ValueError:
        raise ListenError(f'invalid listen address "{address}" (expected host:port)') from None


def _bind(listeners: list[Listener]) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets, one per listener (all closed again if one fails)."""
    sockets: list[socket.socket] = []
    try:
        for item in listeners:
            host, port = _split_address(item.address)
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if REUSE_PORT:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(BACKLOG)  # from here connections queue instead of being refused
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(f"cannot listen on {', '.join(item.url for item in listeners)}: {exc}") from exc
    except ListenError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _QuietEmbedded(logging.Filter):
    """Drops the warning Granian logs each time an embedded server starts (embedding is what we do)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "experimental" not in record.getMessage()


# Granian configures logging with dictConfig when a server is built; an incremental config only sets its
# logger's level, and leaves the process's handlers (our formatter, request ids, redaction) alone.
_GRANIAN_LOGGING: dict[str, Any] = {"incremental": True, "formatters": {}, "handlers": {}, "loggers": {}}


def _granian_servers(app: Any, listeners: list[Listener], graceful_timeout: float) -> list[Any]:
    from granian.constants import HTTPModes, Interfaces, TaskImpl
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server.embed import Server

    class Embedded(Server):
        """Granian's embedded server on a socket this module bound (Granian would bind its own with
        SO_REUSEPORT, so a second Portico on the same port would start silently instead of failing)."""

        holder: Any = None

        def _init_shared_socket(self) -> None:
            self._ssp = None
            self._shd = self.holder

    granian_log = logging.getLogger("_granian")
    if not any(isinstance(item, _QuietEmbedded) for item in granian_log.filters):
        granian_log.addFilter(_QuietEmbedded())
    servers = []
    for item in listeners:  # plain http only: TLS listeners are served by _serve_with_tls
        host, port = _split_address(item.address)
        embedded = Embedded(
            app, address=host, port=port, interface=Interfaces.ASGINL,  # the lifespan is run below
            http=HTTPModes.auto, websockets=False, backlog=BACKLOG, backpressure=MAX_CONNECTIONS,
            runtime_threads=1, task_impl=TaskImpl.asyncio,
            http1_settings=HTTP1Settings(header_read_timeout=30_000, keep_alive=True),
            log_level=LogLevels.warning, log_dictconfig=_GRANIAN_LOGGING, log_access=False,
        )
        # Past this bound, stopping stops waiting for requests in flight (Granian then raises TimeoutError).
        embedded.workers_kill_timeout = graceful_timeout  # type: ignore[assignment]
        servers.append(embedded)
    return servers


async def _serve_granian(app: Any, listeners: list[Listener], shutdown: asyncio.Event,
                         graceful_timeout: float, on_ready: Callable[[], None] | None) -> None:
    from granian._granian import SocketHolder
    from granian.asgi import LifespanProtocol

    servers = _granian_servers(app, listeners, graceful_timeout)
    sockets = _bind(listeners)
    # One lifespan for all listeners (Quart's before_serving runs once), before the first request.
    lifespan = LifespanProtocol(app)  # type: ignore[no-untyped-call]
    await lifespan.startup()  # type: ignore[no-untyped-call]
    if lifespan.interrupt:
        for sock in sockets:
            sock.close()
        raise ServerError(f"the web app failed to start: {lifespan.exc or 'lifespan startup failed'}")
    holder: Any = SocketHolder  # its stub omits the constructor, which differs on Linux
    linux = sys.platform.startswith(("linux", "freebsd"))
    for embedded, sock in zip(servers, sockets, strict=True):
        # Granian takes the descriptor over (and closes it when it stops).
        embedded.holder = holder(sock.detach(), False, BACKLOG) if linux else holder(sock.detach(), False)
    tasks = [asyncio.create_task(embedded.serve(), name=f"granian-{i}") for i, embedded in enumerate(servers)]
    stopping = asyncio.create_task(shutdown.wait(), name="granian-shutdown")
    for item in listeners:
        log.info("listening on %s", item.url)
    if on_ready is not None:
        on_ready()
    try:
        await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this task is cancelled: the servers stop before it ends
        stopping.cancel()
        unexpected = not shutdown.is_set()
        for embedded in servers:
            embedded.stop()  # stop accepting; each worker then finishes its connections' requests
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, TimeoutError):
                log.warning("requests still in flight after %.1f s: no longer waited for", graceful_timeout)
            elif isinstance(result, BaseException):
                log.error("the web server failed: %r", result)
        await lifespan.shutdown()  # type: ignore[no-untyped-call]
    if unexpected:
        urls = ", ".join(item.url for item in listeners)
        raise ServerError(f"the web server on {urls} stopped unexpectedly")


def _hypercorn_config(listeners: list[Listener], graceful_timeout: float,
                      config: HypercornConfig | None = None) -> HypercornConfig:
    from hypercorn.config import Config as HypercornConfig

    config = config or HypercornConfig()
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("portico.hypercorn")
    config.keep_alive_timeout = 75
    if REUSE_PORT:
        config.workers = 2  # Hypercorn sets SO_REUSEPORT exactly when it is told of several workers
    config.bind = [item.address for item in listeners]  # plain http only (see _serve_with_tls)
    return config


async def _serve_hypercorn(app: Any, listeners: list[Listener], shutdown: asyncio.Event,
                           graceful_timeout: float, on_ready: Callable[[], None] | None) -> None:
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.utils import wrap_app

    config = _hypercorn_config(listeners, graceful_timeout)
    try:
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


# --- HTTPS: Python's ssl under Hypercorn, one lifespan for every listener ----------------------------

async def _server_tls(listeners: list[Listener]) -> ServerTLS:
    given = {id(item.tls_context): item.tls_context for item in listeners if item.tls_context is not None}
    settings = {TLSSettings(item.tls_cert, item.tls_key, item.tls_min_version, item.tls_max_version)
                for item in listeners if item.tls_context is None}
    if len(given) + len(settings) > 1:
        raise ListenError("all TLS listeners must share one certificate and key")
    if given:
        return next(iter(given.values()))
    try:
        return await asyncio.to_thread(ServerTLS.open, settings.pop())
    except TLSFilesError as exc:
        raise ListenError(f"cannot set up the TLS listener {listeners[0].url}: {exc}") from exc


async def _serve_tls(app: ASGI, sockets: list[socket.socket], tls: ServerTLS, stop: asyncio.Event,
                     graceful_timeout: float) -> None:
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.config import Sockets
    from hypercorn.utils import wrap_app

    class TLSConfig(HypercornConfig):
        """Hypercorn's settings with the live context instead of one built from file names."""

        @property
        def ssl_enabled(self) -> bool:
            return True

        def create_ssl_context(self) -> Any:
            return tls.context

    config = _hypercorn_config([], graceful_timeout, TLSConfig())
    served = Sockets(secure_sockets=sockets, insecure_sockets=[], quic_sockets=[])
    await worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config, sockets=served,
                       shutdown_trigger=stop.wait)


async def _serve_with_tls(app: ASGI, listeners: list[Listener], shutdown: asyncio.Event,
                          graceful_timeout: float, on_ready: Callable[[], None] | None, server: str) -> None:
    """HTTPS listeners on Hypercorn with the live TLS context; plain ones on `server`. One lifespan."""
    secure = [item for item in listeners if item.tls]
    plain = [item for item in listeners if not item.tls]
    tls = await _server_tls(secure)
    sockets = _bind(secure)
    lifespan = Lifespan(app)
    try:
        await lifespan.startup()
    except BaseException as exc:
        for sock in sockets:
            sock.close()
        if isinstance(exc, LifespanError):
            raise ServerError(str(exc)) from exc
        raise
    inner = NoLifespan(app)
    stop = asyncio.Event()  # the parts stop together: on shutdown, or when one of them fails
    plain_ready = asyncio.Event()
    parts = [asyncio.create_task(_serve_tls(StrictTransport(inner), sockets, tls, stop, graceful_timeout),
                                 name="https")]
    if plain:
        parts.append(asyncio.create_task(serve(inner, plain, stop, graceful_timeout=graceful_timeout,
                                               on_ready=plain_ready.set, server=server), name="http"))
    else:
        plain_ready.set()
    stopping = asyncio.create_task(shutdown.wait(), name="https-shutdown")
    ready = asyncio.create_task(plain_ready.wait(), name="https-ready")
    try:
        await asyncio.wait([ready, *parts], return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            for item in secure:
                log.info("listening on %s (TLS: %s)", item.url, tls.current.describe())
            if on_ready is not None:
                on_ready()
            await asyncio.wait([stopping, *parts], return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this task is cancelled: every part stops before it ends
        ready.cancel()
        stopping.cancel()
        unexpected = not shutdown.is_set()
        stop.set()
        results = await asyncio.gather(*parts, return_exceptions=True)
        await lifespan.shutdown()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
    if unexpected:
        urls = ", ".join(item.url for item in listeners)
        raise ServerError(f"the web server on {urls} stopped unexpectedly")
