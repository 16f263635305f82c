"""The HTTPS listener's TLS: contexts built from web.tlsCert/tlsKey/tlsMin/MaxVersion, swapped live on
reload (new handshakes get the new certificate, open connections keep theirs), and HSTS on its answers."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from appliance.config.schema import WebConfig
from appliance.errors import PorticoError

__all__ = ["DEFAULT_HSTS", "LoadedTLS", "ServerTLS", "StrictTransport", "TLSFilesError", "TLSSettings",
           "load_tls"]

log = logging.getLogger("portico.tls")

# Dex's spelling of the versions; Dex defaults to 1.2 at least and Go's maximum (1.3).
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
DEFAULT_MIN = "1.2"
DEFAULT_MAX = "1.3"
# TLS 1.2 suites: forward-secret AEAD only (Dex's list also has the RSA key exchange suites, which any
# current client can do without). TLS 1.3 suites are all AEAD and OpenSSL's defaults stay.
CIPHERS_TLS12 = "ECDHE+AESGCM:ECDHE+CHACHA20"
ALPN = ("h2", "http/1.1")
# Sent on every HTTPS answer that does not set its own (web.headers sets it on every answer, as Dex
# does). One year; no includeSubDomains: that would bind sibling hosts the operator may not own.
DEFAULT_HSTS = "max-age=31536000"


class TLSFilesError(PorticoError):
    """The certificate or key cannot be used; `key` names the setting at fault (web.tlsCert, web.tlsKey)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.detail = message


@dataclass(frozen=True)
class TLSSettings:
    cert: str
    key: str
    min_version: str = ""  # "" = 1.2
    max_version: str = ""  # "" = 1.3

    @classmethod
    def of(cls, web: WebConfig) -> TLSSettings:
        return cls(web.tls_cert, web.tls_key, web.tls_min_version, web.tls_max_version)

    @property
    def versions(self) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
        low = VERSIONS.get(self.min_version or DEFAULT_MIN)
        high = VERSIONS.get(self.max_version or DEFAULT_MAX)
        if low is None or high is None:
            bad = self.min_version if low is None else self.max_version
            raise TLSFilesError("web.tlsMinVersion" if low is None else "web.tlsMaxVersion",
                                f'TLS version must be "1.2" or "1.3", got "{bad}"')
        if low > high:
            raise TLSFilesError("web.tlsMinVersion", "tlsMinVersion is greater than tlsMaxVersion")
        return low, high


@dataclass(frozen=True)
class LoadedTLS:
    """A complete server context for one certificate, and what identifies it."""

    settings: TLSSettings
    context: ssl.SSLContext
    fingerprint: str  # SHA-256 of the leaf certificate (DER), hex
    subject: str
    not_after: datetime.datetime
    digest: str  # of the settings and both files' bytes: an unchanged pair is not swapped again

    def describe(self) -> str:
        return (f"{self.subject}, SHA-256 {self.fingerprint[:16]}…, valid until "
                f"{self.not_after:%Y-%m-%d %H:%M} UTC, TLS {self.settings.min_version or DEFAULT_MIN}-"
                f"{self.settings.max_version or DEFAULT_MAX}")


def _read(key: str, path: str) -> bytes:
    if not path:
        raise TLSFilesError(key, "no file given")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise TLSFilesError(key, f"cannot read {path}: {exc.strerror or exc}") from None


def load_tls(settings: TLSSettings) -> LoadedTLS:
    """Read, check and load the pair into a new server context. Blocking (file reads, key parsing):
    run it in a thread. TLSFilesError says which file is wrong and why."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization

    low, high = settings.versions
    cert_pem, key_pem = _read("web.tlsCert", settings.cert), _read("web.tlsKey", settings.key)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TLSFilesError("web.tlsCert", f"{settings.cert} holds no PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TLSFilesError("web.tlsKey", f"{settings.key} is encrypted (a key without passphrase is "
                            "needed)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSFilesError("web.tlsKey", f"{settings.key} holds no PEM private key") from None
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    leaf = chain[0]
    if leaf.public_key().public_bytes(der, raw) != private.public_key().public_bytes(der, raw):
        raise TLSFilesError("web.tlsKey", f"{settings.key} does not match the certificate in "
                            f"{settings.cert} (the first one there must be the server's)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = low, high
    context.set_ciphers(CIPHERS_TLS12)
    context.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
                        | ssl.OP_SINGLE_ECDH_USE)
    context.set_alpn_protocols(list(ALPN))
    try:
        # The files again, by OpenSSL this time: what it loads is what it checked (a file replaced
        # in between is caught by its own key check, and the next change event reloads anyway).
        context.load_cert_chain(settings.cert, settings.key)
    except (ssl.SSLError, OSError) as exc:
        raise TLSFilesError("web.tlsCert", f"OpenSSL refused {settings.cert} with {settings.key}: "
                            f"{getattr(exc, 'reason', None) or exc}") from None
    digest = hashlib.sha256(repr(settings).encode() + b"\0" + cert_pem + b"\0" + key_pem).hexdigest()
    return LoadedTLS(settings, context, leaf.fingerprint(hashes.SHA256()).hex(),
                     leaf.subject.rfc4514_string(), leaf.not_valid_after_utc, digest)


class ServerTLS:
    """The context the HTTPS listener was started with, and the pair it currently serves.

    The listener keeps its first context for good; its SNI callback (run for every ClientHello, with or
    without a server name) moves each new handshake onto the current pair's context. Connections already
    established keep the context they were made with, so a swap never disturbs them. Versions are read
    from the listener's context when a connection starts, so a swap sets them there too.
    """

    def __init__(self, first: LoadedTLS) -> None:
        self._front = first.context
        self._current = first
        self._front.sni_callback = self._pick
        self._warn_if_expired(first)

    @classmethod
    def open(cls, settings: TLSSettings) -> ServerTLS:
        """Blocking: load the first pair (TLSFilesError when it cannot be used)."""
        return cls(load_tls(settings))

    @property
    def context(self) -> ssl.SSLContext:
        """For the listener: the context every connection starts with."""
        return self._front

    @property
    def current(self) -> LoadedTLS:
        return self._current

    def _pick(self, conn: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        current = self._current.context
        if current is not context:
            conn.context = current

    async def prepare(self, web: WebConfig) -> Callable[[], str] | None:
        """Load the pair `web` names (in a thread). None when it is what serves already; else the step
        that swaps it in (returns a description). Raises TLSFilesError: the running pair stays."""
        loaded = await asyncio.to_thread(load_tls, TLSSettings.of(web))
        if loaded.digest == self._current.digest:
            return None

        def install() -> str:
            self.install(loaded)
            return loaded.describe()

        return install

    def install(self, loaded: LoadedTLS) -> None:
        low, high = loaded.settings.versions
        self._front.minimum_version, self._front.maximum_version = low, high
        self._current = loaded
        log.info("TLS certificate now served to new connections: %s", loaded.describe())
        self._warn_if_expired(loaded)

    @staticmethod
    def _warn_if_expired(loaded: LoadedTLS) -> None:
        if loaded.not_after <= datetime.datetime.now(datetime.UTC):
            log.warning("the TLS certificate %s expired on %s", loaded.subject, loaded.not_after)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
_HSTS = b"strict-transport-security"


class StrictTransport:
    """ASGI middleware of the HTTPS listener: Strict-Transport-Security on every answer that has none
    (RFC 6797 7.2: never over plain http, where a browser would ignore it anyway)."""

    def __init__(self, app: Callable[[Any, Any, Any], Awaitable[None]], value: str = DEFAULT_HSTS) -> None:
        self.app = app
        self._header = (_HSTS, value.encode("latin-1"))

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                if not any(name.lower() == _HSTS for name, _ in headers):
                    headers.append(self._header)
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_hsts)
