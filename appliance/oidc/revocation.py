"""Revoking issued tokens: the revocation records that access-token checks consult, and token families."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from appliance.errors import AlreadyExists, NotFound
from appliance.oidc.deps import Deps, Snapshot
from appliance.store.models import RevokedToken

log = logging.getLogger("portico.oidc.revocation")


async def revoke_id(deps: Deps, key: str, until: datetime) -> None:
    """Record `key` (an access token's jti, or a grant id) as revoked until `until`."""
    if not key:
        return
    try:
        await deps.storage.revoked_tokens.create(RevokedToken(key, until))
    except AlreadyExists:
        pass


async def revoke_grant(deps: Deps, snap: Snapshot, grant_id: str) -> None:
    """Revoke every access token of an authorization: they all carry jti "<grant id>.<unique>", and
    none lives longer than expiry.idTokens from now."""
    await revoke_id(deps, grant_id, deps.clock.now() + snap.config.expiry.id_tokens)


async def is_revoked_id(deps: Deps, key: str) -> bool:
    if not key:
        return False
    try:
        await deps.storage.revoked_tokens.get(key)
    except NotFound:
        return False
    return True


async def claims_revoked(deps: Deps, claims: Mapping[str, Any]) -> bool:
    """Was this access token revoked, itself or through its grant?"""
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        return False
    grant, sep, _ = jti.partition(".")
    if await is_revoked_id(deps, jti):
        return True
    return bool(sep) and await is_revoked_id(deps, grant)
