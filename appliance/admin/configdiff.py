"""Comparing configurations: what changed between two, and which changes wait for a restart."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appliance.config.schema import Config, Problem

__all__ = ["RESTART_SETTINGS", "TLS_SETTINGS", "ReloadReport", "describe_changes", "keep_running"]

Setting = tuple[str, Callable[[Config], object]]

# Settings read once at start-up (listeners, storage, the route prefix, the key manager): a changed
# value is reported and the running one is kept until the process restarts.
RESTART_SETTINGS: tuple[Setting, ...] = (
    ("issuer", lambda c: c.issuer),
    ("storage", lambda c: (c.storage.type, c.storage.config)),
    ("web.http", lambda c: c.web.http),
    ("web.https", lambda c: c.web.https),
    ("web.server", lambda c: c.web.server),  # the ASGI server the listeners run on
    ("telemetry.http", lambda c: c.telemetry.http),
    ("signer", lambda c: c.signer),
    ("admin.socket", lambda c: c.admin.socket),  # the admin API's listener
)
# The HTTPS listener's certificate, key and versions: applied live when the reloader has the listener's
# TLS holder (appliance/web/tls.py) and web.https itself stays; otherwise they wait for a restart too.
TLS_SETTINGS: tuple[Setting, ...] = (
    ("web.tlsCert", lambda c: c.web.tls_cert),
    ("web.tlsKey", lambda c: c.web.tls_key),
    ("web.tlsMinVersion", lambda c: c.web.tls_min_version),
    ("web.tlsMaxVersion", lambda c: c.web.tls_max_version),
)


@dataclass(frozen=True)
class ReloadReport:
    """The outcome of one reload attempt."""

    result: str  # "applied" | "rejected" | "unchanged"
    trigger: str  # "start" | "watch" | "sighup" | "api" | "connectors"
    at: datetime
    duration_ms: float
    generation: int  # of the snapshot serving after this attempt
    problems: tuple[Problem, ...] = ()
    restart_required: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "result": self.result, "trigger": self.trigger, "at": self.at.isoformat(),
            "duration_ms": round(self.duration_ms, 1), "generation": self.generation,
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "restart_required": list(self.restart_required), "changes": list(self.changes),
            "message": self.message,
        }


def keep_running(new: Config, started: Config, *, tls_live: bool = False) -> tuple[Config, tuple[str, ...]]:
    """`new` with the started value of every setting that needs a restart, and the names of those that
    changed. With `tls_live`, the TLS settings apply (unless web.https changed: then they wait too)."""
    changed = tuple(name for name, get in RESTART_SETTINGS if get(new) != get(started))
    tls_waits = not tls_live or "web.https" in changed
    if tls_waits:
        changed += tuple(name for name, get in TLS_SETTINGS if get(new) != get(started))
    if not changed:
        return new, ()
    web = dataclasses.replace(new.web, http=started.web.http, https=started.web.https,
                              server=started.web.server)
    if tls_waits:
        web = dataclasses.replace(
            web, tls_cert=started.web.tls_cert, tls_key=started.web.tls_key,
            tls_min_version=started.web.tls_min_version, tls_max_version=started.web.tls_max_version,
        )
    kept = dataclasses.replace(
        new, issuer=started.issuer, storage=started.storage, web=web, signer=started.signer,
        telemetry=dataclasses.replace(new.telemetry, http=started.telemetry.http),
        expiry=dataclasses.replace(new.expiry, signing_keys=started.expiry.signing_keys),
        admin=dataclasses.replace(new.admin, socket=started.admin.socket),
    )
    return kept, changed


def describe_changes(old: Config, new: Config) -> tuple[str, ...]:
    """A short summary of what differs: "staticClients +app2", "connectors ~ldap", "oauth2"..."""
    out: list[str] = []
    keyed: dict[str, Callable[[Any], str]] = {
        "static_clients": lambda c: c.id, "connectors": lambda c: c.id, "static_passwords": lambda p: p.email,
    }
    names = {"static_clients": "staticClients", "connectors": "connectors",
             "static_passwords": "staticPasswords"}
    for f in dataclasses.fields(Config):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a == b or f.name == "source_path":
            continue
        key_of = keyed.get(f.name)
        if key_of is None:
            out.append(f.name)
            continue
        olds = {key_of(x): x for x in a}
        news = {key_of(x): x for x in b}
        parts = [f"+{k}" for k in news if k not in olds] + [f"-{k}" for k in olds if k not in news]
        parts += [f"~{k}" for k in news if k in olds and news[k] != olds[k]]
        out.append(f"{names[f.name]} {' '.join(parts)}".strip())
    return tuple(out)
