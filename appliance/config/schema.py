"""The validated configuration model: what the loader produces from a Dex-style config.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class StorageConfig:
    type: str = "sqlite3"  # memory | sqlite3 | postgres | mysql (etcd, kubernetes: not supported)
    # after $VAR expansion; keys as Dex spells them. Kept out of repr: it may hold a database password.
    config: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ClientRemoteIP:
    header: str = ""
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebConfig:
    http: str = ""  # "host:port"
    https: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_min_version: str = ""
    tls_max_version: str = ""
    allowed_origins: tuple[str, ...] = ()
    allowed_headers: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    client_remote_ip: ClientRemoteIP = ClientRemoteIP()
    server: str = "granian"  # Portico's own: the ASGI server, "granian" or "hypercorn" (restart to change)


@dataclass(frozen=True)
class TelemetryConfig:
    http: str = ""
    enable_profiling: bool = False


@dataclass(frozen=True)
class RefreshTokenExpiry:
    disable_rotation: bool = False
    reuse_interval: timedelta = timedelta(0)
    valid_if_not_used_for: timedelta = timedelta(0)  # 0: never
    absolute_lifetime: timedelta = timedelta(0)  # 0: never


@dataclass(frozen=True)
class ExpiryConfig:
    signing_keys: timedelta = timedelta(hours=6)
    id_tokens: timedelta = timedelta(hours=24)
    auth_requests: timedelta = timedelta(hours=24)
    device_requests: timedelta = timedelta(minutes=5)
    refresh_tokens: RefreshTokenExpiry = RefreshTokenExpiry()


@dataclass(frozen=True)
class LoggerConfig:
    level: str = "info"  # debug | info | warn | error
    format: str = "text"  # text | json


@dataclass(frozen=True)
class FrontendConfig:
    dir: str = ""
    theme: str = "light"  # light | dark
    issuer: str = "Portico"  # the name shown on pages
    logo_url: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SignerConfig:
    type: str = "local"
    keys_rotation_period: timedelta = timedelta(hours=6)
    algorithm: str = "RS256"  # RS256 | ES256


@dataclass(frozen=True)
class PKCEConfig:
    enforce: bool = False
    code_challenge_methods_supported: tuple[str, ...] = ("S256", "plain")


@dataclass(frozen=True)
class IntrospectionConfig:
    """oauth2.introspection (Portico's own): who may call /token/introspect."""

    # Dex answers anybody; Portico wants an authenticated confidential client unless this is set.
    allow_unauthenticated: bool = False


@dataclass(frozen=True)
class OAuth2Config:
    grant_types: tuple[str, ...] = (
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    )
    response_types: tuple[str, ...] = ("code",)
    skip_approval_screen: bool = False
    always_show_login_screen: bool = False
    password_connector: str = ""
    pkce: PKCEConfig = PKCEConfig()
    introspection: IntrospectionConfig = IntrospectionConfig()


@dataclass(frozen=True)
class StaticClient:
    id: str
    secret: str = field(default="", repr=False)
    redirect_uris: tuple[str, ...] = ()
    trusted_peers: tuple[str, ...] = ()
    public: bool = False
    name: str = ""
    logo_url: str = ""
    allowed_connectors: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str = ""
    client_credentials_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class StaticPassword:
    email: str
    hash: str = field(repr=False)  # the bcrypt hash, decoded from base64 when given that way
    username: str = ""
    user_id: str = ""
    groups: tuple[str, ...] = ()
    name: str = ""
    preferred_username: str = ""
    email_verified: bool = True


@dataclass(frozen=True)
class ConnectorConfig:
    type: str
    id: str
    name: str
    # after $VAR expansion, keys as written. Kept out of repr: it holds client secrets and bind passwords.
    config: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Config:
    issuer: str
    storage: StorageConfig = StorageConfig()
    web: WebConfig = WebConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    expiry: ExpiryConfig = ExpiryConfig()
    logger: LoggerConfig = LoggerConfig()
    frontend: FrontendConfig = FrontendConfig()
    signer: SignerConfig = SignerConfig()
    oauth2: OAuth2Config = OAuth2Config()
    static_clients: tuple[StaticClient, ...] = ()
    connectors: tuple[ConnectorConfig, ...] = ()
    enable_password_db: bool = False
    static_passwords: tuple[StaticPassword, ...] = ()
    source_path: str = ""  # the file it came from, "" for the embedded default


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where it is and what is wrong."""

    severity: str  # "error" | "warning"
    path: str  # key path, e.g. "staticClients[0].redirectURIs[1]"
    line: int  # 1-based line in the file, 0 when unknown
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{self.severity}: {where}{self.path}: {self.message}"
