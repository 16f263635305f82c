"""Sample objects of every stored kind, with every field set away from its default."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from appliance.store import models as m
from appliance.store.base import Collection, Storage

T0 = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
# Awkward but valid text: NUL, the unit separator of offline-session keys, non-ASCII, an emoji.
ODD = 'a\x00b\x1fc é ✓ 🦊 "quoted" \\ back'


def claims(n: int = 1) -> m.Claims:
    return m.Claims(
        user_id=f"user-{n}",
        username=f"User {n} {ODD}",
        preferred_username=f"user{n}",
        email=f"user{n}@example.com",
        email_verified=True,
        groups=("admins", f"group-{n}", ODD),
    )


PKCE = m.PKCE(code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method="S256")


def client(n: int) -> m.Client:
    return m.Client(
        id=f"client-{n}",
        secret=f"secret-{n}",
        redirect_uris=(f"https://app{n}.example.com/cb", "http://127.0.0.1:8000/cb"),
        trusted_peers=("peer-a", "peer-b"),
        public=True,
        name=f"App {n} {ODD}",
        logo_url="https://example.com/logo.png",
        allowed_connectors=("ldap", "local"),
        post_logout_redirect_uris=("https://app.example.com/bye",),
        backchannel_logout_uri="https://app.example.com/bcl",
        client_credentials_groups=("machines",),
    )


def password(n: int) -> m.Password:
    return m.Password(
        email=f"User{n}@Example.COM",
        hash="$2b$10$" + "x" * 53,
        username=f"user{n}",
        user_id=f"uid-{n}",
        groups=("g1", "g2"),
        name=f"User {n}",
        preferred_username=f"u{n}",
        email_verified=False,
    )


def connector(n: int) -> m.Connector:
    return m.Connector(
        id=f"conn-{n}",
        type="ldap",
        name=f"LDAP {n}",
        resource_version="7",
        config={"host": "ldap.example.com:636", "nested": {"list": [1, 2.5, None, True, "x"]}, "odd": ODD},
    )


def auth_request(n: int, expiry: datetime = T0) -> m.AuthRequest:
    return m.AuthRequest(
        id=f"areq-{n}",
        client_id="client-1",
        response_types=("code", "id_token"),
        scopes=("openid", "email", "offline_access"),
        redirect_uri="https://app.example.com/cb",
        expiry=expiry,
        nonce="nonce-1",
        state="state-1",
        force_approval_prompt=True,
        logged_in=True,
        claims=claims(n),
        connector_id="ldap",
        connector_data=bytes(range(256)),
        pkce=PKCE,
        hmac_key=b"\x00\xff" * 16,
    )


def auth_code(n: int, expiry: datetime = T0) -> m.AuthCode:
    return m.AuthCode(
        id=f"code-{n}",
        client_id="client-1",
        redirect_uri="https://app.example.com/cb",
        scopes=("openid", "groups"),
        connector_id="ldap",
        claims=claims(n),
        expiry=expiry,
        nonce="n",
        connector_data=b'{"refresh":"x"}',
        pkce=m.PKCE("plainchallenge", "plain"),
    )


def refresh_token(n: int) -> m.RefreshToken:
    return m.RefreshToken(
        id=f"rt-{n}",
        token=f"token-{n}",
        client_id="client-1",
        connector_id="ldap",
        claims=claims(n),
        scopes=("openid", "offline_access"),
        created_at=T0,
        # Another zone: stored as UTC, equal as an instant.
        last_used=datetime(2026, 3, 4, 7, 6, 7, 1, tzinfo=timezone(timedelta(hours=2))),
        obsolete_token="old-token",
        nonce="nonce",
        connector_data=b"",
    )


def offline_session(n: int) -> m.OfflineSession:
    return m.OfflineSession(
        user_id=f"user-{n}",
        conn_id="ldap",
        connector_data=b"\x01\x02",
    )


def device_request(n: int, expiry: datetime = T0) -> m.DeviceRequest:
    return m.DeviceRequest(
        user_code=f"BCDF-GH{n:02d}",
        device_code=f"dev-{n}",
        client_id="client-1",
        scopes=("openid",),
        expiry=expiry,
        client_secret="s3cret",
    )


def device_token(n: int, expiry: datetime = T0) -> m.DeviceToken:
    return m.DeviceToken(
        device_code=f"dev-{n}",
        status="complete",
        expiry=expiry,
        last_request_time=T0 - timedelta(seconds=5),
        poll_interval=5,
        token='{"access_token":"x"}',
        pkce=PKCE,
    )


def keys() -> m.Keys:
    return m.Keys(
        signing_key={"kty": "RSA", "kid": "k2", "d": "private", "n": "abc", "e": "AQAB"},
        signing_key_pub={"kty": "RSA", "kid": "k2", "n": "abc", "e": "AQAB"},
        verification_keys=(
            m.VerificationKey({"kty": "RSA", "kid": "k1", "n": "old", "e": "AQAB"}, T0 + timedelta(hours=6)),
        ),
        next_rotation=T0 + timedelta(hours=6),
    )


@dataclass(frozen=True)
class Kind:
    """How the suite drives one collection: where it lives, its samples, its key, a change to it."""

    attr: str
    make: Callable[[int], Any]
    key: Callable[[Any], str]
    change: Callable[[Any], Any]  # a visible change that keeps the key

    def collection(self, storage: Storage) -> Collection[Any]:
        coll: Collection[Any] = getattr(storage, self.attr)
        return coll


def _replace(**changes: Any) -> Callable[[Any], Any]:
    return lambda obj: dataclasses.replace(obj, **changes)


KINDS = [
    Kind("clients", client, lambda o: o.id, _replace(name="renamed", redirect_uris=())),
    Kind("passwords", password, lambda o: o.email.lower(), _replace(hash="$2b$12$" + "y" * 53)),
    Kind("connectors", connector, lambda o: o.id, _replace(config={"changed": [1]}, resource_version="8")),
    Kind("auth_requests", auth_request, lambda o: o.id, _replace(logged_in=False, claims=None)),
    Kind("auth_codes", auth_code, lambda o: o.id, _replace(connector_data=None)),
    Kind(
        "refresh_tokens", refresh_token, lambda o: o.id, _replace(token="rotated", obsolete_token="token-1")
    ),
    Kind(
        "offline_sessions",
        offline_session,
        lambda o: m.offline_session_key(o.user_id, o.conn_id),
        _replace(connector_data=b"renewed"),
    ),
    Kind("device_requests", device_request, lambda o: o.user_code, _replace(scopes=("openid", "groups"))),
    Kind("device_tokens", device_token, lambda o: o.device_code, _replace(status="denied", poll_interval=10)),
]
KIND_IDS = [k.attr for k in KINDS]
