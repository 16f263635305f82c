"""Loading a Dex-style config.yaml into a Config, reporting every problem with its key path and line."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

import yaml

from appliance.config.identities import (
    CONNECTOR_TYPES,
    LOCAL_CONNECTOR_ID,
    PASSWORD_CONNECTOR_TYPES,
    read_connectors,
    read_static_clients,
    read_static_passwords,
)
from appliance.config.mfa import read_mfa
from appliance.config.schema import (
    Config,
    IntrospectionConfig,
    OAuth2Config,
    PKCEConfig,
    Problem,
    StaticClient,
    StorageConfig,
)
from appliance.config.sections import (
    read_admin,
    read_expiry,
    read_frontend,
    read_logger,
    read_signer,
    read_storage,
    read_telemetry,
    read_web,
)
from appliance.config.security import read_security
from appliance.config.yamlpos import Fields, Reader, compose, suggest

TOP_LEVEL_KEYS = (
    "issuer",
    "storage",
    "web",
    "telemetry",
    "oauth2",
    "expiry",
    "logger",
    "frontend",
    "signer",
    "connectors",
    "staticClients",
    "enablePasswordDB",
    "staticPasswords",
    "mfa",
    "security",  # Portico's own
    "admin",  # Portico's own
)

# Keys Dex knows and Portico does not support yet: a warning, the value is ignored. Paths use "[]"
# for any list index. Remove a row when the feature lands.
NOT_YET_SUPPORTED: dict[str, str] = {
    "grpc": "Dex's gRPC API; Portico is administered through its own admin API (portico tui)",
    "sessions": "Dex's experimental browser sessions (DEX_SESSIONS_ENABLED)",
    "telemetry.enableProfiling": "Go's pprof endpoints have no Python equivalent",
    "logger.excludeFields": "dropping log attributes by name",
    "staticClients[].refreshTokenLifetime": "per-client refresh token lifetime (Dex sessions)",
    "staticClients[].ssoSharedWith": "per-client SSO sharing (Dex sessions)",
    "connectors[].grantTypes": "restricting a connector to some grant types; it is allowed for all",
}

RESPONSE_TYPES = (
    "code",
    "token",
    "id_token",
    "code token",
    "code id_token",
    "id_token token",
    "code id_token token",
)
GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH_TOKEN = "refresh_token"  # noqa: S105 - a grant type name, not a secret
GRANT_IMPLICIT = "implicit"
GRANT_PASSWORD = "password"  # noqa: S105 - a grant type name, not a secret
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a grant type name, not a secret
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TYPES = (
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_IMPLICIT,
    GRANT_PASSWORD,
    GRANT_DEVICE_CODE,
    GRANT_TOKEN_EXCHANGE,
    GRANT_CLIENT_CREDENTIALS,
)
# What Dex enables when oauth2.grantTypes is not given (client_credentials only behind a flag).
_DEFAULT_GRANTS = (
    GRANT_AUTHORIZATION_CODE,
    GRANT_IMPLICIT,
    GRANT_PASSWORD,
    GRANT_REFRESH_TOKEN,
    GRANT_DEVICE_CODE,
    GRANT_TOKEN_EXCHANGE,
)
PKCE_METHODS = ("S256", "plain")
EMBEDDED_SOURCE = "<embedded>"


def default_config_text() -> str:
    """The embedded development config used by `portico serve` with no argument."""
    import importlib.resources  # ~0.9 MB with tempfile, shutil, bz2, lzma: only the development start

    return importlib.resources.files("appliance.config").joinpath("default.yaml").read_text("utf-8")


def load_config(path: str, *, env: Mapping[str, str] | None = None) -> tuple[Config | None, list[Problem]]:
    """Read and validate the config file at path. See parse_config; an unreadable file is one error."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem("error", "", 0, f"cannot read {path}: {_reason(exc)}")]
    return parse_config(text, source=path, env=env)


def parse_config(
    text: str, *, source: str = EMBEDDED_SOURCE, env: Mapping[str, str] | None = None
) -> tuple[Config | None, list[Problem]]:
    """Validate config text. Returns (Config, problems); Config is None when any problem is an error.

    source names where text came from: a file path becomes Config.source_path; a name in angle
    brackets ("<embedded>") means no file, and source_path stays "".
    env replaces os.environ for $VAR expansion, idEnv/secretEnv/hashFromEnv and Dex's DEX_* flags.
    Problems are sorted by line. Reads no other file and opens nothing.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    root, syntax = compose(text)
    if syntax is not None:
        return None, [syntax]
    if root is None:
        return None, [Problem("error", "", 0, "the configuration is empty")]
    r = Reader(environ, NOT_YET_SUPPORTED, expand=_go_bool(environ.get("DEX_EXPAND_ENV", ""), default=True))
    top = r.mapping(root, "", TOP_LEVEL_KEYS)
    if top.node is None:
        return None, r.problems
    embedded = source.startswith("<") and source.endswith(">")  # "<embedded>", "<embedded default>", ...
    config = _read(r, top, environ, "" if embedded else source)
    problems = sorted(r.problems, key=lambda p: p.line)
    if any(p.severity == "error" for p in problems):
        return None, problems
    return config, problems


def _read(r: Reader, top: Fields, env: Mapping[str, str], source_path: str) -> Config:
    issuer = _read_issuer(r, top)
    storage = read_storage(r, top)
    expiry, signing_keys_node = read_expiry(r, top)
    signer = read_signer(r, top, expiry, signing_keys_node)
    expiry = dataclasses.replace(expiry, signing_keys=signer.keys_rotation_period)
    enable_password_db = bool(r.boolean(top, "enablePasswordDB"))
    connectors = read_connectors(r, top, enable_password_db)
    device_callback = (urlsplit(issuer).path.rstrip("/") + "/device/callback") if issuer else ""
    clients = read_static_clients(r, top, device_callback)
    passwords = read_static_passwords(r, top)
    if passwords and not enable_password_db:
        r.error(
            "staticPasswords",
            top.value("staticPasswords"),
            "static passwords need enablePasswordDB: true (as in Dex)",
        )
    oauth2 = _read_oauth2(r, top, env)
    connector_types = {c.id: c.type for c in connectors}
    if enable_password_db:
        connector_types[LOCAL_CONNECTOR_ID] = LOCAL_CONNECTOR_ID
    _cross_check(r, top, oauth2, clients, connector_types)
    mfa = read_mfa(r, top, clients, (*CONNECTOR_TYPES, LOCAL_CONNECTOR_ID))
    return Config(
        issuer=issuer or "",
        storage=storage or StorageConfig(),
        web=read_web(r, top),
        telemetry=read_telemetry(r, top),
        expiry=expiry,
        logger=read_logger(r, top),
        frontend=read_frontend(r, top),
        signer=signer,
        oauth2=oauth2,
        static_clients=clients,
        connectors=connectors,
        enable_password_db=enable_password_db,
        static_passwords=passwords,
        mfa=mfa,
        security=read_security(r, top),
        admin=read_admin(r, top),
        source_path=source_path,
    )


def _read_issuer(r: Reader, top: Fields) -> str | None:
    issuer = r.string(top, "issuer")
    node = top.value("issuer")
    if issuer is None:
        if node is None:
            r.missing(
                "issuer", top, "missing issuer: the public URL of Portico, e.g. https://auth.example.com/dex"
            )
        return None
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.error(
            "issuer", node, f'"{issuer}" is not an http(s) URL with a host, e.g. https://auth.example.com/dex'
        )
        return None
    if parts.query or parts.fragment:
        r.error(
            "issuer", node, "the issuer URL must not have a query or a fragment (OpenID Connect Discovery)"
        )
        return None
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        r.warning(
            "issuer", node, "plain http on a non-loopback host: OpenID Connect requires https in production"
        )
    return issuer


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_oauth2(r: Reader, top: Fields, env: Mapping[str, str]) -> OAuth2Config:
    """oauth2, with grant_types resolved to what is actually enabled, sorted (as Dex advertises them)."""
    f = r.section(
        top,
        "oauth2",
        (
            "grantTypes",
            "responseTypes",
            "skipApprovalScreen",
            "alwaysShowLoginScreen",
            "passwordConnector",
            "pkce",
            "introspection",  # Portico's own
        ),
    )
    response_types: list[str] = []
    for i, value in enumerate(r.strings(f, "responseTypes") or ()):
        if value not in RESPONSE_TYPES:
            r.error(
                f"{f.child('responseTypes')}[{i}]",
                f.value("responseTypes"),
                f'unsupported response type "{value}"; one of '
                + ", ".join(RESPONSE_TYPES)
                + suggest(value, RESPONSE_TYPES),
            )
        elif value not in response_types:
            response_types.append(value)
    password_connector = r.string(f, "passwordConnector") or ""
    available = {
        GRANT_AUTHORIZATION_CODE,
        GRANT_REFRESH_TOKEN,
        GRANT_DEVICE_CODE,
        GRANT_TOKEN_EXCHANGE,
        GRANT_CLIENT_CREDENTIALS,
    }
    if any("token" in value.split() for value in response_types):
        available.add(GRANT_IMPLICIT)
    if password_connector:
        available.add(GRANT_PASSWORD)
    configured = r.strings(f, "grantTypes")
    if configured:
        for i, grant in enumerate(configured):
            where = (f"{f.child('grantTypes')}[{i}]", f.value("grantTypes"))
            if grant not in GRANT_TYPES:
                r.warning(*where, f'unknown grant type "{grant}", ignored' + suggest(grant, GRANT_TYPES))
            elif grant == GRANT_IMPLICIT and grant not in available:
                r.warning(*where, "implicit stays off until oauth2.responseTypes includes a token type")
            elif grant == GRANT_PASSWORD and grant not in available:
                r.warning(*where, "password stays off until oauth2.passwordConnector names a connector")
    else:
        configured = _DEFAULT_GRANTS
        if _go_bool(env.get("DEX_CLIENT_CREDENTIAL_GRANT_ENABLED_BY_DEFAULT", ""), default=False):
            configured = (*configured, GRANT_CLIENT_CREDENTIALS)
    p = r.section(f, "pkce", ("enforce", "codeChallengeMethodsSupported"))
    methods = r.strings(p, "codeChallengeMethodsSupported") or PKCEConfig().code_challenge_methods_supported
    for i, method in enumerate(methods):
        if method not in PKCE_METHODS:
            r.error(
                f"{p.child('codeChallengeMethodsSupported')}[{i}]",
                p.value("codeChallengeMethodsSupported"),
                f'unsupported PKCE method "{method}"; one of S256, plain',
            )
    intro = r.section(f, "introspection", ("allowUnauthenticated",))
    introspection = IntrospectionConfig(allow_unauthenticated=bool(r.boolean(intro, "allowUnauthenticated")))
    return OAuth2Config(
        grant_types=tuple(sorted({g for g in configured if g in available})),
        response_types=tuple(response_types) or ("code",),
        skip_approval_screen=bool(r.boolean(f, "skipApprovalScreen")),
        always_show_login_screen=bool(r.boolean(f, "alwaysShowLoginScreen")),
        password_connector=password_connector,
        pkce=PKCEConfig(
            enforce=bool(r.boolean(p, "enforce")), code_challenge_methods_supported=tuple(methods)
        ),
        introspection=introspection,
    )


def _cross_check(
    r: Reader,
    top: Fields,
    oauth2: OAuth2Config,
    clients: tuple[StaticClient, ...],
    connector_types: dict[str, str],
) -> None:
    """References between sections. Dex only finds these at request time, so they are warnings."""
    name = oauth2.password_connector
    if name:
        node = _node_at(top, "oauth2", "passwordConnector")
        if name not in connector_types:
            r.warning(
                "oauth2.passwordConnector",
                node,
                f'no connector has id "{name}"' + suggest(name, list(connector_types)),
            )
        elif connector_types[name] not in PASSWORD_CONNECTOR_TYPES:
            r.warning(
                "oauth2.passwordConnector",
                node,
                f'connector "{name}" ({connector_types[name]}) does not check passwords; the password grant '
                "will fail",
            )
    for i, client in enumerate(clients):
        for j, allowed in enumerate(client.allowed_connectors):
            if allowed not in connector_types:
                r.warning(
                    f"staticClients[{i}].allowedConnectors[{j}]",
                    _node_at(top, "staticClients", i, "allowedConnectors", j),
                    f'no connector has id "{allowed}"' + suggest(allowed, list(connector_types)),
                )


def _node_at(top: Fields, *steps: str | int) -> yaml.Node | None:
    """The node at a path of mapping keys (matched case-insensitively) and list indexes, for a line.

    Stops at the deepest node found: a line near the problem beats no line.
    """
    node = top.node
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, yaml.SequenceNode) or step >= len(node.value):
                return node
            node = node.value[step]
            continue
        if not isinstance(node, yaml.MappingNode):
            return node
        match = [v for k, v in node.value if str(k.value).lower() == step.lower()]
        if not match:
            return node
        node = match[0]
    return node


def check_config_file(path: str) -> tuple[int, str]:
    """`portico config check FILE`: (exit code, report). 0: no errors, 1: errors, 2: unreadable file.

    Each problem is one line "FILE:LINE: severity: key.path: message", then "N errors, M warnings".
    Opens no listener and touches no database.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        return 2, f"{path}: error: cannot read the file: {_reason(exc)}\n"
    _, problems = parse_config(text, source=path)
    lines = [format_problem(path, p) for p in problems]
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    lines.append(f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}")
    return (1 if errors else 0), "\n".join(lines) + "\n"


def format_problem(source: str, problem: Problem) -> str:
    """One problem as "FILE:LINE: severity: key.path: message" (LINE and key.path left out when unknown)."""
    where = f"{source}:{problem.line}" if problem.line else source
    key = f"{problem.path}: " if problem.path else ""
    return f"{where}: {problem.severity}: {key}{problem.message}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _go_bool(text: str, *, default: bool) -> bool:
    """Go's strconv.ParseBool, falling back to default on "" or garbage (how Dex reads DEX_* flags)."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return default
