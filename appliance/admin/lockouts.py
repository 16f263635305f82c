"""Admin use-cases for brute-force lockouts: list the counters and lockouts, clear them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from appliance.admin.service import BadRequest
from appliance.errors import NotFound
from appliance.oidc.deps import Deps
from appliance.security.throttle import ACCOUNT, IP, ip_subject, is_locked, normalise_username
from appliance.store.models import LoginThrottle

__all__ = ["LockoutService", "lockout_view"]


def _iso(when: datetime | None) -> str:
    return when.isoformat() if when is not None else ""


def lockout_view(record: LoginThrottle, now: datetime) -> dict[str, Any]:
    return {
        "id": record.id, "kind": record.kind, "connector_id": record.connector_id, "subject": record.subject,
        "failures": record.failures, "locked": is_locked(record, now),
        "locked_until": _iso(record.locked_until) if is_locked(record, now) else "",
        "window_start": _iso(record.window_start), "last_attempt": _iso(record.last_attempt),
        "lockouts": record.lockouts,
    }


class LockoutService:
    """What `/v1/lockouts` calls. Clearing deletes the record: the account or address starts afresh."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def _live(self) -> tuple[list[LoginThrottle], datetime]:
        now = self._deps.clock.now()
        # Records past their expiry wait for garbage collection; they count for nothing any more.
        records = [r for r in await self._deps.storage.login_throttles.list() if r.expiry > now]
        return records, now

    async def list(self, everything: bool = False) -> list[dict[str, Any]]:
        """The locked accounts and addresses (locked first, newest lock first); with `everything`,
        also the counters of failed attempts that have not led to a lockout."""
        records, now = await self._live()
        shown = [r for r in records if everything or is_locked(r, now)]
        shown.sort(key=lambda r: (not is_locked(r, now), -(r.locked_until or now).timestamp(), r.id))
        return [lockout_view(r, now) for r in shown]

    async def clear(self, lockout_id: str) -> dict[str, Any]:
        """Forget one record (NotFound when there is none)."""
        if not await self._deps.protection.throttle.reset(lockout_id):
            raise NotFound(f"no lockout or failure counter {lockout_id!r}")
        return {"id": lockout_id, "cleared": [lockout_id]}

    async def clear_matching(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Forget the records of {"user": name (and "connector": id, else every connector)}, of
        {"ip": address}, or {"all": true} (every record, locked or not)."""
        user, connector, ip = (_text(body, key) for key in ("user", "connector", "ip"))
        everything = body.get("all") is True
        if not (user or ip or everything):
            raise BadRequest('say what to clear: {"user": ...} (and "connector"), {"ip": ...} '
                             'or {"all": true}')
        if ip and not ip_subject(ip):
            raise BadRequest(f"ip: {ip!r} is not an IP address")
        name, subject = normalise_username(user), ip_subject(ip) if ip else ""
        records, _ = await self._live()
        cleared = []
        for record in records:
            wanted = everything or (
                record.kind == ACCOUNT and bool(user) and record.subject == name
                and (not connector or record.connector_id == connector)
            ) or (record.kind == IP and bool(ip) and record.subject == subject)
            if wanted and await self._deps.protection.throttle.reset(record.id):
                cleared.append(record.id)
        if not cleared and not everything:
            raise NotFound("no lockout or failure counter matches")
        return {"id": ", ".join(cleared), "cleared": cleared}


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value.strip()
