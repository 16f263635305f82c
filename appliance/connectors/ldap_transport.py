"""How the `ldap` connector reaches the directory: TLS, timeouts, binds, searches, service connections.

Everything here is synchronous (ldap3's SYNC strategy) and runs in a worker thread; the connector
hands whole operations to `asyncio.to_thread`. Every socket has a connect and a receive timeout, so a
thread never waits on a silent server for longer than that.
"""

from __future__ import annotations

import base64
import logging
import math
import ssl
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import ldap3
from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPSocketOpenError,
    LDAPSocketReceiveError,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars

from appliance.connectors.ldap_config import LDAPConfig
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.ldap")

T = TypeVar("T")

# LDAP result codes (RFC 4511) that the connector acts on.
SUCCESS = 0
SIZE_LIMIT_EXCEEDED = 4
CONSTRAINT_VIOLATION = 19  # some servers answer a bad or expired password with this
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49


@dataclass(frozen=True)
class Entry:
    """A search result entry: its DN and raw attribute values, attribute names lowercased."""

    dn: str
    attrs: Mapping[str, tuple[bytes, ...]]

    def raw(self, name: str) -> tuple[bytes, ...]:
        """The values of `name`; "DN" means the entry's DN unless the entry has such an attribute."""
        values = self.attrs.get(name.lower(), ())
        if not values and name.lower() == "dn":
            return (self.dn.encode(),)
        return values

    def texts(self, name: str) -> list[str]:
        return [as_text(name, value) for value in self.raw(name)]

    def text(self, name: str) -> str:
        values = self.raw(name) if name else ()
        return as_text(name, values[0]) if values else ""


def _sid(raw: bytes) -> str | None:
    # Windows SID: revision, sub-authority count, 48-bit authority (big endian), 32-bit little-endian parts.
    if len(raw) < 8 or len(raw) != 8 + 4 * raw[1]:
        return None
    parts = [int.from_bytes(raw[8 + 4 * i: 12 + 4 * i], "little") for i in range(raw[1])]
    return "-".join(["S", str(raw[0]), str(int.from_bytes(raw[2:8], "big")), *map(str, parts)])


def as_text(name: str, raw: bytes) -> str:
    """An attribute value as text: Active Directory's binary ids in their usual string forms, UTF-8
    as is, and any other binary value as standard base64 (a claim must be valid UTF-8)."""
    lowered = name.lower()
    if lowered == "objectguid" and len(raw) == 16:
        return str(uuid.UUID(bytes_le=raw))  # the form PowerShell and AD tools print
    if lowered == "objectsid" and (sid := _sid(raw)) is not None:
        return sid
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")


def filter_value(raw: bytes) -> str:
    """An attribute value escaped for a filter (RFC 4515): text escaped by character, binary by byte."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"\\{byte:02x}" for byte in raw)
    return escape_filter_chars(text)


class _ContextTls(ldap3.Tls):
    """ldap3's TLS hook, over an ssl.SSLContext built once, so that the standard library checks the
    server's name (or IP address) the way Go's crypto/tls does for Dex."""

    def __init__(self, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(validate=context.verify_mode)
        self._context = context
        self._server_name = server_name

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self._server_name,
        )


def _tls_context(cfg: LDAPConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname check and CERT_REQUIRED by default
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.root_ca_pem is not None:
        # As in Dex, a configured CA replaces the system's trust store rather than adding to it.
        context.load_verify_locations(cadata=cfg.root_ca_pem.decode("ascii", "replace"))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cfg.client_cert:
        context.load_cert_chain(cfg.client_cert, cfg.client_key)
    if cfg.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe(cfg: LDAPConfig, exc: BaseException) -> ConnectorError:
    """A ConnectorError that says what went wrong in words an operator can act on (no secrets)."""
    text = str(exc) or type(exc).__name__
    # ldap3 raises a class that is both its own error and the original one (ssl.SSLError here).
    if isinstance(exc, (LDAPStartTLSError, ssl.SSLError)) or "ssl wrapping error" in text:
        return ConnectorError(f"TLS with the LDAP server {cfg.url} failed: {text}")
    if isinstance(exc, LDAPSocketOpenError):
        return ConnectorError(f"LDAP server unreachable at {cfg.url}: {text}")
    if isinstance(exc, LDAPSocketReceiveError) and (isinstance(exc, TimeoutError) or "timed out" in text):
        return ConnectorError(f"LDAP server {cfg.url} did not answer in time: {text}")
    if isinstance(exc, LDAPCommunicationError):
        return ConnectorError(f"lost the connection to the LDAP server {cfg.url}: {text}")
    return ConnectorError(f"LDAP error talking to {cfg.url}: {type(exc).__name__}: {text}")


def _quiet_unbind(conn: ldap3.Connection) -> None:
    try:
        conn.unbind()
    except (LDAPException, OSError):
        pass  # closing a connection to a server that is gone cannot fail in a way worth reporting


class Directory:
    """The directory server of one connector: fresh connections for user binds, and a few bound
    service connections (bindDN, or anonymous) kept for searches and rebuilt when they break."""

    def __init__(self, cfg: LDAPConfig, *, timeout: float = 10.0, pool_size: int = 4) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self._pool_size = pool_size
        self._idle: list[ldap3.Connection] = []
        self._lock = threading.Lock()
        self._server: ldap3.Server | None = None
        self._closed = False
        self._whole_seconds = max(1, math.ceil(timeout))

    def _get_server(self) -> ldap3.Server:
        # Built on first use, in a worker thread: loading the system's CA store takes tens of ms.
        with self._lock:
            if self._server is None:
                tls = None
                if self.cfg.transport != "plain":
                    try:
                        tls = _ContextTls(_tls_context(self.cfg), self.cfg.host)
                    except (ssl.SSLError, OSError, ValueError) as exc:  # e.g. a key that fits no cert
                        raise ConnectorError(
                            f"TLS setup for the LDAP server {self.cfg.url} failed: {exc}"
                        ) from exc
                self._server = ldap3.Server(
                    self.cfg.host, port=self.cfg.port, use_ssl=self.cfg.transport == "ldaps", tls=tls,
                    get_info=ldap3.NONE, connect_timeout=self.timeout, mode=ldap3.IP_SYSTEM_DEFAULT,
                )
            return self._server

    def _connect(self, user: str | None, password: str | None) -> ldap3.Connection:
        """An open connection (TLS done), not yet bound."""
        conn = ldap3.Connection(
            self._get_server(),
            user=user,
            password=password,
            authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
            auto_bind=ldap3.AUTO_BIND_NONE,
            # ldap3 packs this into SO_RCVTIMEO as an integer: whole seconds, rounded up.
            receive_timeout=self._whole_seconds,
            # DNs go to the server exactly as the server wrote them; referrals are not followed
            # (they would send the service password to another host).
            check_names=False,
            auto_referrals=False,
            raise_exceptions=False,
            return_empty_attributes=False,
        )
        try:
            conn.open(read_server_info=False)
            if self.cfg.transport == "starttls" and not conn.start_tls(read_server_info=False):
                raise LDAPStartTLSError(f"StartTLS refused: {conn.result}")
        except BaseException:
            _quiet_unbind(conn)
            raise
        return conn

    def _service_connection(self) -> ldap3.Connection:
        conn = self._connect(self.cfg.bind_dn or None, self.cfg.bind_pw or None)
        if not conn.bind(read_server_info=False):
            result = conn.result or {}
            _quiet_unbind(conn)
            who = f"as {self.cfg.bind_dn!r}" if self.cfg.bind_dn else "anonymously"
            raise ConnectorError(
                f"LDAP service bind {who} to {self.cfg.url} failed: "
                f"{result.get('description', '')} {result.get('message', '')}".rstrip()
            )
        return conn

    def check_password(self, dn: str, password: str) -> bool:
        """Bind as `dn` on a fresh connection: True, or False for wrong credentials. Never binds with
        an empty password: that is an unauthenticated bind, which servers answer with success."""
        if not password:
            return False
        try:
            conn = self._connect(dn, password)
            try:
                if conn.bind(read_server_info=False):
                    return True
                result = conn.result or {}
            finally:
                _quiet_unbind(conn)
        except LDAPException as exc:
            raise describe(self.cfg, exc) from exc
        code = result.get("result")
        if code in (INVALID_CREDENTIALS, CONSTRAINT_VIOLATION):
            log.info("ldap: bind refused for %s: %s", dn, result.get("description", code))
            return False
        raise ConnectorError(f"LDAP bind as {dn!r} failed: {result.get('description', code)} "
                             f"{result.get('message', '')}".rstrip())

    def as_service(self, work: Callable[[ldap3.Connection], T]) -> T:
        """Run `work` on a bound service connection. A pooled connection the server closed meanwhile
        is replaced once; searches are read-only, so running `work` again is safe."""
        with self._lock:
            pooled = self._idle.pop() if self._idle else None
        try:
            if pooled is not None:
                try:
                    return self._run(pooled, work)
                except LDAPCommunicationError:
                    log.info("ldap: a pooled connection to %s broke; opening a new one", self.cfg.url)
            return self._run(self._service_connection(), work)
        except LDAPException as exc:
            raise describe(self.cfg, exc) from exc

    def _run(self, conn: ldap3.Connection, work: Callable[[ldap3.Connection], T]) -> T:
        try:
            result = work(conn)
        except BaseException:
            _quiet_unbind(conn)  # whatever state it is in, it is not worth keeping
            raise
        self._release(conn)
        return result

    def _release(self, conn: ldap3.Connection) -> None:
        with self._lock:
            if not self._closed and not conn.closed and len(self._idle) < self._pool_size:
                self._idle.append(conn)
                return
        _quiet_unbind(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _quiet_unbind(conn)

    def search(self, conn: ldap3.Connection, base: str, scope: Literal["BASE", "LEVEL", "SUBTREE"],
               ldap_filter: str, attributes: list[str], *, size_limit: int = 0) -> tuple[int, list[Entry]]:
        """(LDAP result code, entries). Result codes other than success, noSuchObject and
        sizeLimitExceeded raise ConnectorError."""
        conn.search(
            base, ldap_filter, search_scope=scope, dereference_aliases=ldap3.DEREF_NEVER,
            attributes=attributes or ["1.1"], size_limit=size_limit, time_limit=self._whole_seconds,
        )
        result = conn.result or {}
        code = result.get("result", -1)
        if code not in (SUCCESS, NO_SUCH_OBJECT, SIZE_LIMIT_EXCEEDED):
            raise ConnectorError(f"LDAP search under {base!r} with filter {ldap_filter!r} failed: "
                                 f"{result.get('description', code)} {result.get('message', '')}".rstrip())
        entries = [
            Entry(item["dn"], {str(k).lower(): tuple(v) for k, v in item.get("raw_attributes", {}).items()})
            for item in (conn.response or [])
            if item.get("type") == "searchResEntry"  # search references (AD's referrals) are skipped
        ]
        return code, entries
