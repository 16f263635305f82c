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
    # mfaChain (Dex main): authenticator ids to pass after login; None: mfa.defaultMFAChain, (): none.
    mfa_chain: tuple[str, ...] | None = None


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
class MFAAuthenticator:
    """mfa.authenticators[] (Dex main's shape); only type TOTP runs in Portico."""

    id: str
    type: str = "TOTP"
    issuer: str = ""  # config.issuer: the name the authenticator app shows ("" = frontend.issuer)
    connector_types: tuple[str, ...] = ()  # connectorTypes: limit to these connector types; () = all
    enrollment: str = "required"  # config.enrollment (Portico's own): "required" | "optional"


@dataclass(frozen=True)
class MFAConfig:
    """mfa: the second factors (see appliance.mfa and docs/security.md)."""

    authenticators: tuple[MFAAuthenticator, ...] = ()
    default_chain: tuple[str, ...] = ()  # defaultMFAChain: for clients without their own mfaChain
    # Portico's own: let the password grant skip the second factor (it cannot carry one).
    allow_password_grant: bool = False


@dataclass(frozen=True)
class ThrottleLimit:
    """security.bruteForce.account / .clientIP: failures allowed within the window, then a lockout."""

    max_failures: int
    lockout_duration: timedelta


@dataclass(frozen=True)
class BruteForceConfig:
    """security.bruteForce (Portico's own): failed password logins counted per account and client IP."""

    enabled: bool = True
    window: timedelta = timedelta(minutes=15)  # failures are counted from the first one for this long
    account: ThrottleLimit = ThrottleLimit(10, timedelta(minutes=15))
    client_ip: ThrottleLimit = ThrottleLimit(100, timedelta(minutes=15))
    delay_initial: timedelta = timedelta(milliseconds=500)  # the answer to the 1st failure, doubling
    delay_max: timedelta = timedelta(seconds=8)


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `per_minute` requests a minute on average, `burst` at once (0 per_minute: none)."""

    per_minute: int
    burst: int


@dataclass(frozen=True)
class RateLimitsConfig:
    """security.rateLimits (Portico's own): token buckets in each process's memory."""

    enabled: bool = True
    token_per_ip: RateLimit = RateLimit(6000, 500)
    token_per_client: RateLimit = RateLimit(12000, 1000)
    device_code_per_ip: RateLimit = RateLimit(60, 20)
    login_per_ip: RateLimit = RateLimit(300, 50)


@dataclass(frozen=True)
class SecurityConfig:
    """security (Portico's own): brute-force protection and rate limits (see docs/security.md)."""

    brute_force: BruteForceConfig = BruteForceConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()


@dataclass(frozen=True)
class AdminConfig:
    """admin (Portico's own): where the admin API listens, and how long its audit log is kept."""

    socket: str = ""  # "": $RUNTIME_DIRECTORY/admin.sock (see appliance.admin.client); restart to change
    audit_retention_days: int = 90  # audit events older than this are deleted; 0 keeps them forever


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
    mfa: MFAConfig = MFAConfig()
    security: SecurityConfig = SecurityConfig()
    admin: AdminConfig = AdminConfig()
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
