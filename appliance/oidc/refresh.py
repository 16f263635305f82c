"""The refresh_token grant (RFC 6749 6): rotation, the reuse interval, lifetimes, fresh claims."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from appliance.connectors.base import GrantRevokedError, Identity, RefreshConnector, UserRefusedError
from appliance.errors import ConnectorError, NotFound, OAuthError
from appliance.oidc import scopes as sc
from appliance.oidc.authorize import connector_allowed
from appliance.oidc.discovery import GRANT_REFRESH_TOKEN
from appliance.oidc.grant import TokenContext
from appliance.oidc.issue import mint, token_response
from appliance.oidc.login import claims_of, upstream
from appliance.oidc.refreshstore import (
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
        clock = ctx.deps.clock
        started = clock.now()
        # One trip for everything a use reads (the token, its grant's revocation, its offline session).
        read = await storage.run(read_steps(storage, token_id, with_session=True))
        if read is None:
            raise OAuthError("invalid_grant", _INVALID)
        token = read.token.value
        if token.client_id != ctx.client.id:
            log.warning("client %s presented a refresh token of client %s", ctx.client.id, token.client_id)
            raise OAuthError("invalid_grant", _INVALID)

        now = ctx.deps.clock.now()
        policy = ctx.snap.config.expiry.refresh_tokens
        rotate = not policy.disable_rotation
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
                await revoke_refresh_token(ctx.deps, token)
                await revoke_grant(ctx.deps, ctx.snap, token.grant_id or token.id)
                raise OAuthError("invalid_grant", _INVALID)
            handed_secret = current
        if _expired(token, ctx, now):
            raise OAuthError("invalid_grant", "Refresh token expired.")
        if read.grant_revoked:
            # Its authorization code was replayed after it was issued.
            await revoke_refresh_token(ctx.deps, token)
            raise OAuthError("invalid_grant", _INVALID)
        scopes = _scopes(ctx, token)
        conn = ctx.snap.connectors.get(token.connector_id)
        if conn is None or not connector_allowed(ctx.client, token.connector_id):
            raise OAuthError("invalid_grant", "The connector of this refresh token is not available.")

        claims = token.claims
        if not in_reuse_window:
            # A real use: re-check the user upstream, then advance the stored token (compare-and-swap).
            connector_data = read.connector_data()
            fresh = _identity(claims, connector_data)
            if isinstance(conn.instance, RefreshConnector):
                try:
                    fresh = await upstream(conn.instance.refresh(sc.connector_scopes(scopes), fresh))
                except (UserRefusedError, GrantRevokedError) as exc:
                    # The upstream answered: this user (or the upstream token) is gone for good, so is
                    # the grant.
                    log.warning("connector %s refused to refresh user %s: %s", conn.id, claims.user_id, exc)
                    raise OAuthError("invalid_grant", "Failed to refresh the identity.") from None
                except ConnectorError as exc:
                    # An outage (no answer, a timeout, an error page): the token stays valid and the client
                    # may retry. RFC 6749 5.2 has no code for it; 4.1.2.1's temporarily_unavailable with a
                    # real 503 says exactly that (and the body carries no description: a server fault).
                    log.error("connector %s could not refresh user %s: %s", conn.id, claims.user_id, exc)
                    if exc.connector_data is not None and exc.connector_data != connector_data:
                        # Renewed upstream before the failure: the retry must start from the new state.
                        await renew_connector_data(ctx.deps, token, exc.connector_data)
                    raise OAuthError("temporarily_unavailable", "", 503) from None
            # The user id is the key of everything the client stored: it never changes on refresh.
            claims = replace(claims_of(fresh), user_id=token.claims.user_id)
            new_stored = token.token
            if rotate:
                handed_secret, new_stored = rotated_secret(secret)
            stored_claims = claims

            def advance(old: RefreshToken) -> RefreshToken:
                if not secret_matches(old.token, secret):
                    raise _Claimed
                # The time of the write (inside its transaction), which a concurrent use that began
                # before it compares with (above).
                used = clock.now()
                return replace(
                    old,
                    token=new_stored,
                    obsolete_token=old.token if rotate else old.obsolete_token,
                    last_used=used,
                    expiry=refresh_expiry(policy, old.created_at, used),
                    claims=stored_claims,
                    connector_data=None,  # kept on the offline session
                )

            new_data = fresh.connector_data if fresh.connector_data != connector_data else None
            # One transaction for the token and its offline session; the token's write expects the
            # version read above, so a secret used since (or a token revoked since) fails it here.
            try:
                token = await storage.run(advance_steps(storage, read, advance, new_data), write=True)
            except (_Claimed, NotFound):
                raise OAuthError("invalid_grant", _INVALID) from None

        minted = await mint(
            ctx.deps, ctx.snap, client_id=ctx.client.id, claims=claims, connector_id=token.connector_id,
            scopes=scopes, nonce=token.nonce, grant_id=token.grant_id or token.id, auth_time=token.auth_time,
            sid=token.session_id,
        )
        return token_response(minted, encode_refresh_token(token.id, handed_secret))
