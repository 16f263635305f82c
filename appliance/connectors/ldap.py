"""The `ldap` connector: password logins, groups and refresh against an LDAP directory (as Dex's)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import ldap3
from ldap3.utils.conv import escape_filter_chars

from appliance.connectors.base import Identity, Scopes, UserRefusedError
from appliance.connectors.ldap_config import LDAPConfig, parse_config
from appliance.connectors.ldap_transport import (
    NO_SUCH_OBJECT,
    SIZE_LIMIT_EXCEEDED,
    Directory,
    Entry,
    filter_value,
)
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.ldap")

T = TypeVar("T")

_FILTER_ESCAPE = re.compile(rb"\\([0-9a-fA-F]{2})")


class UserGone(UserRefusedError):
    """Refresh found no user for the stored username, or the username now names another entry.

    The refresh token can never work again (answer invalid_grant); an outage is a plain ConnectorError.
    """


def _encode_data(username: str, dn: str) -> bytes:
    # The shape of Dex's refresh data ({"username", "entry": {"DN"}}, the username filter-escaped), so
    # refresh tokens carry over from Dex to Portico and back.
    body = {"username": escape_filter_chars(username), "entry": {"DN": dn}}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _decode_data(data: bytes | None) -> tuple[str, str]:
    """(username as typed, DN) from connector data; UserGone when it cannot be read."""
    try:
        body = json.loads(data or b"")
        escaped, dn = body["username"], body["entry"]["DN"]
        if not isinstance(escaped, str) or not isinstance(dn, str) or not escaped or not dn:
            raise ValueError("username or DN missing")
        # Undo the RFC 4515 escaping (Go's escaping also turns every non-ASCII byte into \XX).
        username = _FILTER_ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), escaped.encode()).decode()
    except (ValueError, KeyError, TypeError) as exc:
        raise UserGone(f"the refresh data of this session is unreadable ({type(exc).__name__})") from exc
    return username, dn


class LDAPConnector:
    """Password connector and refresh connector over one directory (see docs/connectors/ldap.md).

    The username is sent to the directory as typed (escaped); whether case and surrounding spaces
    matter is up to the matching rules of the username attributes (uid and mail ignore case).
    """

    def __init__(
        self, connector_id: str, cfg: LDAPConfig, *, timeout: float = 10.0, pool_size: int = 4,
        max_threads: int = 8,
    ) -> None:
        self.id = connector_id
        self.cfg = cfg
        self.directory = Directory(cfg, timeout=timeout, pool_size=pool_size)
        # Its own threads (started on demand): a directory that hangs ties up these, not the default
        # executor that bcrypt and file reads share.
        self._threads = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix=f"ldap-{connector_id}")
        wanted = [cfg.id_attr, cfg.email_attr, *cfg.username_attrs, cfg.name_attr,
                  cfg.preferred_username_attr, *(m.user_attr for m in cfg.user_matchers)]
        # "DN" is not an attribute to ask for: the DN comes with every entry.
        self._user_attributes = list(dict.fromkeys(a for a in wanted if a and a.lower() != "dn"))

    def __repr__(self) -> str:
        return f"LDAPConnector(id={self.id!r}, url={self.cfg.url!r}, bind_dn={self.cfg.bind_dn!r})"

    def prompt(self) -> str:
        return self.cfg.username_prompt

    async def login(self, scopes: Scopes, username: str, password: str) -> Identity | None:
        # Checked before anything reaches the network: a simple bind with a DN and an empty password
        # is an "unauthenticated bind", which many servers answer with success.
        if not password or not username:
            return None
        return await self._in_thread("login", lambda: self._login(scopes, username, password))

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        return await self._in_thread("refresh", lambda: self._refresh(scopes, identity))

    async def test_connection(self) -> str:
        """Bind as the service account and look up the base DNs: a one-line summary, or ConnectorError."""
        return await self._in_thread("connection test", lambda: self.directory.as_service(self._probe))

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._threads, self.directory.close)
        self._threads.shutdown(wait=False)

    async def _in_thread(self, what: str, work: Callable[[], T]) -> T:
        """Run blocking ldap3 work in a worker thread; every failure leaves as a logged ConnectorError."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, work)
        except UserGone as exc:
            log.info("ldap connector %s: %s refused: %s", self.id, what, exc)
            raise
        except ConnectorError as exc:
            log.error("ldap connector %s: %s failed: %s", self.id, what, exc)
            raise
        except Exception as exc:
            # A bug or a library surprise must not become an unhandled error page; the traceback is kept.
            log.exception("ldap connector %s: %s failed unexpectedly", self.id, what)
            raise ConnectorError(f"the LDAP connector failed unexpectedly ({type(exc).__name__})") from exc

    # -- the work, in a worker thread -------------------------------------------------------------

    def _login(self, scopes: Scopes, username: str, password: str) -> Identity | None:
        entry = self.directory.as_service(lambda conn: self._find_user(conn, username))
        if entry is None:
            log.info("ldap connector %s: no entry for username %r", self.id, username)
            return None
        if not self.directory.check_password(entry.dn, password):
            return None
        identity = self._identity(entry)
        groups = self.directory.as_service(lambda conn: self._groups(conn, entry)) if scopes.groups else ()
        return replace(identity, groups=groups, connector_data=_encode_data(username, entry.dn))

    def _refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        username, dn = _decode_data(identity.connector_data)
        entry = self.directory.as_service(lambda conn: self._find_user(conn, username))
        if entry is None:
            raise UserGone(f"user {username!r} is no longer in the directory")
        # DNs compare case-insensitively in practice (attribute types always, most values too).
        if entry.dn.casefold() != dn.casefold():
            raise UserGone(f"username {username!r} now names {entry.dn!r}, not {dn!r}")
        fresh = self._identity(entry)
        groups = self.directory.as_service(lambda conn: self._groups(conn, entry)) if scopes.groups else ()
        return replace(fresh, groups=groups, connector_data=identity.connector_data)

    def _user_filter(self, username: str) -> str:
        value = escape_filter_chars(username)
        terms = [f"({attr}={value})" for attr in self.cfg.username_attrs]
        found = terms[0] if len(terms) == 1 else f"(|{''.join(terms)})"
        return f"(&{self.cfg.user_filter}{found})" if self.cfg.user_filter else found

    def _find_user(self, conn: ldap3.Connection, username: str) -> Entry | None:
        cfg = self.cfg
        search_filter = self._user_filter(username)
        code, entries = self.directory.search(conn, cfg.user_base_dn, cfg.user_scope, search_filter,
                                              self._user_attributes, size_limit=2)
        if code == NO_SUCH_OBJECT:
            raise ConnectorError(f"userSearch.baseDN {cfg.user_base_dn!r} does not exist")
        if len(entries) > 1 or code == SIZE_LIMIT_EXCEEDED:
            raise ConnectorError(f"the user search {search_filter!r} matched several entries")
        return entries[0] if entries else None

    def _identity(self, entry: Entry) -> Identity:
        cfg = self.cfg
        missing: list[str] = []

        def required(key: str, attr: str) -> str:
            value = entry.text(attr)
            if not value:
                missing.append(f"{key} ({attr or 'not set'})")
            return value

        user_id = required("idAttr", cfg.id_attr)
        name = required("nameAttr", cfg.name_attr) if cfg.name_attr else ""
        preferred = ""
        if cfg.preferred_username_attr:
            preferred = required("preferredUsernameAttr", cfg.preferred_username_attr)
        # Dex builds the suffixed email from the name attribute's value.
        email = f"{name}@{cfg.email_suffix}" if cfg.email_suffix else required("emailAttr", cfg.email_attr)
        if missing:
            raise ConnectorError(f"LDAP entry {entry.dn!r} lacks required attribute(s): {', '.join(missing)}")
        return Identity(user_id=user_id, username=name, preferred_username=preferred, email=email,
                        email_verified=True)  # as Dex: the directory vouches for the address

    def _groups(self, conn: ldap3.Connection, user: Entry) -> tuple[str, ...]:
        cfg = self.cfg
        if not cfg.group_base_dn:
            return ()
        names: dict[str, None] = {}  # ordered set: the order the directory gave, no duplicates
        for matcher in cfg.user_matchers:
            found: list[Entry] = []
            for raw in user.raw(matcher.user_attr):
                found += self._query_groups(conn, matcher.group_attr, filter_value(raw))
            if not matcher.recursion_group_attr:
                names.update((self._group_name(group), None) for group in found)
                continue
            # Breadth-first up the tree of parent groups; each group is expanded once, so a cycle
            # of memberships ends.
            visited: set[str] = set()
            level = found
            while level:
                parents: list[Entry] = []
                for group in level:
                    if group.dn.casefold() in visited:
                        continue
                    visited.add(group.dn.casefold())
                    names[self._group_name(group)] = None
                    parents += self._query_groups(
                        conn, matcher.recursion_group_attr, filter_value(group.dn.encode())
                    )
                level = parents
        return tuple(names)

    def _query_groups(self, conn: ldap3.Connection, attr: str, escaped_value: str) -> list[Entry]:
        cfg = self.cfg
        term = f"({attr}={escaped_value})"
        search_filter = f"(&{cfg.group_filter}{term})" if cfg.group_filter else term
        attributes = [cfg.group_name_attr] if cfg.group_name_attr.lower() not in ("", "dn") else []
        code, entries = self.directory.search(
            conn, cfg.group_base_dn, cfg.group_scope, search_filter, attributes
        )
        if code == NO_SUCH_OBJECT:
            log.info("ldap connector %s: groupSearch.baseDN %r does not exist", self.id, cfg.group_base_dn)
        return entries

    def _group_name(self, group: Entry) -> str:
        name = group.text(self.cfg.group_name_attr)
        if not name:
            raise ConnectorError(f"LDAP group {group.dn!r} lacks groupSearch.nameAttr "
                                 f"({self.cfg.group_name_attr or 'not set'})")
        return name

    def _probe(self, conn: ldap3.Connection) -> str:
        cfg = self.cfg
        found: list[str] = []
        for key, base in (("userSearch.baseDN", cfg.user_base_dn), ("groupSearch.baseDN", cfg.group_base_dn)):
            if not base:
                continue
            code, _ = self.directory.search(conn, base, "BASE", "(objectClass=*)", [])
            if code == NO_SUCH_OBJECT:
                raise ConnectorError(f"{key} {base!r} does not exist on {cfg.url}")
            found.append(f"{key} {base!r} found")
        who = f"bound as {cfg.bind_dn!r}" if cfg.bind_dn else "bound anonymously"
        return f"{cfg.url}: {who}; " + "; ".join(found)


def open_ldap(connector_id: str, config: Mapping[str, Any]) -> LDAPConnector:
    """The `ldap` connector factory; ValueError naming every bad key of `config`."""
    return LDAPConnector(connector_id, parse_config(config))
