"""Process counters the admin API exposes (config reloads, admin calls, logins and tokens per minute)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Activity", "LoginLogCounter", "Metrics"]

_WINDOW_S = 3600


class Activity:
    """Events per minute over the last hour (logins, token responses), in one small ring per kind."""

    def __init__(self, now: float | None = None) -> None:
        self._buckets: dict[str, deque[tuple[int, int]]] = {}
        self._now = now

    def _minute(self) -> int:
        return int((self._now if self._now is not None else time.time()) // 60)

    def record(self, kind: str, count: int = 1) -> None:
        minute = self._minute()
        ring = self._buckets.setdefault(kind, deque())
        if ring and ring[-1][0] == minute:
            ring[-1] = (minute, ring[-1][1] + count)
        else:
            ring.append((minute, count))
        self._trim(ring, minute)

    def last_hour(self, kind: str) -> int:
        ring = self._buckets.get(kind)
        if not ring:
            return 0
        minute = self._minute()
        self._trim(ring, minute)
        return sum(count for _, count in ring)

    @staticmethod
    def _trim(ring: deque[tuple[int, int]], minute: int) -> None:
        while ring and ring[0][0] <= minute - _WINDOW_S // 60:
            ring.popleft()


@dataclass
class Metrics:
    """Counters of this process. Exported through the admin API (`GET /v1/metrics`), in Prometheus
    text format too; `portico serve` also serves them on the telemetry listener's /metrics, and sets
    `exposition` so that the admin API's text carries the rest of that registry (HTTP, logins, ...)."""

    started: float = field(default_factory=time.time)
    reloads_applied: int = 0
    reloads_rejected: int = 0
    reloads_unchanged: int = 0
    last_reload_ok: bool = True
    last_reload_at: float = 0.0
    last_success_at: float = 0.0
    admin_calls: int = 0
    admin_denied: int = 0
    activity: Activity = field(default_factory=Activity)
    # More Prometheus text appended to `prometheus()` (the telemetry registry less these counters).
    exposition: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "portico_config_reloads_total_applied": self.reloads_applied,
            "portico_config_reloads_total_rejected": self.reloads_rejected,
            "portico_config_reloads_total_unchanged": self.reloads_unchanged,
            "portico_config_last_reload_successful": self.last_reload_ok,
            "portico_config_last_reload_timestamp_seconds": self.last_reload_at,
            "portico_config_last_reload_success_timestamp_seconds": self.last_success_at,
            "portico_admin_requests_total": self.admin_calls,
            "portico_admin_requests_denied_total": self.admin_denied,
            "portico_logins_last_hour": self.activity.last_hour("login"),
            "portico_tokens_issued_last_hour": self.activity.last_hour("token"),
            "portico_process_start_time_seconds": self.started,
        }

    def prometheus(self) -> str:
        """The counters in the Prometheus text exposition format."""
        lines = [
            "# HELP portico_config_reloads_total Configuration reload attempts by result.",
            "# TYPE portico_config_reloads_total counter",
            f'portico_config_reloads_total{{result="applied"}} {self.reloads_applied}',
            f'portico_config_reloads_total{{result="rejected"}} {self.reloads_rejected}',
            f'portico_config_reloads_total{{result="unchanged"}} {self.reloads_unchanged}',
            "# HELP portico_config_last_reload_successful Whether the last reload attempt was applied.",
            "# TYPE portico_config_last_reload_successful gauge",
            f"portico_config_last_reload_successful {int(self.last_reload_ok)}",
            "# TYPE portico_config_last_reload_success_timestamp_seconds gauge",
            f"portico_config_last_reload_success_timestamp_seconds {self.last_success_at:.3f}",
            "# TYPE portico_admin_requests_total counter",
            f"portico_admin_requests_total {self.admin_calls}",
            "# TYPE portico_admin_requests_denied_total counter",
            f"portico_admin_requests_denied_total {self.admin_denied}",
        ]
        text = "\n".join(lines) + "\n"
        if self.exposition is not None:
            text += self.exposition()
        return text


class LoginLogCounter(logging.Filter):
    """Counts successful logins from the protocol core's log line, which is the only signal `oidc/`
    gives today; a proper event hook in Deps would replace this (reported to the oidc owner)."""

    def __init__(self, activity: Activity) -> None:
        super().__init__()
        self._activity = activity

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("login successful"):
            self._activity.record("login")
        return True
