"""Refresh-token persistence: hashed secrets at rest, rotation, the offline-session references."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from appliance.config.schema import RefreshTokenExpiry
from appliance.errors import AlreadyExists, NotFound
from appliance.ids import new_id, new_secret
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.tokens import encode_refresh_token
from appliance.store.base import Steps, Storage, Versioned
from appliance.store.models import NEVER, Claims, OfflineSession, RefreshToken, offline_session_key

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


def new_refresh_token(
    deps: Deps,
    *,
    client_id: str,
    connector_id: str,
    claims: Claims,
    scopes: tuple[str, ...],
    nonce: str,
    grant_id: str = "",
    auth_time: datetime | None = None,
    session_id: str = "",
    snap: Snapshot | None = None,
) -> tuple[RefreshToken, str]:
    """A new refresh token, not stored yet (create_steps stores it), and its wire form."""
    now = deps.clock.now()
    secret = new_secret()
    token = RefreshToken(
        id=new_id(), token=stored_form(secret), client_id=client_id, connector_id=connector_id,
        claims=claims, scopes=scopes, created_at=now, last_used=now, nonce=nonce,
        expiry=refresh_expiry(_policy(deps, snap), now, now), grant_id=grant_id, auth_time=auth_time,
        session_id=session_id,
    )
    return token, encode_refresh_token(token.id, secret)


def _policy(deps: Deps, snap: Snapshot | None) -> RefreshTokenExpiry:
    return (snap or deps.snapshot).config.expiry.refresh_tokens


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
) -> str:
    """Store a new refresh token and return its wire form. Unlike Dex, a user keeps one token per
    device: earlier tokens of the same client stay valid (up to MAX_TOKENS_PER_CLIENT). Connector
    data lives on the offline session."""
    token, wire = new_refresh_token(
        deps, client_id=client_id, connector_id=connector_id, claims=claims, scopes=scopes, nonce=nonce,
        grant_id=grant_id, auth_time=auth_time, session_id=session_id, snap=snap,
    )
    # One transaction: never a token without its offline session.
    await deps.storage.run(create_steps(deps.storage, token, connector_data), write=True)
    return wire


def _session_key(token: RefreshToken) -> str:
    return offline_session_key(token.claims.user_id, token.connector_id)


def create_steps(storage: Storage, token: RefreshToken, connector_data: bytes | None) -> Steps[None]:
    """Store the new `token` under its offline session (made when missing, its connector data renewed
    when `connector_data` is given), and evict the client's least recently used tokens past
    MAX_TOKENS_PER_CLIENT (for a write run)."""
    key = _session_key(token)
    # The session first, locked, in every transaction here (see advance_steps and revoke_steps): two
    # never wait for each other's row locks (PostgreSQL), and one user's tokens change one at a time.
    found = yield from _locked_session(storage, token, connector_data)
    if found is not None and connector_data and connector_data != found.value.connector_data:
        yield from storage.offline_sessions.steps.update(key, _renew(connector_data), known=found)
    yield from storage.refresh_tokens.steps.create(token)
    # The new token itself is spared: it may share its last use with others to the microsecond.
    yield from storage.refresh_tokens.steps.evict(
        key, token.client_id, keep=MAX_TOKENS_PER_CLIENT, now=token.created_at, spare=token.id
    )


def _locked_session(storage: Storage, token: RefreshToken,
                    connector_data: bytes | None) -> Steps[Versioned[OfflineSession] | None]:
    """The token's offline session, locked; None when this run has just made it."""
    sessions = storage.offline_sessions.steps
    key = _session_key(token)
    found = yield from sessions.find(key, lock=True)
    if found is not None:
        return found
    try:
        yield from sessions.create(OfflineSession(token.claims.user_id, token.connector_id, connector_data))
        return None
    except AlreadyExists:  # another replica made it since the read (PostgreSQL): use theirs
        return (yield from sessions.find(key, lock=True))


def _renew(connector_data: bytes) -> Callable[[OfflineSession], OfflineSession]:
    def renew(old: OfflineSession) -> OfflineSession:
        return replace(old, connector_data=connector_data)

    return renew


async def renew_connector_data(deps: Deps, token: RefreshToken, connector_data: bytes) -> None:
    """Keep the upstream state `token` refreshes from on its offline session (best effort)."""
    try:
        await deps.storage.offline_sessions.update(_session_key(token), _renew(connector_data))
    except NotFound:
        log.warning("refresh token %s has no offline session", token.id)


@dataclass(frozen=True)
class RefreshRead:
    """What a use of a refresh token starts from, read in one trip: the token, whether its grant was
    revoked, and (when asked for) its offline session."""

    token: Versioned[RefreshToken]
    grant_revoked: bool
    session: Versioned[OfflineSession] | None = None

    def connector_data(self) -> bytes | None:
        """The upstream state to refresh from: on the session (older tokens carry their own)."""
        if self.token.value.connector_data:
            return self.token.value.connector_data
        return self.session.value.connector_data if self.session is not None else None


def read_steps(storage: Storage, token_id: str, *, with_session: bool) -> Steps[RefreshRead | None]:
    """The token `token_id` and what goes with it; None when there is no such token."""
    found = yield from storage.refresh_tokens.steps.find(token_id)
    if found is None:
        return None
    token = found.value
    revoked = yield from storage.revoked_tokens.steps.present((token.grant_id,) if token.grant_id else ())
    session = (yield from storage.offline_sessions.steps.find(_session_key(token))) if with_session else None
    return RefreshRead(found, bool(revoked), session)


def advance_steps(storage: Storage, read: RefreshRead, advance: Callable[[RefreshToken], RefreshToken],
                  connector_data: bytes | None) -> Steps[RefreshToken]:
    """Record a use of the token `read` found: `advance` it (compare-and-swap against the version read;
    an exception from `advance` rolls the run back; its last use is the indexed column eviction goes by)
    and, when the upstream state changed, renew `connector_data` on its offline session. For a write
    run."""
    token = read.token.value
    if connector_data:
        try:  # the session first, as in create_steps
            yield from storage.offline_sessions.steps.update(
                _session_key(token), _renew(connector_data), known=read.session
            )
        except NotFound:
            log.warning("refresh token %s has no offline session", token.id)
    return (yield from storage.refresh_tokens.steps.update(token.id, advance, known=read.token))


def revoke_steps(storage: Storage, token: RefreshToken) -> Steps[None]:
    """Delete a token; its offline session ends with its last token."""
    key = _session_key(token)
    sessions = storage.offline_sessions.steps
    session = yield from sessions.find(key, lock=True)  # the session first, as in create_steps
    try:
        yield from storage.refresh_tokens.steps.delete(token.id)
    except NotFound:
        pass
    if session is not None and not (yield from storage.refresh_tokens.steps.held(key)):
        yield from sessions.delete(key)


async def revoke_refresh_token(deps: Deps, token: RefreshToken) -> None:
    """Delete a token and its offline-session reference, in one transaction (revoke_steps)."""
    await deps.storage.run(revoke_steps(deps.storage, token), write=True)


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
