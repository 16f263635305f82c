"""The refresh_token grant (RFC 6749 6): rotation, the reuse interval, lifetimes, fresh claims."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import cast

from appliance.connectors.base import GrantRevokedError, Identity, RefreshConnector, Scopes, UserRefusedError
from appliance.errors import ConnectorError, NotFound, OAuthError
from appliance.oidc import scopes as sc
from appliance.oidc.authorize import connector_allowed
from appliance.oidc.deps import OpenConnector
from appliance.oidc.discovery import GRANT_REFRESH_TOKEN
from appliance.oidc.grant import TokenContext
from appliance.oidc.issue import mint, token_response
from appliance.oidc.login import claims_of, upstream
from appliance.oidc.refreshstore import (
    RefreshRead,
    advance_steps,
    current_from_obsolete,
    read_steps,
    refresh_expiry,
    renew_connector_data,
    revoke_refresh_token,
    rotated_secret,
    secret_matches,
)
from appliance.oidc.revocation import revoke_grant
from appliance.oidc.tokens import decode_refresh_token, encode_refresh_token
from appliance.store.base import Steps
from appliance.store.models import Claims, RefreshToken

log = logging.getLogger("portico.oidc.refresh")

_INVALID = "Refresh token is invalid or has already been claimed by another client."


class _Claimed(Exception):
    """The stored token moved on between our read and our write: someone else used this secret."""


def _expired(token: RefreshToken, ctx: TokenContext, now: datetime) -> bool:
    policy = ctx.snap.config.expiry.refresh_tokens
    if policy.absolute_lifetime and now > token.created_at + policy.absolute_lifetime:
        return True
    return bool(policy.valid_if_not_used_for and now > token.last_used + policy.valid_if_not_used_for)


def _scopes(ctx: TokenContext, token: RefreshToken) -> tuple[str, ...]:
    # RFC 6749 6: the client may narrow the original scopes, never widen them.
    requested = sc.split_scopes(ctx.get("scope"))
    if not requested:
        return token.scopes
    extra = [scope for scope in requested if scope not in token.scopes]
    if extra:
        raise OAuthError("invalid_scope", f"Requested scopes contain unauthorized scope(s): {extra}.")
    return requested


def _identity(claims: Claims, connector_data: bytes | None) -> Identity:
    return Identity(
        user_id=claims.user_id, username=claims.username, preferred_username=claims.preferred_username,
        email=claims.email, email_verified=claims.email_verified, groups=claims.groups,
        connector_data=connector_data,
    )


class _Revoke(Exception):
    """A use found, inside its trip, that the token must go: the trip rolls back, then this is done."""

    def __init__(self, token: RefreshToken, *, family: bool) -> None:
        super().__init__("refresh token to revoke")
        self.token = token
        self.family = family  # a replay: the access tokens of its grant go too


@dataclass(frozen=True)
class _Use:
    """What the checks of the token as read decided."""

    read: RefreshRead
    scopes: tuple[str, ...]
    conn: OpenConnector
    handed_secret: str  # what the client gets back if nothing rotates (the reuse interval)
    in_reuse_window: bool


@dataclass(frozen=True)
class _Done:
    token: RefreshToken
    claims: Claims
    handed_secret: str


def _checked(ctx: TokenContext, read: RefreshRead | None, secret: str, started: datetime) -> _Use:
    """May the client use the token `read` found with `secret`? OAuthError when not; _Revoke when the
    token must go as well (a replay, or a grant revoked since)."""
    if read is None:
        raise OAuthError("invalid_grant", _INVALID)
    token = read.token.value
    if token.client_id != ctx.client.id:
        log.warning("client %s presented a refresh token of client %s", ctx.client.id, token.client_id)
        raise OAuthError("invalid_grant", _INVALID)
    now = ctx.deps.clock.now()
    policy = ctx.snap.config.expiry.refresh_tokens
    in_reuse_window = bool(policy.reuse_interval) and now <= token.last_used + policy.reuse_interval
    handed_secret = secret
    if not secret_matches(token.token, secret):
        current = current_from_obsolete(token, secret)
        if current is None and not secret_matches(token.obsolete_token, secret):
            raise OAuthError("invalid_grant", _INVALID)
        if current is None or not in_reuse_window:
            if token.last_used > started:
                # Rotated by a use that wrote after this request began: the two ran at once (a client
                # that sent the same token twice), and this one lost. Refused, but not a replay.
                log.info("refresh token %s: a concurrent use rotated it first", token.id)
                raise OAuthError("invalid_grant", _INVALID)
            # The previous secret, outside the reuse interval: a replay. Whoever holds the current
            # secret may be the thief, so the whole family goes: the token (every rotation of it
            # is this one row) and, through the grant id, the access tokens it issued.
            log.warning("refresh token %s claimed twice; revoking its family", token.id)
            raise _Revoke(token, family=True)
        handed_secret = current
    if _expired(token, ctx, now):
        raise OAuthError("invalid_grant", "Refresh token expired.")
    if read.grant_revoked:
        raise _Revoke(token, family=False)  # its authorization code was replayed after it was issued
    scopes = _scopes(ctx, token)
    conn = ctx.snap.connectors.get(token.connector_id)
    if conn is None or not connector_allowed(ctx.client, token.connector_id):
        raise OAuthError("invalid_grant", "The connector of this refresh token is not available.")
    return _Use(read, scopes, conn, handed_secret, in_reuse_window)


def _advance(ctx: TokenContext, use: _Use, secret: str, fresh: Identity,
             connector_data: bytes | None) -> tuple[Steps[RefreshToken], Claims, str]:
    """The write of a real use, after the connector re-checked the user as `fresh`: the steps that
    advance the stored token (compare-and-swap against the version read), the claims to sign and the
    secret to hand out."""
    token = use.read.token.value
    policy = ctx.snap.config.expiry.refresh_tokens
    rotate = not policy.disable_rotation
    clock = ctx.deps.clock
    # The user id is the key of everything the client stored: it never changes on refresh.
    claims = replace(claims_of(fresh), user_id=token.claims.user_id)
    handed_secret, new_stored = rotated_secret(secret) if rotate else (use.handed_secret, token.token)

    def advance(old: RefreshToken) -> RefreshToken:
        if not secret_matches(old.token, secret):
            raise _Claimed
        # The time of the write (inside its transaction), which a concurrent use that began before it
        # compares with (_checked).
        used = clock.now()
        return replace(
            old,
            token=new_stored,
            obsolete_token=old.token if rotate else old.obsolete_token,
            last_used=used,
            expiry=refresh_expiry(policy, old.created_at, used),
            claims=claims,
            connector_data=None,  # kept on the offline session
        )

    new_data = fresh.connector_data if fresh.connector_data != connector_data else None
    storage = ctx.deps.storage
    return advance_steps(storage, use.read, advance, new_data), claims, handed_secret


def _in_store(instance: object) -> Callable[[Scopes, Identity], Steps[Identity]] | None:
    """The connector's refresh as steps of a database trip, when it reads only Portico's own store (the
    local password database); None when the upstream must be asked outside the database."""
    if not getattr(instance, "refreshes_in_store", False):
        return None
    return cast(Callable[[Scopes, Identity], Steps[Identity]], instance.refresh_steps)  # type: ignore[attr-defined]


class RefreshTokenGrant:
    grant_type = GRANT_REFRESH_TOKEN

    async def exchange(self, ctx: TokenContext) -> dict[str, object]:
        raw = ctx.get("refresh_token")
        if not raw:
            raise OAuthError("invalid_request", "No refresh token is found in request.")
        try:
            token_id, secret = decode_refresh_token(raw)
        except ValueError:
            raise OAuthError("invalid_grant", _INVALID) from None
        storage = ctx.deps.storage
        started = ctx.deps.clock.now()

        def first_trip() -> Steps[tuple[_Use, _Done | None]]:
            # The token, its grant's revocation and its offline session, read under the write lock; when
            # the connector need not be asked outside the database, the use is written in the same
            # transaction (one trip), else it ends here and the upstream is asked before a second one.
            read = yield from read_steps(storage, token_id, with_session=True)
            use = _checked(ctx, read, secret, started)
            token = use.read.token.value
            if use.in_reuse_window:
                return use, _Done(token, token.claims, use.handed_secret)
            in_store = _in_store(use.conn.instance)
            if in_store is None and isinstance(use.conn.instance, RefreshConnector):
                return use, None
            connector_data = use.read.connector_data()
            fresh = _identity(token.claims, connector_data)
            if in_store is not None:
                try:
                    fresh = yield from in_store(sc.connector_scopes(use.scopes), fresh)
                except UserRefusedError as exc:
                    log.warning("connector %s refused to refresh user %s: %s", use.conn.id,
                                token.claims.user_id, exc)
                    raise OAuthError("invalid_grant", "Failed to refresh the identity.") from None
            write, claims, handed = _advance(ctx, use, secret, fresh, connector_data)
            try:
                return use, _Done((yield from write), claims, handed)
            except (_Claimed, NotFound):
                raise OAuthError("invalid_grant", _INVALID) from None

        try:
            use, done = await storage.run(first_trip(), write=True)
        except _Revoke as revoke:
            await revoke_refresh_token(ctx.deps, revoke.token)
            if revoke.family:
                await revoke_grant(ctx.deps, ctx.snap, revoke.token.grant_id or revoke.token.id)
            raise OAuthError("invalid_grant", _INVALID) from None
        if done is None:
            done = await _upstream_use(ctx, use, secret)
        minted = await mint(
            ctx.deps, ctx.snap, client_id=ctx.client.id, claims=done.claims,
            connector_id=done.token.connector_id, scopes=use.scopes, nonce=done.token.nonce,
            grant_id=done.token.grant_id or done.token.id, auth_time=done.token.auth_time,
            sid=done.token.session_id,
        )
        return token_response(minted, encode_refresh_token(done.token.id, done.handed_secret))


async def _upstream_use(ctx: TokenContext, use: _Use, secret: str) -> _Done:
    """A real use through a connector that asks its upstream: re-check the user there, then advance the
    stored token in a second trip (whose compare-and-swap expects the version read in the first, so a
    secret used since, or a token revoked since, fails it)."""
    token = use.read.token.value
    conn = use.conn
    connector_data = use.read.connector_data()
    instance = cast(RefreshConnector, conn.instance)
    try:
        fresh = await upstream(instance.refresh(sc.connector_scopes(use.scopes),
                                                _identity(token.claims, connector_data)))
    except (UserRefusedError, GrantRevokedError) as exc:
        # The upstream answered: this user (or the upstream token) is gone for good, so is the grant.
        log.warning("connector %s refused to refresh user %s: %s", conn.id, token.claims.user_id, exc)
        raise OAuthError("invalid_grant", "Failed to refresh the identity.") from None
    except ConnectorError as exc:
        # An outage (no answer, a timeout, an error page): the token stays valid and the client may
        # retry. RFC 6749 5.2 has no code for it; 4.1.2.1's temporarily_unavailable with a real 503 says
        # exactly that (and the body carries no description: a server fault).
        log.error("connector %s could not refresh user %s: %s", conn.id, token.claims.user_id, exc)
        if exc.connector_data is not None and exc.connector_data != connector_data:
            # Renewed upstream before the failure: the retry must start from the new state.
            await renew_connector_data(ctx.deps, token, exc.connector_data)
        raise OAuthError("temporarily_unavailable", "", 503) from None
    write, claims, handed = _advance(ctx, use, secret, fresh, connector_data)
    try:
        stored = await ctx.deps.storage.run(write, write=True)
    except (_Claimed, NotFound):
        raise OAuthError("invalid_grant", _INVALID) from None
    return _Done(stored, claims, handed)
