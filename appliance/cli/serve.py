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
from typing import Any
from urllib.parse import urlsplit

from appliance.cli.sdnotify import Notifier, run_watchdog
from appliance.clock import SystemClock
from appliance.config.load import default_config_text, load_config, parse_config
from appliance.config.schema import Config, Problem
from appliance.errors import PorticoError
from appliance.web.server import Listener

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


def _setup_logging(config: Config) -> None:
    level = _LEVELS.get(config.logger.level.lower(), logging.INFO)
    if config.logger.format == "json":
        from appliance.cli.logjson import JSONFormatter

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JSONFormatter())
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level, stream=sys.stderr, force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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


def _listeners(config: Config) -> list[Listener]:
    listeners: list[Listener] = []
    if config.web.http:
        listeners.append(Listener(config.web.http))
    if config.web.https:
        listeners.append(Listener(config.web.https, config.web.tls_cert, config.web.tls_key))
    return listeners


async def _run(config: Config, dev: bool, started: float) -> int:
    from appliance.connectors.registry import default_registry
    from appliance.keys.manager import KeyManager
    from appliance.oidc.deps import Deps, build_snapshot
    from appliance.store.open import open_storage, run_gc_forever
    from appliance.web.app import create_app
    from appliance.web.server import serve

    clock = SystemClock()
    notifier = Notifier()
    storage = await open_storage(config.storage, base_dir=os.getcwd())
    background: list[asyncio.Task[None]] = []
    try:
        keys = KeyManager(storage, clock, algorithm=config.signer.algorithm,
                          rotation_period=config.signer.keys_rotation_period,
                          id_token_lifetime=config.expiry.id_tokens, log=logging.getLogger("portico.keys"))
        await keys.ensure_loaded()
        snapshot = await build_snapshot(config, default_registry(), storage=storage)
        deps = Deps(storage=storage, keys=keys, clock=clock, snapshot=snapshot)
        app = create_app(deps)

        shutdown = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stop() -> None:
            notifier.stopping()
            shutdown.set()

        def reload() -> None:
            # systemctl reload = SIGHUP (ExecReload=). Without a handler SIGHUP would end the process,
            # and systemd counts that as a clean exit, so Restart=on-failure would leave it down.
            notifier.reloading()
            log.warning("SIGHUP: live configuration reload is not implemented yet; "
                        "restart the service to apply a changed configuration")
            notifier.ready(f"serving {config.issuer}")

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        loop.add_signal_handler(signal.SIGHUP, reload)

        background.append(asyncio.create_task(keys.run_forever(30.0), name="key-rotation"))
        background.append(asyncio.create_task(
            run_gc_forever(storage, clock, 300.0, logging.getLogger("portico.gc")), name="gc"))
        watchdog_interval = notifier.watchdog_interval()
        if watchdog_interval is not None:
            background.append(asyncio.create_task(run_watchdog(notifier, watchdog_interval), name="watchdog"))

        def ready() -> None:
            log.info("ready in %.0f ms (issuer %s)", (time.monotonic() - started) * 1000, config.issuer)
            notifier.ready(f"serving {config.issuer}")
            if dev:
                redirects = ", ".join(
                    uri for client in config.static_clients for uri in client.redirect_uris)
                print(_DEV_BANNER.format(issuer=config.issuer, redirects=redirects,
                                         state=os.path.abspath(str(config.storage.config.get("file", "")))),
                      file=sys.stderr, flush=True)

        await serve(app, _listeners(config), shutdown, on_ready=ready)
        log.info("stopped")
        return 0
    finally:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await storage.close()
        notifier.close()


def run_serve(path: str | None) -> int:
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
        return _run_with(asyncio.run, config, path is None, started)
    return _run_with(uvloop.run, config, path is None, started)


def _run_with(runner: Callable[[Coroutine[Any, Any, int]], int], config: Config, dev: bool,
              started: float) -> int:
    try:
        return runner(_run(config, dev, started))
    except PorticoError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
