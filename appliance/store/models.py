"""The stored objects: frozen dataclasses mirroring Dex's storage entities."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# The expiry of what never expires on its own (a refresh token without lifetime limits).
NEVER = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class Claims:
    """The identity a connector vouched for, as kept with requests and tokens."""

    user_id: str
    username: str = ""
    preferred_username: str = ""
    email: str = ""
    email_verified: bool = False
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class PKCE:
    code_challenge: str = ""
    code_challenge_method: str = ""  # "S256" | "plain" | "" (no PKCE)


@dataclass(frozen=True)
class Client:
    """An OAuth2 client (key: id)."""

    id: str
    secret: str = ""
    redirect_uris: tuple[str, ...] = ()
    trusted_peers: tuple[str, ...] = ()
    public: bool = False
    name: str = ""
    logo_url: str = ""
    allowed_connectors: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str = ""
    client_credentials_groups: tuple[str, ...] = ()
    mfa_chain: tuple[str, ...] | None = None  # authenticator ids; None: mfa.defaultMFAChain


@dataclass(frozen=True)
class Password:
    """A user of the local password database (key: lowercased email)."""

    email: str
    hash: str  # bcrypt hash, "$2b$..."
    username: str = ""
    user_id: str = ""
    groups: tuple[str, ...] = ()
    name: str = ""
    preferred_username: str = ""
    email_verified: bool = True


@dataclass(frozen=True)
class Connector:
    """A connector stored in the database (key: id); `config` is its JSON config."""

    id: str
    type: str
    name: str = ""
    resource_version: str = ""
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthRequest:
    """A login in progress, between /auth and the code (key: id)."""

    id: str
    client_id: str
    response_types: tuple[str, ...]
    scopes: tuple[str, ...]
    redirect_uri: str
    expiry: datetime
    nonce: str = ""
    state: str = ""
    force_approval_prompt: bool = False
    logged_in: bool = False
    claims: Claims | None = None
    connector_id: str = ""
    connector_data: bytes | None = None
    pkce: PKCE = PKCE()
    hmac_key: bytes = b""
    # Browser sessions (SSO): when the user authenticated and the session it belongs to.
    auth_time: datetime | None = None
    session_id: str = ""
    prompt: str = ""  # the prompt parameter as sent ("none", "login consent", ...)
    # Second factors (appliance.mfa): still to pass (logged_in stays False until none is left), passed.
    mfa_pending: tuple[str, ...] = ()
    mfa_done: tuple[str, ...] = ()
    mfa_failures: int = 0  # wrong codes given for this request


@dataclass(frozen=True)
class AuthCode:
    """A single-use authorization code (key: id)."""

    id: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    connector_id: str
    claims: Claims
    expiry: datetime
    nonce: str = ""
    connector_data: bytes | None = None
    pkce: PKCE = PKCE()
    auth_time: datetime | None = None
    session_id: str = ""
    # A redeemed code is kept (until it expires) so that a replay can revoke what it issued.
    redeemed: bool = False
    refresh_token_id: str = ""


@dataclass(frozen=True)
class RefreshToken:
    """A refresh token (key: id); `token` is the current secret, `obsolete_token` the one it replaced."""

    id: str
    token: str
    client_id: str
    connector_id: str
    claims: Claims
    scopes: tuple[str, ...]
    created_at: datetime
    last_used: datetime
    obsolete_token: str = ""
    nonce: str = ""
    connector_data: bytes | None = None
    # When the token stops being usable (lifetime limits at its last write); garbage-collected then.
    expiry: datetime = NEVER
    grant_id: str = ""  # the authorization it descends from; revoking it revokes its access tokens
    auth_time: datetime | None = None
    session_id: str = ""


@dataclass(frozen=True)
class OfflineSession:
    """A user's offline access through one connector (key: offline_session_key(user_id, conn_id)): the
    connector's state that refreshing the identity upstream starts from. Its refresh tokens are the
    stored tokens of that user and connector (the refresh_tokens table indexes them by session, client
    and last use), one per device. Dex keeps a list of them on this object; rows written that way still
    load, the list ignored (migration 6 moved it out)."""

    user_id: str
    conn_id: str
    connector_data: bytes | None = None


def offline_session_key(user_id: str, conn_id: str) -> str:
    return f"{user_id}\x1f{conn_id}"


@dataclass(frozen=True)
class VerificationKey:
    public_key: dict[str, Any]  # a public JWK with "kid"
    expiry: datetime


@dataclass(frozen=True)
class Keys:
    """The signing key set (a singleton). Private JWKs are stored as dicts."""

    signing_key: dict[str, Any] | None = None
    signing_key_pub: dict[str, Any] | None = None
    verification_keys: tuple[VerificationKey, ...] = ()
    next_rotation: datetime | None = None


@dataclass(frozen=True)
class DeviceRequest:
    """A device authorization request (key: user_code)."""

    user_code: str
    device_code: str
    client_id: str
    scopes: tuple[str, ...]
    expiry: datetime
    client_secret: str = ""


@dataclass(frozen=True)
class DeviceToken:
    """The polling state of a device code (key: device_code)."""

    device_code: str
    status: str  # "pending" | "complete" | "denied"
    expiry: datetime
    last_request_time: datetime
    poll_interval: int
    token: str = ""  # the JSON token response once complete
    pkce: PKCE = PKCE()
    client_id: str = ""


@dataclass(frozen=True)
class BrowserSession:
    """A browser's single sign-on session (key: id). The cookie holds the id and a secret of which only
    a digest is stored."""

    id: str
    secret_hash: str
    connector_id: str
    claims: Claims
    auth_time: datetime
    expiry: datetime
    last_active: datetime
    clients: tuple[str, ...] = ()  # clients that got tokens in this session (notified on logout)
    connector_data: bytes | None = None
    mfa: tuple[str, ...] = ()  # the authenticators passed at this login (a client may require them)
    # A logout sent to the upstream's end_session_endpoint, finished at /logout/callback: where the
    # browser goes then (post_logout_redirect_uri with state, or "" for Portico's page). None: none.
    logout_redirect: str | None = None


@dataclass(frozen=True)
class Consent:
    """The scopes a user granted a client (key: consent_key(user_id, connector_id, client_id))."""

    user_id: str
    connector_id: str
    client_id: str
    scopes: tuple[str, ...]
    created_at: datetime


def consent_key(user_id: str, connector_id: str, client_id: str) -> str:
    return f"{user_id}\x1f{connector_id}\x1f{client_id}"


@dataclass(frozen=True)
class TOTPSecret:
    """One TOTP authenticator of a user (RFC 6238). The secret must stay readable to check codes;
    recovery codes are kept as SHA-256 digests only."""

    secret: str = field(repr=False)  # base32
    created_at: datetime
    confirmed: bool = False  # False until the first code is typed back at enrolment
    last_step: int = 0  # the newest accepted time step: a code for it or an older one is refused
    recovery: tuple[str, ...] = field(default=(), repr=False)  # digests of the unused recovery codes
    failures: int = 0  # wrong codes in a row
    blocked_until: datetime | None = None


@dataclass(frozen=True)
class UserMFA:
    """A user's second factors (key: mfa_key(user_id, connector_id))."""

    user_id: str
    connector_id: str
    totp: dict[str, TOTPSecret] = field(default_factory=dict)  # by authenticator id
    email: str = ""  # as the connector gave it when the user enrolled, for the administrator


def mfa_key(user_id: str, connector_id: str) -> str:
    return f"{user_id}\x1f{connector_id}"


@dataclass(frozen=True)
class RevokedToken:
    """A revoked access token (key: its jti) or grant (key: the grant id), kept until what it covers
    has expired."""

    id: str
    expiry: datetime


@dataclass(frozen=True)
class AuditEvent:
    """One admin API call (key: id, which sorts by time): who called, what changed, how it ended.
    Never holds a secret (client secrets and passwords are written as "set")."""

    id: str
    time: datetime
    uid: int
    pid: int
    gid: int = -1
    action: str = ""  # "clients.create", "keys.rotate", ...
    target: str = ""  # the object's id
    details: dict[str, Any] = field(default_factory=dict)
    result: str = ""  # "ok" | "denied" | "error: <message>"


@dataclass(frozen=True)
class LoginThrottle:
    """Failed password logins of one account (connector + username) or one client address (key: id,
    see appliance.security.throttle). Expires when its window and any lockout are over."""

    id: str
    kind: str  # "account" | "ip"
    expiry: datetime
    connector_id: str = ""  # accounts only
    subject: str = ""  # the username as counted (normalised), or the client address (or /64 network)
    failures: int = 0  # attempts counted in the window (in flight or failed)
    window_start: datetime | None = None
    last_attempt: datetime | None = None
    locked_until: datetime | None = None
    lockouts: int = 0  # lockouts this record has started
