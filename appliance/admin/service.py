"""Admin use-cases: overview, clients, users, sessions, keys and config; what the admin API calls."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import bcrypt

from appliance import __version__
from appliance.admin.audit import redact
from appliance.admin.metrics import Metrics
from appliance.admin.reload import Reloader
from appliance.errors import NotFound, PorticoError
from appliance.ids import new_id, new_secret
from appliance.oidc.deps import Deps
from appliance.oidc.refreshstore import revoke_refresh_token
from appliance.store.models import Client, Keys, Password, RefreshToken, offline_session_key

__all__ = ["AdminService", "BadRequest", "ReadOnly"]

_BCRYPT_COST = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class BadRequest(PorticoError):
    """The request's content is wrong (the message says how)."""


class ReadOnly(PorticoError):
    """The object comes from the config file: change it there."""


def _strings(body: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{key} must be a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def _text(body: Mapping[str, Any], key: str, default: str = "") -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value.strip()


def _iso(when: datetime | None) -> str:
    return when.isoformat() if when is not None else ""


def client_view(client: Client, source: str) -> dict[str, Any]:
    return {
        "id": client.id, "name": client.name, "public": client.public, "has_secret": bool(client.secret),
        "redirect_uris": list(client.redirect_uris), "trusted_peers": list(client.trusted_peers),
        "logo_url": client.logo_url, "allowed_connectors": list(client.allowed_connectors),
        "source": source, "read_only": source == "config",
    }


def user_view(user: Password, source: str) -> dict[str, Any]:
    return {"email": user.email, "username": user.username, "user_id": user.user_id,
            "groups": list(user.groups), "source": source, "read_only": source == "config"}


def token_view(token: RefreshToken) -> dict[str, Any]:
    expiry = getattr(token, "expiry", None)
    return {
        "id": token.id, "client_id": token.client_id, "connector_id": token.connector_id,
        "user_id": token.claims.user_id, "username": token.claims.username, "email": token.claims.email,
        "scopes": list(token.scopes), "created_at": _iso(token.created_at),
        "last_used": _iso(token.last_used),
        "expiry": _iso(expiry) if isinstance(expiry, datetime) and expiry.year < 9999 else "",
    }


@dataclass
class AdminService:
    deps: Deps
    reloader: Reloader
    metrics: Metrics
    admin_socket: str = ""

    @property
    def _storage(self) -> Any:
        return self.deps.storage

    # --- overview ---------------------------------------------------------------------------------

    async def overview(self) -> dict[str, Any]:
        snap = self.deps.snapshot
        config = snap.config
        keys = await self.keys()
        last = self.reloader.last
        storage_where = ", ".join(f"{k}={v}" for k, v in redact(config.storage.config).items()
                                  if k.lower() in ("file", "host", "database", "port"))
        return {
            "issuer": config.issuer, "version": __version__, "pid": os.getpid(),
            "uptime_s": round(time.time() - self.metrics.started),
            "storage": {"type": config.storage.type, "where": storage_where},
            "listeners": [x for x in (f"http://{config.web.http}" if config.web.http else "",
                                      f"https://{config.web.https}" if config.web.https else "",
                                      f"unix:{self.admin_socket} (admin)" if self.admin_socket else "") if x],
            "connectors": [dataclasses.asdict(c) for c in self.reloader.connectors.values()],
            "keys": {k: keys[k] for k in ("algorithm", "current_kid", "age_s", "next_rotation",
                                           "next_rotation_in_s")},
            "config": {"path": self.reloader.path or "<embedded default>",
                       "generation": self.reloader.generation,
                       "last_reload": last.as_dict() if last else None},
            "activity": {"logins_last_hour": self.metrics.activity.last_hour("login"),
                         "tokens_last_hour": self.metrics.activity.last_hour("token")},
        }

    # --- clients ----------------------------------------------------------------------------------

    async def clients(self) -> list[dict[str, Any]]:
        static = self.deps.snapshot.clients
        out = [client_view(c, "config") for c in static.values()]
        out += [client_view(c, "storage") for c in await self._storage.clients.list() if c.id not in static]
        return sorted(out, key=lambda c: str(c["id"]))

    async def client(self, client_id: str) -> dict[str, Any]:
        static = self.deps.snapshot.clients.get(client_id)
        if static is not None:
            return client_view(static, "config")
        return client_view(await self._storage.clients.get(client_id), "storage")

    def _writable_client(self, client_id: str) -> None:
        if client_id in self.deps.snapshot.clients:
            raise ReadOnly(f"client {client_id!r} comes from the config file (staticClients): edit it there")

    async def create_client(self, body: Mapping[str, Any]) -> dict[str, Any]:
        client_id = _text(body, "id") or new_id()
        self._writable_client(client_id)
        public = bool(body.get("public", False))
        redirect_uris = _strings(body, "redirect_uris") or ()
        for uri in redirect_uris:
            if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", uri):
                raise BadRequest(f"redirect URI {uri!r} is not an absolute URI")
        secret = "" if public else new_secret()
        client = Client(id=client_id, secret=secret, redirect_uris=redirect_uris,
                        trusted_peers=_strings(body, "trusted_peers") or (), public=public,
                        name=_text(body, "name"), logo_url=_text(body, "logo_url"))
        await self._storage.clients.create(client)
        # The secret is shown here once; it is never listed again.
        return {**client_view(client, "storage"), "secret": secret}

    async def update_client(self, client_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._writable_client(client_id)
        changes: dict[str, Any] = {}
        for key in ("redirect_uris", "trusted_peers"):
            value = _strings(body, key)
            if value is not None:
                changes[key] = value
        for key in ("name", "logo_url"):
            if key in body:
                changes[key] = _text(body, key)
        if not changes:
            raise BadRequest("nothing to change: give redirect_uris, trusted_peers, name or logo_url")
        updated = await self._storage.clients.update(client_id, lambda c: dataclasses.replace(c, **changes))
        return client_view(updated, "storage")

    async def delete_client(self, client_id: str) -> dict[str, Any]:
        self._writable_client(client_id)
        await self._storage.clients.delete(client_id)
        return {"deleted": client_id}

    # --- users (the local password database) ------------------------------------------------------

    async def users(self) -> list[dict[str, Any]]:
        static = self.deps.snapshot.passwords
        out = [user_view(p, "config") for p in static.values()]
        out += [user_view(p, "storage") for p in await self._storage.passwords.list()
                if p.email.lower() not in static]
        return sorted(out, key=lambda u: str(u["email"]))

    def _writable_user(self, email: str) -> str:
        key = email.strip().lower()
        if key in self.deps.snapshot.passwords:
            raise ReadOnly(f"user {email!r} comes from the config file (staticPasswords): edit it there")
        return key

    @staticmethod
    async def _hash(body: Mapping[str, Any]) -> str:
        password = body.get("password")
        if not isinstance(password, str) or not password:
            raise BadRequest("password must be a non-empty string")
        if len(password.encode()) > 72:
            raise BadRequest("password is longer than bcrypt's 72 bytes")
        hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), bcrypt.gensalt(_BCRYPT_COST))
        return hashed.decode()

    async def create_user(self, body: Mapping[str, Any]) -> dict[str, Any]:
        email = _text(body, "email")
        if not _EMAIL.match(email):
            raise BadRequest(f"email {email!r} is not an email address")
        key = self._writable_user(email)
        user = Password(email=key, hash=await self._hash(body), username=_text(body, "username") or email,
                        user_id=_text(body, "user_id") or new_id(), groups=_strings(body, "groups") or ())
        await self._storage.passwords.create(user)
        return user_view(user, "storage")

    async def set_password(self, email: str, body: Mapping[str, Any]) -> dict[str, Any]:
        key = self._writable_user(email)
        hashed = await self._hash(body)
        user = await self._storage.passwords.update(key, lambda p: dataclasses.replace(p, hash=hashed))
        return user_view(user, "storage")

    async def update_user(self, email: str, body: Mapping[str, Any]) -> dict[str, Any]:
        key = self._writable_user(email)
        changes: dict[str, Any] = {}
        groups = _strings(body, "groups")
        if groups is not None:
            changes["groups"] = groups
        if "username" in body:
            changes["username"] = _text(body, "username")
        if not changes:
            raise BadRequest("nothing to change: give groups or username")
        user = await self._storage.passwords.update(key, lambda p: dataclasses.replace(p, **changes))
        return user_view(user, "storage")

    async def delete_user(self, email: str) -> dict[str, Any]:
        key = self._writable_user(email)
        await self._storage.passwords.delete(key)
        return {"deleted": key}

    # --- sessions and refresh tokens --------------------------------------------------------------

    async def sessions(self, user: str = "") -> dict[str, Any]:
        tokens: list[RefreshToken] = await self._storage.refresh_tokens.list()
        held = Counter(offline_session_key(t.claims.user_id, t.connector_id) for t in tokens)
        if user:
            u = user.lower()
            tokens = [t for t in tokens if u in (t.claims.user_id.lower(), t.claims.email.lower(),
                                                  t.claims.username.lower())]
        tokens.sort(key=lambda t: t.last_used, reverse=True)
        offline = await self._storage.offline_sessions.list()
        return {
            "refresh_tokens": [token_view(t) for t in tokens],
            "offline_sessions": [{"user_id": s.user_id, "connector_id": s.conn_id,
                                  "tokens": held[offline_session_key(s.user_id, s.conn_id)]}
                                 for s in offline if not user or s.user_id == user
                                 or any(s.user_id == t.claims.user_id for t in tokens)],
        }

    async def revoke(self, token_id: str) -> dict[str, Any]:
        token = await self._storage.refresh_tokens.get(token_id)
        await revoke_refresh_token(self.deps, token)
        return {"revoked": [token_id], "user_id": token.claims.user_id, "client_id": token.client_id}

    async def revoke_user(self, user: str) -> dict[str, Any]:
        if not user:
            raise BadRequest("user must name a user id, email or username")
        found = (await self.sessions(user))["refresh_tokens"]
        revoked = []
        for item in found:
            try:
                token = await self._storage.refresh_tokens.get(item["id"])
            except NotFound:
                continue
            await revoke_refresh_token(self.deps, token)
            revoked.append(item["id"])
        return {"revoked": revoked, "user": user}

    # --- keys -------------------------------------------------------------------------------------

    async def keys(self) -> dict[str, Any]:
        stored: Keys = await self._storage.get_keys()
        now = self.deps.clock.now()
        period = self.deps.snapshot.config.signer.keys_rotation_period
        kid = str((stored.signing_key_pub or {}).get("kid", ""))
        made = stored.next_rotation - period if stored.next_rotation else None
        return {
            "algorithm": self.deps.keys.algorithm, "current_kid": kid,
            "age_s": round((now - made).total_seconds()) if made else None,
            "next_rotation": _iso(stored.next_rotation),
            "next_rotation_in_s": round((stored.next_rotation - now).total_seconds())
            if stored.next_rotation else None,
            "verification_keys": [{"kid": str(v.public_key.get("kid", "")), "expiry": _iso(v.expiry)}
                                  for v in stored.verification_keys],
        }

    async def rotate_keys(self) -> dict[str, Any]:
        before = (await self.keys())["current_kid"]
        now = self.deps.clock.now()
        # Make the key set due (compare-and-swap, so replicas agree), then rotate as the loop would.
        await self._storage.update_keys(lambda k: dataclasses.replace(k, next_rotation=now))
        await self.deps.keys.rotate_if_due()
        await self.deps.keys.refresh()
        after = await self.keys()
        return {"previous_kid": before, **after}

    # --- config -----------------------------------------------------------------------------------

    async def config(self) -> dict[str, Any]:
        path = self.reloader.path
        text = ""
        if path:
            try:
                text = await asyncio.to_thread(_read_redacted, path)
            except OSError as exc:
                text = f"# cannot read {path}: {exc.strerror}"
        ws = self.reloader.watch
        return {
            "path": path or "<embedded default>", "text": text, "generation": self.reloader.generation,
            "watching": {"files": list(ws.files), "folders": list(ws.folders)},
            "history": [r.as_dict() for r in reversed(self.reloader.history)],
            "metrics": self.metrics.as_dict(),
        }

    async def reload(self) -> dict[str, Any]:
        report = await self.reloader.reload("api")
        assert report is not None
        return report.as_dict()


_SECRET_LINE = re.compile(r"^(\s*-?\s*[\w.-]*(?:secret|password|passwd|bindPW|hash)[\w.-]*\s*:\s*)(\S.*)$",
                          re.I)


def _read_redacted(path: str) -> str:
    """The config file with the values of secret-looking keys masked (a $VAR reference stays)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    out = []
    for line in lines:
        m = _SECRET_LINE.match(line)
        if m and not m.group(2).lstrip("\"'").startswith("$") and not m.group(1).rstrip().endswith("Env:"):
            line = m.group(1) + "********"
        out.append(line)
    return "\n".join(out) + "\n"

