"""`portico serve`: wires config, storage, keys, connectors and the web app, then runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from appliance.cli.sdnotify import Notifier, run_watchdog
from appliance.clock import SystemClock
from appliance.config.load import default_config_text, load_config, parse_config
from appliance.config.schema import Config, Problem
from appliance.errors import PorticoError
from appliance.web.server import Listener
from appliance.web.tls import ServerTLS

if TYPE_CHECKING:
    from appliance.admin.api import AdminServer
    from appliance.admin.audit import AuditTrail
    from appliance.admin.connectors import ConnectorService
    from appliance.admin.metrics import Metrics
    from appliance.admin.reload import Reloader
    from appliance.admin.service import AdminService
    from appliance.telemetry.middleware import ASGIApp

log = logging.getLogger("portico")

_DEV_BANNER = """
 ============================================================================
  DEVELOPMENT MODE: started without a config file, using the embedded default.
  Never expose this to a network: the demo user's password is public.

    issuer       {issuer}
    demo user    admin@example.com / password
    demo client  portico-demo (public; redirect URIs {redirects})
    state        {state}

  For real use: portico serve /etc/portico/config.yaml  (see docs/quickstart.md)
 ============================================================================
"""


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}


_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# The loggers whose records feed metrics: they must see INFO records whatever level the handler prints.
_EVENT_LOGGERS = ("portico.oidc.login",)
# Libraries whose DEBUG records carry stored rows or wire data (aiosqlite logs every result set, codes
# and tokens included), or only noise (watchfiles logs each filtered event, which a log file next to
# the config turns into a loop): never below INFO, even at logger.level debug.
_QUIET_LOGGERS = ("aiosqlite", "asyncpg", "httpcore", "hpack", "multipart", "watchfiles")


def _setup_logging(config: Config) -> None:
    """One stderr handler (text or JSON) that adds the request id to every record and redacts secrets.
    Run again after each applied reload, so logger.level and logger.format apply live."""
    from appliance.telemetry.context import RequestIdFilter
    from appliance.telemetry.redact import RedactingFilter

    level = _LEVELS.get(config.logger.level.lower(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    if config.logger.format == "json":
        from appliance.cli.logjson import JSONFormatter

        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    # The level is the handler's as well as the root's: event loggers run at INFO (below) and their
    # records must still stop here when the configured level is higher.
    handler.setLevel(level)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in _EVENT_LOGGERS:
        logging.getLogger(name).setLevel(min(level, logging.INFO))
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))


def _report(problems: list[Problem]) -> None:
    for problem in problems:
        print(f"portico: {problem}", file=sys.stderr)


def _load(path: str | None) -> Config | None:
    if path is None:
        config, problems = parse_config(default_config_text(), source="<embedded default>")
    else:
        config, problems = load_config(path)
    _report(problems)
    return config


def _listeners(config: Config, tls: ServerTLS | None = None) -> list[Listener]:
    listeners: list[Listener] = []
    if config.web.http:
        listeners.append(Listener(config.web.http))
    if config.web.https:
        listeners.append(Listener(config.web.https, config.web.tls_cert, config.web.tls_key,
                                  config.web.tls_min_version, config.web.tls_max_version, tls))
    return listeners


async def _open_tls(config: Config) -> ServerTLS | None:
    """The HTTPS listener's certificate holder (reloads swap pairs in it), or None without web.https."""
    from appliance.web.server import ListenError
    from appliance.web.tls import TLSFilesError, TLSSettings

    if not config.web.https:
        return None
    try:
        return await asyncio.to_thread(ServerTLS.open, TLSSettings.of(config.web))
    except TLSFilesError as exc:
        raise ListenError(f"cannot set up the TLS listener https://{config.web.https}: {exc}") from exc


def _telemetry_listeners(config: Config) -> list[Listener]:
    return [Listener(config.telemetry.http)] if config.telemetry.http else []


async def _serve_all(apps: list[tuple[ASGIApp, list[Listener]]], shutdown: asyncio.Event,
                     on_ready: Callable[[], None], server: str = "") -> None:
    """Serve each app on its listeners in this loop with `server` (web.server); `on_ready` once all are
    bound. If one cannot start (or fails), the others are stopped too and the error propagates."""
    from appliance.web.server import resolve_server, serve

    server = resolve_server(server)  # once, so a fallback to hypercorn is logged once

    waiting = len(apps)

    def one_ready() -> None:
        nonlocal waiting
        waiting -= 1
        if waiting == 0:
            on_ready()

    tasks = [asyncio.create_task(serve(app, listeners, shutdown, on_ready=one_ready, server=server),
                                 name=f"serve-{i}")
             for i, (app, listeners) in enumerate(apps)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        if any(not task.cancelled() and task.exception() is not None for task in done):
            shutdown.set()
    finally:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _build_info() -> dict[str, str]:
    from appliance import __version__
    from appliance.cli.version import _commit
    from appliance.telemetry.metrics import build_labels

    commit = _commit()
    return build_labels(__version__, "" if commit == "unknown" else commit)


def _audit_retention(config: Config) -> timedelta | None:
    """admin.auditRetentionDays of the running config, as the GC loop wants it (None: keep forever)."""
    days = config.admin.audit_retention_days
    return timedelta(days=days) if days > 0 else None


async def _check_frontend(config: Config) -> None:
    """A custom frontend folder with a template that does not compile stops the start, or rejects the
    reload. The packaged templates are known good (and the theme is checked with the config): without
    frontend.dir, Jinja2 is not imported until a page is shown."""
    if not config.frontend.dir:
        return
    from appliance.oidc.urls import IssuerURL
    from appliance.web.render import Renderer

    await asyncio.to_thread(Renderer, config.frontend, IssuerURL.parse(config.issuer).path)


async def _start_admin(service: AdminService, connectors: ConnectorService, audit: AuditTrail,
                       metrics: Metrics, clock: SystemClock, path: str) -> AdminServer | None:
    from appliance.admin.api import AdminServer, AdminSocketBusy

    server = AdminServer(service, connectors, audit, metrics, clock, path,
                         group=os.environ.get("PORTICO_ADMIN_GROUP", ""))
    try:
        await server.start()
    except (AdminSocketBusy, OSError, KeyError) as exc:
        # The identity provider keeps serving: the admin API is for operators, not for logins.
        log.error("admin API disabled: %s", exc)
        return None
    return server


async def _run(config: Config, path: str | None, started: float, admin_socket: str, watch: bool) -> int:
    from appliance.admin.audit import AuditTrail
    from appliance.admin.connectors import ConnectorService
    from appliance.admin.metrics import Metrics
    from appliance.admin.reload import Reloader
    from appliance.admin.service import AdminService
    from appliance.connectors.registry import default_registry
    from appliance.oidc.deps import Deps
    from appliance.store.open import open_storage, run_gc_forever
    from appliance.telemetry.health import Readiness, StorageProbe
    from appliance.telemetry.instrument import (
        CountingTokenEndpoint,
        InstrumentedKeyManager,
        LoginLogObserver,
        watch_storage,
    )
    from appliance.telemetry.listener import TelemetryApp
    from appliance.telemetry.metrics import AdminCollector, Telemetry
    from appliance.telemetry.middleware import TrustedProxies
    from appliance.web.public import public_app

    dev = path is None
    tls = await _open_tls(config)  # before anything opens: bad TLS files stop the start here
    await _check_frontend(config)  # so do broken templates (the pages themselves are built on first use)
    clock = SystemClock()
    notifier = Notifier()
    metrics = Metrics()
    telemetry = Telemetry(_build_info())
    admin_counters = AdminCollector(metrics)
    telemetry.register(admin_counters)
    metrics.exposition = lambda: telemetry.render_without(admin_counters)
    database = await open_storage(config.storage, base_dir=os.getcwd())
    storage = watch_storage(database, telemetry.storage_error)
    probe = StorageProbe(database.ping, on_failure=lambda: telemetry.storage_error("ping"))
    readiness = Readiness(probe)
    registry = default_registry()
    reloader = Reloader(path=path, registry=registry, storage=storage, clock=clock, metrics=metrics,
                        base_dir=os.getcwd(), validators=[_check_frontend], on_applied=_setup_logging,
                        tls=tls)
    background: list[asyncio.Task[None]] = []
    admin: AdminServer | None = None
    first_keys: asyncio.Task[None] | None = None

    def on_login(connector: str, result: str) -> None:
        telemetry.login(connector, result)
        if result == "success":
            metrics.activity.record("login")

    def on_token(grant: str) -> None:
        telemetry.token_issued(grant)
        metrics.activity.record("token")

    login_observer = LoginLogObserver(on_login)
    try:
        keys = InstrumentedKeyManager(storage, clock, algorithm=config.signer.algorithm,
                                      rotation_period=config.signer.keys_rotation_period,
                                      id_token_lifetime=config.expiry.id_tokens,
                                      log=logging.getLogger("portico.keys"),
                                      on_rotation=telemetry.key_rotation)
        # The first key is generated (a new state) or read and checked beside the rest of the start-up:
        # the listeners answer discovery meanwhile, and hold whatever needs the key (web/public.py).
        first_keys = asyncio.create_task(keys.ensure_loaded(), name="keys-first-load")
        telemetry.gauge("portico_signing_key_next_rotation_timestamp_seconds",
                        "When the signing key is due to rotate.",
                        lambda: keys.next_rotation.timestamp() if keys.next_rotation else None)
        snapshot = await reloader.start(config)
        deps = Deps(storage=storage, keys=keys, clock=clock, snapshot=snapshot)
        deps.protection.on_lockout = telemetry.lockout
        deps.protection.on_rate_limited = telemetry.rate_limit_hit
        reloader.attach(deps)
        # The Quart app is imported and built on the first request the fast path hands it (a login page,
        # say): a server that only answers tokens, keys and probes never loads it.
        public = public_app(deps, CountingTokenEndpoint(on_token), telemetry.http,
                            TrustedProxies(lambda: deps.snapshot.config.web.client_remote_ip.trusted_proxies))
        logging.getLogger("portico.oidc.login").addFilter(login_observer)

        shutdown = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stop() -> None:
            if not shutdown.is_set():
                log.info("stopping: finishing the requests in flight, then closing the database")
            readiness.stopping()
            notifier.stopping()
            shutdown.set()

        async def reload_now() -> None:
            notifier.reloading()
            try:
                await reloader.reload("sighup")
            except Exception:
                log.exception("configuration reload failed unexpectedly; the running one keeps serving")
            notifier.ready(f"serving {config.issuer}")

        def on_sighup() -> None:
            # systemctl reload = SIGHUP (ExecReload=). Without a handler SIGHUP would end the process.
            task = asyncio.create_task(reload_now(), name="sighup-reload")
            background.append(task)
            task.add_done_callback(lambda t: background.remove(t) if t in background else None)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        loop.add_signal_handler(signal.SIGHUP, on_sighup)

        background.append(asyncio.create_task(
            run_gc_forever(storage, clock, 300.0, logging.getLogger("portico.gc"),
                           audit_retention=lambda: _audit_retention(reloader.config)), name="gc"))
        watchdog_interval = notifier.watchdog_interval()
        if watchdog_interval is not None:
            background.append(asyncio.create_task(run_watchdog(notifier, watchdog_interval), name="watchdog"))
        service = AdminService(deps, reloader, metrics, admin_socket)
        connectors = ConnectorService(deps, reloader, registry, registry.types)
        admin = await _start_admin(service, connectors, AuditTrail(storage.audit), metrics, clock,
                                   admin_socket)

        def ready() -> None:
            """Listening, and the keys are loaded: only now ready for systemd and the readiness probe."""
            log.info("ready in %.0f ms (issuer %s)", (time.monotonic() - started) * 1000, config.issuer)
            readiness.config_loaded()
            notifier.ready(f"serving {config.issuer}")
            # Rotation checks and the config watcher begin once serving (the watcher checks the files
            # once when it starts, so a change made before is not missed).
            background.append(asyncio.create_task(keys.run_forever(30.0), name="key-rotation"))
            if path is not None and watch:
                _watch_config(reloader, background)
            if dev:
                redirects = ", ".join(
                    uri for client in config.static_clients for uri in client.redirect_uris)
                print(_DEV_BANNER.format(issuer=config.issuer, redirects=redirects,
                                         state=os.path.abspath(str(config.storage.config.get("file", "")))),
                      file=sys.stderr, flush=True)

        apps: list[tuple[ASGIApp, list[Listener]]] = [(public.asgi, _listeners(config, tls))]
        telemetry_listeners = _telemetry_listeners(config)
        if telemetry_listeners:
            apps.append((TelemetryApp(telemetry.render, readiness), telemetry_listeners))
        listening = asyncio.Event()
        background.append(asyncio.create_task(_when_ready(first_keys, listening, ready, shutdown),
                                              name="ready"))
        await _serve_all(apps, shutdown, listening.set, config.web.server)
        if first_keys.done():
            await first_keys  # a failed first load stopped the server: its error is the one to report
        log.info("stopped")
        return 0
    finally:
        logging.getLogger("portico.oidc.login").removeFilter(login_observer)
        await probe.aclose()
        if admin is not None:
            await admin.close()
        for task in list(background):
            task.cancel()
        for task in list(background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if first_keys is not None:  # stopped while the first keys were loading: they are not waited for
            first_keys.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await first_keys
        await reloader.aclose()
        await storage.close()
        log.info("storage closed")
        notifier.close()


async def _when_ready(first_keys: asyncio.Task[None], listening: asyncio.Event, ready: Callable[[], None],
                      shutdown: asyncio.Event) -> None:
    """Call `ready` once the listeners are up and the first keys are loaded; if loading them fails,
    stop the server (serve() re-raises the load's error)."""
    try:
        await asyncio.shield(first_keys)
    except Exception:
        shutdown.set()
        return
    await listening.wait()
    if not shutdown.is_set():
        ready()


def _watch_config(reloader: Reloader, background: list[asyncio.Task[None]]) -> None:
    try:
        from appliance.admin.watch import watch_config
    except ImportError as exc:  # watchfiles missing: SIGHUP and `portico reload` still work
        log.warning("config file watching is off (%s); reload with SIGHUP or `portico reload`", exc)
    else:
        background.append(asyncio.create_task(watch_config(reloader), name="config-watch"))


def run_serve(path: str | None, admin_socket: str | None = None, watch: bool = True) -> int:
    started = time.monotonic()
    config = _load(path)
    if config is None:
        print("portico: the configuration has errors; nothing was started", file=sys.stderr)
        return 1
    _setup_logging(config)
    if urlsplit(config.issuer).scheme == "http" and path is not None:
        log.warning("issuer %s is plain http: use https outside development", config.issuer)
    try:
        import uvloop
    except ImportError:  # not on every platform; the standard loop works, only slower
        return _run_with(asyncio.run, config, path, started, admin_socket, watch)
    return _run_with(uvloop.run, config, path, started, admin_socket, watch)


def _run_with(runner: Callable[[Coroutine[Any, Any, int]], int], config: Config, path: str | None,
              started: float, admin_socket: str | None, watch: bool) -> int:
    from appliance.admin.client import server_socket_path

    try:
        socket_path = admin_socket or server_socket_path(config.admin.socket)
        return runner(_run(config, path, started, socket_path, watch))
    except PorticoError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
