"""Refresh-token persistence: hashed secrets at rest, rotation, the offline-session references."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import replace
from datetime import datetime

from appliance.config.schema import RefreshTokenExpiry
from appliance.errors import AlreadyExists, NotFound
from appliance.ids import new_id, new_secret
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.tokens import encode_refresh_token
from appliance.store.models import (
    NEVER,
    Claims,
    OfflineSession,
    RefreshToken,
    RefreshTokenRef,
    offline_session_key,
)

log = logging.getLogger("portico.oidc.refresh")

# Stored form of a refresh secret: "h1$<salt>$<base64url sha256(secret)>". Only the digest is kept, so a
# copy of the database hands out no usable token. A rotated secret is HMAC(previous secret, salt): a
# client that retries with the previous token inside the reuse interval can be handed the current one
# again (Dex's reuse semantics) although the current secret itself is never stored.
_SCHEME = "h1"
_ROTATION_LABEL = b"portico refresh rotation\x00"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _digest(secret: str) -> str:
    return _b64(hashlib.sha256(secret.encode()).digest())


def stored_form(secret: str, salt: str = "") -> str:
    return f"{_SCHEME}${salt}${_digest(secret)}"


def _parse(stored: str) -> tuple[str, str] | None:
    scheme, _, rest = stored.partition("$")
    salt, sep, digest = rest.partition("$")
    if scheme != _SCHEME or not sep or not digest:
        return None
    return salt, digest


def secret_matches(stored: str, presented: str) -> bool:
    """Does `presented` hash to the stored form? Constant time; an empty or unknown form never matches."""
    parsed = _parse(stored)
    if parsed is None or not presented:
        return False
    return hmac.compare_digest(parsed[1].encode(), _digest(presented).encode())


def _derive(previous: str, salt: str) -> str:
    return _b64(hmac.new(previous.encode(), _ROTATION_LABEL + salt.encode(), hashlib.sha256).digest())


def rotated_secret(previous: str) -> tuple[str, str]:
    """(new secret, its stored form) for a rotation away from `previous`."""
    salt = new_secret(16)
    secret = _derive(previous, salt)
    return secret, stored_form(secret, salt)


def current_from_obsolete(token: RefreshToken, presented: str) -> str | None:
    """The current secret, when `presented` is the one it replaced; else None."""
    if not secret_matches(token.obsolete_token, presented):
        return None
    parsed = _parse(token.token)
    if parsed is None or not parsed[0]:
        return None
    candidate = _derive(presented, parsed[0])
    return candidate if secret_matches(token.token, candidate) else None


# Tokens one user may hold for one client through one connector (one per device); past this the
# least recently used goes, so a client that logs in in a loop cannot grow the table without bound.
MAX_TOKENS_PER_CLIENT = 32


def refresh_expiry(policy: RefreshTokenExpiry, created_at: datetime, last_used: datetime) -> datetime:
    """When a token stops being usable under `policy` (NEVER without limits): what GC deletes by."""
    limits: list[datetime] = []
    if policy.absolute_lifetime:
        limits.append(created_at + policy.absolute_lifetime)
    if policy.valid_if_not_used_for:
        limits.append(last_used + policy.valid_if_not_used_for)
    return min(limits) if limits else NEVER


async def create_refresh_token(
    deps: Deps,
    *,
    client_id: str,
    connector_id: str,
    claims: Claims,
    scopes: tuple[str, ...],
    nonce: str,
    connector_data: bytes | None,
    grant_id: str = "",
    auth_time: datetime | None = None,
    session_id: str = "",
    snap: Snapshot | None = None,
    token_id: str = "",
) -> str:
    """Store a new refresh token and return its wire form. Unlike Dex, a user keeps one token per
    device: earlier tokens of the same client stay valid (up to MAX_TOKENS_PER_CLIENT). Connector
    data lives on the offline session. `token_id`: the id to store it under, when the caller chose
    it beforehand (a new one otherwise)."""
    now = deps.clock.now()
    policy = (snap or deps.snapshot).config.expiry.refresh_tokens
    secret = new_secret()
    token = RefreshToken(
        id=token_id or new_id(), token=stored_form(secret), client_id=client_id, connector_id=connector_id,
        claims=claims, scopes=scopes, created_at=now, last_used=now, nonce=nonce,
        expiry=refresh_expiry(policy, now, now), grant_id=grant_id, auth_time=auth_time,
        session_id=session_id,
    )
    await deps.storage.refresh_tokens.create(token)
    try:
        await _link(deps, token, connector_data, policy, now)
    except BaseException:
        # Never leave a token that no offline session knows of.
        try:
            await deps.storage.refresh_tokens.delete(token.id)
        except NotFound:
            pass
        raise
    return encode_refresh_token(token.id, secret)


def _live_refs(session: OfflineSession, client_id: str, policy: RefreshTokenExpiry,
               now: datetime) -> list[RefreshTokenRef]:
    """The client's references whose token is still usable, least recently used first. Garbage
    collection deletes tokens only, by the expiry `refresh_expiry` gives; a reference carries the same
    created_at and last_used as its token, so it tells without reading the token (one read per device
    was most of a code exchange's database work once a user had many)."""
    live = [ref for ref in session.refresh.values()
            if ref.client_id == client_id and refresh_expiry(policy, ref.created_at, ref.last_used) > now]
    return sorted(live, key=lambda item: item.last_used)


async def _link(deps: Deps, token: RefreshToken, connector_data: bytes | None, policy: RefreshTokenExpiry,
                now: datetime) -> None:
    ref = RefreshTokenRef(token.id, token.client_id, token.created_at, token.last_used)
    user_id, conn_id = token.claims.user_id, token.connector_id
    try:
        await deps.storage.offline_sessions.create(
            OfflineSession(user_id, conn_id, {token.id: ref}, connector_data)
        )
        return
    except AlreadyExists:
        pass
    key = offline_session_key(user_id, conn_id)
    evicted: list[str] = []

    def add(old: OfflineSession) -> OfflineSession:
        # Other clients' entries stay; this client's are the live ones, but for the least recently used
        # past MAX_TOKENS_PER_CLIENT, plus the new token.
        live = _live_refs(old, token.client_id, policy, now)
        evicted[:] = [item.id for item in live[: max(0, len(live) - MAX_TOKENS_PER_CLIENT + 1)]]
        keep_ids = {item.id for item in live} - set(evicted)
        refresh = {
            k: v for k, v in old.refresh.items() if v.client_id != token.client_id or v.id in keep_ids
        }
        refresh[token.id] = ref
        return replace(old, refresh=refresh, connector_data=connector_data or old.connector_data)

    await deps.storage.offline_sessions.update(key, add)
    for old_id in evicted:
        try:
            await deps.storage.refresh_tokens.delete(old_id)
        except NotFound:
            pass


async def touch_offline_session(
    deps: Deps, token: RefreshToken, last_used: datetime, connector_data: bytes | None
) -> None:
    """Record a use of `token` on its offline session (best effort: the token is authoritative)."""

    def touch(old: OfflineSession) -> OfflineSession:
        refresh = {
            k: replace(v, last_used=last_used) if v.id == token.id else v for k, v in old.refresh.items()
        }
        return replace(old, refresh=refresh, connector_data=connector_data or old.connector_data)

    try:
        await deps.storage.offline_sessions.update(
            offline_session_key(token.claims.user_id, token.connector_id), touch
        )
    except NotFound:
        log.warning("refresh token %s has no offline session", token.id)


async def offline_connector_data(deps: Deps, token: RefreshToken) -> bytes | None:
    if token.connector_data:
        return token.connector_data
    try:
        session = await deps.storage.offline_sessions.get(
            offline_session_key(token.claims.user_id, token.connector_id)
        )
    except NotFound:
        return None
    return session.connector_data


async def revoke_refresh_token(deps: Deps, token: RefreshToken) -> None:
    """Delete a token and its offline-session reference; the offline session ends with its last token."""
    key = offline_session_key(token.claims.user_id, token.connector_id)

    def unlink(old: OfflineSession) -> OfflineSession:
        refresh = {cid: ref for cid, ref in old.refresh.items() if ref.id != token.id}
        return replace(old, refresh=refresh)

    try:
        session = await deps.storage.offline_sessions.update(key, unlink)
        if not session.refresh:
            await deps.storage.offline_sessions.delete(key)
    except NotFound:
        pass
    try:
        await deps.storage.refresh_tokens.delete(token.id)
    except NotFound:
        pass


async def list_refresh_tokens(deps: Deps, user_id: str = "", client_id: str = "") -> list[RefreshToken]:
    """The stored refresh tokens (secrets are only digests), optionally of one user and/or client,
    most recently used first: what an administrator lists to revoke one device."""
    tokens = [
        token for token in await deps.storage.refresh_tokens.list()
        if (not user_id or token.claims.user_id == user_id)
        and (not client_id or token.client_id == client_id)
    ]
    return sorted(tokens, key=lambda token: token.last_used, reverse=True)


async def revoke_refresh_token_by_id(deps: Deps, token_id: str) -> bool:
    """Revoke one refresh token (one device) by its id; False when there is none."""
    try:
        token = await deps.storage.refresh_tokens.get(token_id)
    except NotFound:
        return False
    await revoke_refresh_token(deps, token)
    return True
