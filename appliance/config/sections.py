"""The server-wide sections of the config file: storage, web, telemetry, expiry, logger, frontend, signer."""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta

import yaml

from appliance.config.schema import (
    AdminConfig,
    ClientRemoteIP,
    ExpiryConfig,
    FrontendConfig,
    LoggerConfig,
    RefreshTokenExpiry,
    SignerConfig,
    StorageConfig,
    TelemetryConfig,
    WebConfig,
)
from appliance.config.yamlpos import Fields, Reader, suggest

STORAGE_TYPES = ("memory", "sqlite3", "postgres", "mysql", "etcd", "kubernetes")
STORAGE_SUPPORTED = ("memory", "sqlite3", "postgres")
_NETWORK_DB_KEYS = (
    "database",
    "user",
    "password",
    "host",
    "port",
    "connectionTimeout",
    "maxOpenConns",
    "maxIdleConns",
    "connMaxLifetime",
    "ssl",
)
_SSL_KEYS = ("mode", "caFile", "keyFile", "certFile")
_PG_SSL_MODES = ("disable", "require", "verify-ca", "verify-full")  # what Dex (lib/pq) accepts
# Dex's header settings, by the exact header names it uses as keys.
WEB_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
)
TLS_VERSIONS = ("1.2", "1.3")
WEB_SERVERS = ("granian", "hypercorn")  # web.server (Portico's own): the ASGI server that runs the app
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("text", "json")
THEMES = ("light", "dark")
_OLD_THEMES = ("coreos", "tectonic")  # Dex still accepts these and shows its light theme
SIGNER_ALGORITHMS = ("RS256", "ES256")


def read_storage(r: Reader, top: Fields) -> StorageConfig | None:
    """storage {type, config}; None when the section is missing or wrong."""
    if not top.has("storage"):
        r.missing("storage", top.line, "no storage configured (Dex requires it), e.g. type: sqlite3")
        return None
    f = r.section(top, "storage", ("type", "config"))
    kind = r.string(f, "type")
    if kind is None:
        if not f.has("type"):
            r.missing(f.child("type"), f.line, "missing storage type; one of " + ", ".join(STORAGE_TYPES))
        return None
    if kind not in STORAGE_TYPES:
        r.error(
            f.child("type"), f.value("type"), f'unknown storage type "{kind}"' + suggest(kind, STORAGE_TYPES)
        )
        return None
    if kind not in STORAGE_SUPPORTED:
        r.error(f.child("type"), f.value("type"), f"storage type {kind} is not supported by Portico yet")
        return None
    config: dict[str, object] = {}
    if kind == "memory":
        r.section(f, "config", ())
    elif kind == "sqlite3":
        c = r.section(f, "config", ("file",))
        file = r.string(c, "file", expand=True)
        if not file:
            r.missing(
                c.child("file"),
                c.line or f.line,
                "sqlite3 storage needs a file, e.g. config: {file: /var/lib/portico/portico.db}",
            )
            return None
        config["file"] = file
    else:
        config = _network_db(r, r.section(f, "config", _NETWORK_DB_KEYS))
    return StorageConfig(type=kind, config=config)


def _network_db(r: Reader, c: Fields) -> dict[str, object]:
    """postgres settings, keys spelled as Dex documents them, only those given (defaults apply later)."""
    out: dict[str, object] = {}
    for key in ("database", "user", "password", "host"):
        text = r.string(c, key, expand=True)
        if text is not None:
            out[key] = text
    for key in ("port", "connectionTimeout", "maxOpenConns", "maxIdleConns", "connMaxLifetime"):
        number = r.integer(c, key, expand=True)
        if number is None:
            continue
        limit = 65535 if key == "port" else 2**31 - 1
        if not 0 <= number <= limit:
            r.error(c.child(key), c.value(key), f"{number} is out of range 0..{limit}")
        out[key] = number
    if c.has("ssl"):
        s = r.section(c, "ssl", _SSL_KEYS)
        ssl: dict[str, str] = {}
        for key in _SSL_KEYS:
            text = r.string(s, key, expand=True)
            if text is not None:
                ssl[key] = text
        mode = ssl.get("mode", "")
        if mode and mode not in _PG_SSL_MODES:
            r.error(
                s.child("mode"),
                s.value("mode"),
                f'unknown ssl mode "{mode}"; one of '
                + ", ".join(_PG_SSL_MODES)
                + suggest(mode, _PG_SSL_MODES),
            )
        out["ssl"] = ssl
    return out


def check_address(r: Reader, f: Fields, key: str) -> str:
    """A listen address "host:port" ("" when absent); IPv6 hosts in brackets, port 0..65535."""
    text = r.string(f, key)
    if not text:
        return ""
    host, sep, port = text.rpartition(":")
    problem = ""
    if not sep:
        problem = 'missing ":port"'
    elif not port.isdigit() or not 0 <= int(port) <= 65535:
        problem = f'port "{port}" is not a number from 0 to 65535'
    elif ":" in host and not (host.startswith("[") and host.endswith("]")):
        problem = "an IPv6 host must be written in brackets, e.g. [::1]:5556"
    if problem:
        r.error(f.child(key), f.value(key), f'invalid address "{text}": {problem} (expected host:port)')
    return text


def read_web(r: Reader, top: Fields) -> WebConfig:
    f = r.section(
        top,
        "web",
        (
            "http",
            "https",
            "tlsCert",
            "tlsKey",
            "tlsMinVersion",
            "tlsMaxVersion",
            "allowedOrigins",
            "allowedHeaders",
            "headers",
            "clientRemoteIP",
            "server",  # Portico's own
        ),
    )
    http, https = check_address(r, f, "http"), check_address(r, f, "https")
    server = r.string(f, "server") or "granian"
    if server not in WEB_SERVERS:
        r.error(f.child("server"), f.value("server"), f'must be one of {", ".join(WEB_SERVERS)}, '
                f'got "{server}"')
    cert, key = r.string(f, "tlsCert") or "", r.string(f, "tlsKey") or ""
    if not http and not https and not (f.has("http") or f.has("https")):
        r.missing(
            f.child("http"), f.line or top.line, "set web.http and/or web.https: an address to listen on"
        )
    if https and not cert:
        r.missing(f.child("tlsCert"), f.line, "web.https needs tlsCert (the certificate file)")
    if https and not key:
        r.missing(f.child("tlsKey"), f.line, "web.https needs tlsKey (the private key file)")
    versions = []
    for name in ("tlsMinVersion", "tlsMaxVersion"):
        version = r.string(f, name) or ""
        if version and version not in TLS_VERSIONS:
            r.error(f.child(name), f.value(name), f'TLS version must be "1.2" or "1.3", got "{version}"')
        versions.append(version)
    if all(versions) and versions[0] > versions[1]:
        r.error(
            f.child("tlsMinVersion"), f.value("tlsMinVersion"), "tlsMinVersion is greater than tlsMaxVersion"
        )
    headers: dict[str, str] = {}
    h = r.section(f, "headers", WEB_HEADERS)
    for name in WEB_HEADERS:
        value = r.string(h, name)
        if value:
            headers[name] = value
    c = r.section(f, "clientRemoteIP", ("header", "trustedProxies"))
    proxies = r.strings(c, "trustedProxies") or ()
    for i, cidr in enumerate(proxies):
        try:
            if "/" not in cidr:
                raise ValueError("missing /prefix length")
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            r.error(
                f"{c.child('trustedProxies')}[{i}]",
                c.value("trustedProxies"),
                f'invalid CIDR "{cidr}": {exc}',
            )
    header = r.string(c, "header") or ""
    if header and not proxies:
        r.warning(
            c.child("header"),
            c.value("header"),
            "header is ignored without trustedProxies (otherwise any client could spoof its address)",
        )
    return WebConfig(
        http=http,
        https=https,
        tls_cert=cert,
        tls_key=key,
        tls_min_version=versions[0],
        tls_max_version=versions[1],
        allowed_origins=r.strings(f, "allowedOrigins") or (),
        allowed_headers=r.strings(f, "allowedHeaders") or (),
        headers=headers,
        client_remote_ip=ClientRemoteIP(header=header, trusted_proxies=proxies),
        server=server if server in WEB_SERVERS else "granian",
    )


def read_telemetry(r: Reader, top: Fields) -> TelemetryConfig:
    f = r.section(top, "telemetry", ("http",))
    return TelemetryConfig(http=check_address(r, f, "http"))


def read_expiry(r: Reader, top: Fields) -> tuple[ExpiryConfig, yaml.Node | None]:
    """expiry, and the expiry.signingKeys key node when given (read_signer decides what it means)."""
    f = r.section(
        top, "expiry", ("signingKeys", "idTokens", "authRequests", "deviceRequests", "refreshTokens")
    )
    d = ExpiryConfig()
    rt = r.section(
        f, "refreshTokens", ("disableRotation", "reuseInterval", "validIfNotUsedFor", "absoluteLifetime")
    )
    refresh = RefreshTokenExpiry(
        disable_rotation=bool(r.boolean(rt, "disableRotation")),
        reuse_interval=_or(r.duration(rt, "reuseInterval"), d.refresh_tokens.reuse_interval),
        valid_if_not_used_for=_or(
            r.duration(rt, "validIfNotUsedFor"), d.refresh_tokens.valid_if_not_used_for
        ),
        absolute_lifetime=_or(r.duration(rt, "absoluteLifetime"), d.refresh_tokens.absolute_lifetime),
    )
    values = {}
    for key, default in (
        ("signingKeys", d.signing_keys),
        ("idTokens", d.id_tokens),
        ("authRequests", d.auth_requests),
        ("deviceRequests", d.device_requests),
    ):
        value = r.duration(f, key)
        if value == timedelta(0):
            r.error(f.child(key), f.value(key), "must be longer than 0s")
        values[key] = value or default
    expiry = ExpiryConfig(
        signing_keys=values["signingKeys"],
        id_tokens=values["idTokens"],
        auth_requests=values["authRequests"],
        device_requests=values["deviceRequests"],
        refresh_tokens=refresh,
    )
    entry = f.entries.get("signingKeys")
    return expiry, (entry[0] if entry is not None and f.has("signingKeys") else None)


def read_logger(r: Reader, top: Fields) -> LoggerConfig:
    f = r.section(top, "logger", ("level", "format"))
    level = (r.string(f, "level") or "info").lower()
    if level not in LOG_LEVELS:
        r.error(
            f.child("level"),
            f.value("level"),
            f'unknown log level "{level}"; one of ' + ", ".join(LOG_LEVELS) + suggest(level, LOG_LEVELS),
        )
        level = "info"
    fmt = (r.string(f, "format") or "text").lower()
    if fmt not in LOG_FORMATS:
        r.error(f.child("format"), f.value("format"), f'unknown log format "{fmt}"; one of text, json')
        fmt = "text"
    return LoggerConfig(level=level, format=fmt)


def read_frontend(r: Reader, top: Fields) -> FrontendConfig:
    f = r.section(top, "frontend", ("dir", "theme", "issuer", "logoURL", "extra"))
    d = FrontendConfig()
    directory = r.string(f, "dir") or ""
    theme = r.string(f, "theme") or d.theme
    if theme in _OLD_THEMES:
        r.warning(f.child("theme"), f.value("theme"), f'theme "{theme}" is an old Dex name; using "light"')
        theme = "light"
    elif theme not in THEMES:
        message = f'unknown theme "{theme}"; Portico has light and dark' + suggest(theme, THEMES)
        if directory:  # a custom frontend.dir may carry its own themes/<name>
            r.warning(f.child("theme"), f.value("theme"), message + f" (kept: {directory} may provide it)")
        else:
            r.error(f.child("theme"), f.value("theme"), message)
    return FrontendConfig(
        dir=directory,
        theme=theme,
        issuer=r.string(f, "issuer") or d.issuer,
        logo_url=r.string(f, "logoURL") or "",
        extra=r.string_map(f, "extra") or {},
    )


def read_signer(r: Reader, top: Fields, expiry: ExpiryConfig, signing_keys: yaml.Node | None) -> SignerConfig:
    """signer, or expiry.signingKeys as the rotation period when signer is absent (as Dex does).

    signing_keys is the expiry.signingKeys key node when that key was given.
    """
    if not top.has("signer"):
        if signing_keys is not None:
            r.warning(
                "expiry.signingKeys",
                signing_keys,
                "deprecated in Dex; use signer: {type: local, config: {keysRotationPeriod: ...}}",
            )
        return SignerConfig(keys_rotation_period=expiry.signing_keys)
    f = r.section(top, "signer", ("type", "config"))
    kind = r.string(f, "type")
    if kind is None:
        if not f.has("type"):
            r.missing(f.child("type"), f.line, 'missing signer type (Dex requires it): "local"')
        return SignerConfig(keys_rotation_period=expiry.signing_keys)
    if kind == "vault":
        r.error(f.child("type"), f.value("type"), "signer type vault is not supported by Portico yet")
        return SignerConfig(keys_rotation_period=expiry.signing_keys)
    if kind != "local":
        r.error(f.child("type"), f.value("type"), f'unknown signer type "{kind}"; one of local, vault')
        return SignerConfig(keys_rotation_period=expiry.signing_keys)
    c = r.section(f, "config", ("keysRotationPeriod", "algorithm"))
    reported = len(r.problems)
    period = r.duration(c, "keysRotationPeriod", expand=True)
    if period is None and not any(p.severity == "error" for p in r.problems[reported:]):
        r.missing(  # absent, or empty after $VAR expansion: Dex refuses to start either way
            c.child("keysRotationPeriod"),
            c.value("keysRotationPeriod") or c.line or f.line,
            'the local signer needs config.keysRotationPeriod, e.g. "6h"',
        )
    elif period == timedelta(0):
        r.error(c.child("keysRotationPeriod"), c.value("keysRotationPeriod"), "must be longer than 0s")
    if signing_keys is not None and period is not None:
        r.warning(
            "expiry.signingKeys",
            signing_keys,
            "both expiry.signingKeys and signer.config.keysRotationPeriod are set; "
            "using signer.config.keysRotationPeriod",
        )
    algorithm = r.string(c, "algorithm", expand=True) or "RS256"
    if algorithm not in SIGNER_ALGORITHMS:
        r.error(
            c.child("algorithm"),
            c.value("algorithm"),
            f'unsupported algorithm "{algorithm}"; one of RS256, ES256',
        )
    return SignerConfig(type="local", keys_rotation_period=period or expiry.signing_keys, algorithm=algorithm)


def _or(value: timedelta | None, default: timedelta) -> timedelta:
    return default if value is None else value


# AF_UNIX socket paths are limited to 108 bytes with the terminating NUL (Linux's sun_path).
_MAX_SOCKET_PATH = 107
_MAX_RETENTION_DAYS = 100 * 366


def read_admin(r: Reader, top: Fields) -> AdminConfig:
    """admin {socket, auditRetentionDays} (Portico's own). The socket is read once, at start-up."""
    f = r.section(top, "admin", ("socket", "auditRetentionDays"))
    d = AdminConfig()
    socket = r.string(f, "socket") or ""
    if socket and (socket.endswith("/") or len(os.path.abspath(socket).encode()) > _MAX_SOCKET_PATH):
        r.error(f.child("socket"), f.value("socket"), f"{socket!r} cannot be a Unix socket path: it must "
                f"name a file, at most {_MAX_SOCKET_PATH} bytes long once made absolute")
    days = r.integer(f, "auditRetentionDays")
    if days is not None and not 0 <= days <= _MAX_RETENTION_DAYS:
        r.error(f.child("auditRetentionDays"), f.value("auditRetentionDays"),
                f"{days} is out of range: 0 (keep the audit log forever) to {_MAX_RETENTION_DAYS} days")
        days = None
    return AdminConfig(socket=socket, audit_retention_days=d.audit_retention_days if days is None else days)
