"""The admin audit trail: who called (SO_PEERCRED), what changed with secrets redacted, how it ended."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appliance.store.base import AuditLog
from appliance.store.models import AuditEvent
from appliance.store.sql import audit_id

__all__ = ["AuditTrail", "Caller", "audit_id", "redact"]

# Keys whose values never reach the audit log (nor an API answer that shows a stored config).
_SECRET_KEY = re.compile(r"(secret|passw|bindpw|hash|token|private|credential|apikey|^pw$|key$)", re.I)
REDACTED = "********"


@dataclass(frozen=True)
class Caller:
    """The process at the other end of the admin socket, as the kernel reports it (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


def redact(value: Any, key: str = "") -> Any:
    """`value` with every secret-looking entry replaced (recursively), for logs and audit details."""
    if key and _SECRET_KEY.search(key) and not isinstance(value, Mapping | list | tuple):
        return REDACTED if value not in ("", None) else value
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    return value


class AuditTrail:
    """Writes events to storage and wakes the readers that long-poll the tail."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log
        self._new = asyncio.Condition()

    async def write(self, caller: Caller, when: datetime, action: str, target: str,
                    details: Mapping[str, Any], result: str) -> AuditEvent:
        event = AuditEvent(id=audit_id(when), time=when, uid=caller.uid, pid=caller.pid, gid=caller.gid,
                           action=action, target=target, details=dict(redact(details)), result=result)
        await self._log.append(event)
        async with self._new:
            self._new.notify_all()
        return event

    async def tail(self, after: str = "", limit: int = 200, wait: float = 0.0, query: str = ""
                   ) -> list[AuditEvent]:
        """Events after `after`, filtered by `query` (a substring of action, target, result, uid);
        with `wait`, blocks up to that many seconds for a first new event (the console's live tail)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, min(wait, 60.0))
        while True:
            events = [e for e in await self._log.tail(after, limit) if _matches(e, query)]
            remaining = deadline - loop.time()
            if events or remaining <= 0:
                return events
            async with self._new:
                try:
                    await asyncio.wait_for(self._new.wait(), timeout=remaining)
                except TimeoutError:
                    pass


def _matches(event: AuditEvent, query: str) -> bool:
    if not query:
        return True
    q = query.lower()
    hay = f"{event.action} {event.target} {event.result} uid={event.uid} pid={event.pid}".lower()
    return all(word in hay for word in q.split())
