"""The stored objects: frozen dataclasses mirroring Dex's storage entities."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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


@dataclass(frozen=True)
class RefreshTokenRef:
    id: str
    client_id: str
    created_at: datetime
    last_used: datetime


@dataclass(frozen=True)
class OfflineSession:
    """A user's offline sessions for one connector (key: offline_session_key(user_id, conn_id))."""

    user_id: str
    conn_id: str
    refresh: dict[str, RefreshTokenRef] = field(default_factory=dict)  # by client id
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
