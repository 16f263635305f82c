"""Event sources for the metrics, built by composition around the components that produce the events:
storage errors (a Storage proxy), key rotations and token responses (subclasses), logins (log records).

Each is a stopgap for an event hook the owning layer does not offer yet (see docs/telemetry.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from appliance.errors import PorticoError
from appliance.keys.manager import KeyManager
from appliance.oidc.token import TokenEndpoint
from appliance.store.base import AuditLog, Collection, GCResult, Steps, Storage
from appliance.store.models import AuditEvent, Keys

if TYPE_CHECKING:
    from appliance.oidc.deps import Deps, Snapshot

__all__ = ["CountingTokenEndpoint", "InstrumentedKeyManager", "LoginLogObserver", "watch_storage"]

T = TypeVar("T")
R = TypeVar("R")
Failed = Callable[[str], None]  # called with the operation's name


def _storage_failure(exc: BaseException, raised_by_caller: list[BaseException]) -> bool:
    """A database failure, not a typed answer (NotFound, AlreadyExists, ConflictError are answers) and
    not an exception an updater raised on purpose (that is how callers abort a compare-and-swap)."""
    return not isinstance(exc, PorticoError) and not any(exc is own for own in raised_by_caller)


class _WatchedCollection(Generic[T]):
    def __init__(self, inner: Collection[T], failed: Failed) -> None:
        self._inner = inner
        self._failed = failed

    async def create(self, obj: T) -> None:
        try:
            await self._inner.create(obj)
        except Exception as exc:
            if _storage_failure(exc, []):
                self._failed("create")
            raise

    async def get(self, key: str) -> T:
        try:
            return await self._inner.get(key)
        except Exception as exc:
            if _storage_failure(exc, []):
                self._failed("get")
            raise

    async def list(self) -> list[T]:
        try:
            return await self._inner.list()
        except Exception as exc:
            if _storage_failure(exc, []):
                self._failed("list")
            raise

    async def update(self, key: str, updater: Callable[[T], T]) -> T:
        own: list[BaseException] = []

        def guarded(current: T) -> T:
            try:
                return updater(current)
            except BaseException as exc:
                own.append(exc)
                raise

        try:
            return await self._inner.update(key, guarded)
        except Exception as exc:
            if _storage_failure(exc, own):
                self._failed("update")
            raise

    async def delete(self, key: str) -> None:
        try:
            await self._inner.delete(key)
        except Exception as exc:
            if _storage_failure(exc, []):
                self._failed("delete")
            raise

    def __getattr__(self, name: str) -> Any:  # backend extras stay reachable (unwatched)
        return getattr(self._inner, name)


class _WatchedAudit:
    def __init__(self, inner: AuditLog, failed: Failed) -> None:
        self._inner = inner
        self._failed = failed

    async def append(self, event: AuditEvent) -> None:
        try:
            await self._inner.append(event)
        except Exception as exc:
            if _storage_failure(exc, []):
                self._failed("audit_append")
            raise

    async def tail(self, after: str = "", limit: int = 200) -> list[AuditEvent]:
        try:
            return await self._inner.tail(after, limit)
        except Exception as exc:
            if _storage_failure(exc, []):
                self._failed("audit_tail")
            raise

    async def prune(self, before: datetime) -> int:
        try:
            return await self._inner.prune(before)
        except Exception as exc:
            if _storage_failure(exc, []):
                self._failed("audit_prune")
            raise


class _WatchedStorage:
    def __init__(self, inner: Storage, failed: Failed) -> None:
        self._inner = inner
        self._failed = failed
        # Every collection the protocol names, so one added to it later is watched without a change here.
        for name, annotation in Storage.__annotations__.items():
            if str(annotation).startswith("Collection["):
                setattr(self, name, _WatchedCollection(getattr(inner, name), failed))
        self.audit = _WatchedAudit(inner.audit, failed)

    async def get_keys(self) -> Keys:
        try:
            return await self._inner.get_keys()
        except Exception as exc:
            if _storage_failure(exc, []):
                self._failed("get_keys")
            raise

    async def update_keys(self, updater: Callable[[Keys], Keys]) -> Keys:
        own: list[BaseException] = []

        def guarded(current: Keys) -> Keys:
            try:
                return updater(current)
            except BaseException as exc:
                own.append(exc)
                raise

        try:
            return await self._inner.update_keys(guarded)
        except Exception as exc:
            if _storage_failure(exc, own):
                self._failed("update_keys")
            raise

    async def run(self, steps: Steps[R], *, write: bool = False) -> R:
        own: list[BaseException] = []
        try:
            return await self._inner.run(_guarded(steps, own), write=write)
        except Exception as exc:
            if _storage_failure(exc, own):
                self._failed("run")
            raise

    async def garbage_collect(self, now: datetime) -> GCResult:
        try:
            return await self._inner.garbage_collect(now)
        except Exception as exc:
            if _storage_failure(exc, []):
                self._failed("garbage_collect")
            raise

    async def ping(self) -> None:
        try:
            await self._inner.ping()
        except Exception as exc:
            if _storage_failure(exc, []):
                self._failed("ping")
            raise

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _guarded(steps: Steps[R], own: list[BaseException]) -> Steps[R]:
    """`steps`, noting what they raise themselves (a failed statement is raised by the driver instead)."""
    try:
        return (yield from steps)
    except GeneratorExit:
        raise
    except BaseException as exc:
        own.append(exc)
        raise


def watch_storage(inner: Storage, failed: Failed) -> Storage:
    """`inner`, with every operation that fails with a database error reported to `failed(operation)`.
    The errors still propagate unchanged; typed store answers (NotFound, …) are not failures."""
    return cast(Storage, _WatchedStorage(inner, failed))


class InstrumentedKeyManager(KeyManager):
    """A KeyManager that reports each rotation it performs ("success") or fails at ("error")."""

    def __init__(self, *args: Any, on_rotation: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_rotation = on_rotation

    async def rotate_if_due(self) -> bool:
        try:
            rotated = await super().rotate_if_due()
        except Exception:
            self._on_rotation("error")
            raise
        if rotated:
            self._on_rotation("success")
        return rotated


class CountingTokenEndpoint(TokenEndpoint):
    """Reports each successful token response with its grant type (the form was parsed by the web
    layer already; nothing here reads a request body)."""

    def __init__(self, on_issued: Callable[[str], None], grants: Mapping[str, Any] | None = None) -> None:
        super().__init__(grants)
        self._on_issued = on_issued

    async def handle(self, deps: Deps, snap: Snapshot, form: Mapping[str, str],
                     authorization: str = "", client_ip: str = "") -> dict[str, object]:
        body = await super().handle(deps, snap, form, authorization, client_ip)
        # Only grant types the endpoint accepted get here, so the label set stays bounded.
        self._on_issued(form.get("grant_type", ""))
        return body


class LoginLogObserver(logging.Filter):
    """Turns the protocol core's login log records into (connector, result) events. A logger filter on
    "portico.oidc.login": it sees the record's arguments before any handler formats or redacts them."""

    def __init__(self, on_login: Callable[[str, str], None]) -> None:
        super().__init__()
        self._on_login = on_login

    def filter(self, record: logging.LogRecord) -> bool:
        msg, args = record.msg, record.args
        if isinstance(msg, str) and isinstance(args, tuple) and args:
            if msg.startswith("login successful"):
                self._on_login(str(args[0]), "success")
            elif msg.startswith("failed login attempt"):
                self._on_login(str(args[-1]), "invalid_credentials")
        return True
