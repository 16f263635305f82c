"""Live configuration: builds a snapshot from the config file plus stored connectors and swaps it in."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import yaml

from appliance.admin.configdiff import RESTART_SETTINGS, ReloadReport, describe_changes, keep_running
from appliance.admin.metrics import Metrics
from appliance.admin.watchset import WatchSet, connector_files, files_digest, fingerprint, watch_set
from appliance.clock import Clock
from appliance.config.load import format_problem, load_config
from appliance.config.schema import Config, Problem, WebConfig
from appliance.config.yamlpos import compose, line_of
from appliance.oidc.deps import (
    LOCAL_CONNECTOR_ID,
    ConnectorFactories,
    Deps,
    OpenConnector,
    PasswordLookup,
    Snapshot,
    SnapshotError,
    build_snapshot,
)
from appliance.store.base import Storage

__all__ = ["RESTART_SETTINGS", "ConnectorState", "ReloadReport", "Reloader", "close_connector"]

log = logging.getLogger("portico.reload")

Validator = Callable[[Config], Awaitable[None]]


class LiveTLS(Protocol):
    """The HTTPS listener's certificate holder (appliance.web.tls.ServerTLS), as the reloader uses it."""

    async def prepare(self, web: WebConfig) -> Callable[[], str] | None:
        """Load the pair `web` names; None if it serves already, else the step that swaps it in (and
        describes it). Raises an error with a `key` attribute (web.tlsCert, web.tlsKey) when unusable."""
        ...


def _connector_key(type_: str, config: Mapping[str, Any], digest: str) -> str:
    return json.dumps([type_, config, digest], sort_keys=True, default=str)


class _ReusingFactories:
    """Opens connectors for a new snapshot, handing back the running instance of any connector whose
    type, config and referenced files are unchanged (so a reload does not drop its connections)."""

    def __init__(self, registry: ConnectorFactories, running: Mapping[str, tuple[str, object]],
                 digests: Mapping[str, str]) -> None:
        self._registry = registry
        self._running = running
        self._digests = digests
        self.opened: dict[str, tuple[str, object]] = {}

    def open(self, type_: str, connector_id: str, config: Mapping[str, Any]) -> object:
        key = _connector_key(type_, config, self._digests.get(connector_id, ""))
        previous = self._running.get(connector_id)
        instance = previous[1] if previous is not None and previous[0] == key else None
        if instance is None:
            instance = self._registry.open(type_, connector_id, config)
        self.opened[connector_id] = (key, instance)
        return instance

    def open_local(self, lookup: PasswordLookup) -> object:
        return self._registry.open_local(lookup)


async def close_connector(instance: object) -> None:
    closer = getattr(instance, "aclose", None) or getattr(instance, "close", None)
    if closer is None:
        return
    with contextlib.suppress(Exception):
        result = closer()
        if inspect.isawaitable(result):
            await result


@dataclass
class ConnectorState:
    id: str
    type: str
    name: str
    source: str  # "config" | "storage" | "builtin"
    state: str  # "open" | "error" | "shadowed"
    message: str = ""
    tested_at: str = ""
    test_result: str = ""


@dataclass
class _Running:
    config: Config
    watch: WatchSet
    fingerprint: str
    tls_digest: str
    instances: dict[str, tuple[str, object]] = field(default_factory=dict)


class Reloader:
    """Owns the live configuration of one process: the first snapshot, and every reload after it.

    Reloads are serialised. A new snapshot is built completely (connectors opened, validators run)
    before `Deps.swap`; requests in flight keep the snapshot they pinned; connector instances that the
    new snapshot no longer uses are closed `drain_seconds` after the swap.
    """

    def __init__(self, *, path: str | None, registry: ConnectorFactories, storage: Storage, clock: Clock,
                 metrics: Metrics, base_dir: str = ".", validators: Sequence[Validator] = (),
                 on_applied: Callable[[Config], None] | None = None, drain_seconds: float = 30.0,
                 tls: LiveTLS | None = None) -> None:
        self.path = os.path.abspath(path) if path else None
        self._registry = registry
        self._storage = storage
        self._clock = clock
        self.metrics = metrics
        self._base_dir = base_dir
        self._validators = tuple(validators)
        self._on_applied = on_applied
        self._drain = drain_seconds
        self._tls = tls  # None: no HTTPS listener, or one whose certificate waits for a restart
        self._lock = asyncio.Lock()
        self._deps: Deps | None = None
        self._started: Config | None = None
        self._run: _Running | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._draining: list[object] = []
        self.generation = 0
        self.history: deque[ReloadReport] = deque(maxlen=20)
        self.connectors: dict[str, ConnectorState] = {}
        self.changed = asyncio.Event()  # set after every attempt; the watcher re-reads the watch set

    # --- start-up ---------------------------------------------------------------------------------

    async def start(self, config: Config) -> Snapshot:
        """The first snapshot (config connectors, then stored ones). SnapshotError when it cannot open."""
        started = time.monotonic()
        self._started = config
        snapshot, instances = await self._build(config, {})
        self._run = await self._running(config, instances)
        self._record(ReloadReport("applied", "start", self._clock.now(), _ms(started), self.generation,
                                  message="initial configuration"))
        self.metrics.last_success_at = time.time()
        return snapshot

    def attach(self, deps: Deps) -> None:
        self._deps = deps

    @property
    def config(self) -> Config:
        assert self._run is not None, "start() first"
        return self._run.config

    @property
    def watch(self) -> WatchSet:
        assert self._run is not None, "start() first"
        return self._run.watch

    @property
    def last(self) -> ReloadReport | None:
        return self.history[-1] if self.history else None

    # --- reloads ----------------------------------------------------------------------------------

    async def reload(self, trigger: str, *, only_if_changed: bool = False) -> ReloadReport | None:
        """Re-read the config file and apply it. With `only_if_changed` (the file watcher), nothing
        happens (None) when no watched file's content changed since the last attempt, or when the
        config file is missing for the moment (an editor between its rename and its write)."""
        async with self._lock:
            run = self._run
            assert run is not None and self._started is not None, "start() first"
            began = time.monotonic()
            if self.path is None:
                return await self._apply(run.config, trigger, began, (), "rebuilt the embedded default")
            current = await asyncio.to_thread(fingerprint, run.watch)
            if only_if_changed:
                if current == run.fingerprint:
                    return None
                if not await asyncio.to_thread(os.path.exists, self.path):
                    log.warning("config file %s is missing; keeping the running configuration", self.path)
                    return None
            config, problems = await asyncio.to_thread(load_config, self.path)
            warnings = tuple(p for p in problems if p.severity != "error")
            if config is None:
                run.fingerprint = current  # the same broken content is not retried until it changes
                return self._reject(trigger, began, tuple(problems), "the configuration has errors")
            kept, restart = keep_running(config, self._started, tls_live=self._tls is not None)
            if self._tls is None:
                tls_now = await asyncio.to_thread(files_digest, _tls_files(self._started, self._base_dir))
                if tls_now != run.tls_digest:
                    restart += ("web.tlsCert/web.tlsKey (file content)",)
            return await self._apply(kept, trigger, began, warnings, "", restart, tls=True)

    async def rebuild(self, trigger: str) -> ReloadReport:
        """Rebuild the snapshot from the running config (after stored connectors changed)."""
        async with self._lock:
            assert self._run is not None
            return await self._apply(self._run.config, trigger, time.monotonic(), (), "")

    async def _apply(self, config: Config, trigger: str, began: float, warnings: tuple[Problem, ...],
                     message: str, restart: tuple[str, ...] = (), *, tls: bool = False) -> ReloadReport:
        """Validate and build `config`, then swap it in. With `tls` (a reload from the file, not a
        rebuild after a connector change), the HTTPS certificate is reloaded from its files too."""
        run = self._run
        assert run is not None and self._deps is not None, "attach(deps) first"
        install_tls: Callable[[], str] | None = None
        try:
            for validate in self._validators:
                await validate(config)
            if tls and self._tls is not None and config.web.https:
                try:
                    install_tls = await self._tls.prepare(config.web)
                except Exception as exc:
                    key = str(getattr(exc, "key", ""))
                    line = await asyncio.to_thread(_key_line, self.path, key)
                    problem = Problem("error", key, line, str(getattr(exc, "detail", "") or exc))
                    run.fingerprint = await asyncio.to_thread(fingerprint, run.watch)
                    return self._reject(trigger, began, (*warnings, problem),
                                        "the new TLS certificate or key cannot be used (the running "
                                        "certificate stays)")
            snapshot, instances = await self._build(config, run.instances)
        except Exception as exc:  # a reload must never take the server down: report and keep serving
            # A validator may name the key behind its problem (frontend.dir for a broken template).
            key = str(getattr(exc, "key", "") or "")
            line = await asyncio.to_thread(_key_line, self.path, key)
            problem = Problem("error", key, line, str(exc) or type(exc).__name__)
            run.fingerprint = await asyncio.to_thread(fingerprint, run.watch)
            return self._reject(trigger, began, (*warnings, problem),
                                "the new configuration cannot be opened")
        changes = describe_changes(run.config, config)
        reopened = sorted(k for k, (_, inst) in instances.items()
                          if k in run.instances and run.instances[k][1] is not inst)
        if reopened and "connectors" not in " ".join(changes):
            changes += (f"connectors reopened (their files changed): {', '.join(reopened)}",)
        if run.watch.folders and trigger == "watch" and not changes:
            changes += ("frontend files",)
        old = self._deps.swap(snapshot)
        if install_tls is not None:
            changes += (f"TLS certificate for new connections: {install_tls()}",)
        kept_ids = {id(inst) for _, inst in instances.values()}
        unused = [inst for _, inst in run.instances.values() if id(inst) not in kept_ids]
        unused += [c.instance for c in old.connectors.values()
                   if c.id == LOCAL_CONNECTOR_ID and c.instance is not snapshot.connectors.get(c.id)]
        self._close_later(unused)
        self._run = await self._running(config, instances)
        if self._on_applied is not None:
            self._on_applied(config)
        result = "applied" if (changes or trigger != "watch") else "unchanged"
        report = ReloadReport(result, trigger, self._clock.now(), _ms(began), self.generation, warnings,
                              restart, changes, message or ("applied" if changes else "no change"))
        self._record(report)
        return report

    def _reject(self, trigger: str, began: float, problems: tuple[Problem, ...],
                message: str) -> ReloadReport:
        report = ReloadReport("rejected", trigger, self._clock.now(), _ms(began), self.generation, problems,
                              message=message + "; the running configuration keeps serving")
        self._record(report)
        return report

    async def _running(self, config: Config, instances: dict[str, tuple[str, object]]) -> _Running:
        if self.path is None:
            ws = WatchSet((), ())
        else:
            ws = watch_set(config, self.path, self._base_dir)
        started = self._started or config
        fp, tls = await asyncio.to_thread(
            lambda: (fingerprint(ws), files_digest(_tls_files(started, self._base_dir))))
        return _Running(config, ws, fp, tls, instances)

    async def _build(self, config: Config, running: Mapping[str, tuple[str, object]]
                     ) -> tuple[Snapshot, dict[str, tuple[str, object]]]:
        try:
            stored = await self._storage.connectors.list()
        except Exception as exc:
            raise SnapshotError(f"cannot list the stored connectors: {exc}") from exc

        def digests() -> dict[str, str]:
            both = [*((c.id, c.config) for c in stored), *((c.id, c.config) for c in config.connectors)]
            return {cid: files_digest(connector_files(cfg, self._base_dir)) for cid, cfg in both}

        def frontend_digest() -> str:
            # The pages' renderer is rebuilt when this changes (appliance.web.render.LiveRenderer).
            if not config.frontend.dir:
                return ""
            folder = os.path.normpath(os.path.join(self._base_dir, config.frontend.dir))
            return fingerprint(WatchSet((), (folder,)))

        factories = _ReusingFactories(self._registry, running, await asyncio.to_thread(digests))
        frontend_version = await asyncio.to_thread(frontend_digest)
        snapshot = await build_snapshot(config, factories, storage=self._storage)
        states: dict[str, ConnectorState] = {
            c.id: ConnectorState(c.id, c.type, c.name, "config", "open") for c in snapshot.connectors.values()
        }
        merged = {k: v for k, v in snapshot.connectors.items() if k != LOCAL_CONNECTOR_ID}
        for item in stored:
            if item.id in merged or item.id == LOCAL_CONNECTOR_ID:
                states.setdefault(item.id, ConnectorState(
                    item.id, item.type, item.name, "storage", "shadowed",
                    "a connector of the config file has this id"))
                continue
            try:
                instance = factories.open(item.type, item.id, item.config)
            except KeyError:
                states[item.id] = ConnectorState(item.id, item.type, item.name, "storage", "error",
                                                 f"unknown connector type {item.type!r}")
                continue
            except (ValueError, TypeError) as exc:
                states[item.id] = ConnectorState(item.id, item.type, item.name, "storage", "error", str(exc))
                continue
            merged[item.id] = OpenConnector(item.id, item.type, item.name or item.id, instance)
            states[item.id] = ConnectorState(item.id, item.type, item.name or item.id, "storage", "open")
        if LOCAL_CONNECTOR_ID in snapshot.connectors:
            merged[LOCAL_CONNECTOR_ID] = snapshot.connectors[LOCAL_CONNECTOR_ID]
            states[LOCAL_CONNECTOR_ID].source = "builtin"
        self.generation += 1
        extra = {**snapshot.extra, "generation": self.generation, "frontend_version": frontend_version,
                 "stored_connectors": tuple(c.id for c in stored if c.id in merged)}
        for old in self.connectors.values():  # keep the last test result of connectors that stay
            if old.id in states and old.tested_at:
                states[old.id].tested_at, states[old.id].test_result = old.tested_at, old.test_result
        self.connectors = states
        snap = dataclasses.replace(snapshot, connectors=MappingProxyType(merged),
                                   extra=MappingProxyType(extra))
        return snap, factories.opened

    def _record(self, report: ReloadReport) -> None:
        self.history.append(report)
        m = self.metrics
        m.last_reload_at = time.time()
        if report.result == "rejected":
            m.reloads_rejected += 1
            m.last_reload_ok = False
            source = self.path or "<config>"
            log.error("configuration reload (%s) rejected: %s", report.trigger, report.message)
            for problem in report.problems:
                log.error("  %s", format_problem(source, problem))
        else:
            if report.trigger != "start":
                if report.result == "applied":
                    m.reloads_applied += 1
                else:
                    m.reloads_unchanged += 1
            m.last_reload_ok = True
            m.last_success_at = time.time()
            if report.trigger != "start":
                log.info("configuration reload (%s) %s: %s (generation %d, %.0f ms)", report.trigger,
                         report.result, ", ".join(report.changes) or "no change", report.generation,
                         report.duration_ms)
            for problem in report.problems:
                log.warning("  %s", format_problem(self.path or "<config>", problem))
            if report.restart_required:
                log.warning("changed settings that need a restart (the running values stay until then): %s",
                            ", ".join(report.restart_required))
        self.changed.set()

    # --- closing ----------------------------------------------------------------------------------

    def _close_later(self, instances: list[object]) -> None:
        if not instances:
            return
        self._draining.extend(instances)

        async def close_after_drain() -> None:
            # Requests that pinned the old snapshot may still be talking to these connectors.
            await asyncio.sleep(self._drain)
            for instance in instances:
                with contextlib.suppress(ValueError):
                    self._draining.remove(instance)
                await close_connector(instance)

        task = asyncio.create_task(close_after_drain(), name="close-connectors")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """At shutdown: close every connector now, those draining and those serving."""
        for task in list(self._closing):
            task.cancel()
        for instance in self._draining:
            await close_connector(instance)
        self._draining.clear()
        if self._deps is not None:
            for conn in self._deps.snapshot.connectors.values():
                await close_connector(conn.instance)


def _key_line(path: str | None, dotted: str) -> int:
    """The line of `dotted` (web.tlsKey) in the config file, 0 when it cannot be found. Blocking."""
    if not path or not dotted:
        return 0
    try:
        with open(path, encoding="utf-8") as handle:
            node, _ = compose(handle.read())
    except (OSError, UnicodeDecodeError):
        return 0
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            return 0
        node = next((value for key, value in node.value if str(key.value).lower() == part.lower()), None)
    return line_of(node) if node is not None else 0


def _tls_files(config: Config, base_dir: str) -> tuple[str, ...]:
    paths = (config.web.tls_cert, config.web.tls_key)
    return tuple(os.path.normpath(os.path.join(base_dir, p)) for p in paths if p)


def _ms(began: float) -> float:
    return (time.monotonic() - began) * 1000
