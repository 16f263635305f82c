"""Revoking issued tokens: the revocation records that access-token checks consult, and token families."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from appliance.errors import AlreadyExists
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


def _revocation_keys(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The records that revoke an access token: its jti, and the grant id the jti starts with."""
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        return ()
    grant, sep, _ = jti.partition(".")
    return (jti, grant) if sep and grant else (jti,)


async def claims_revoked(deps: Deps, claims: Mapping[str, Any]) -> bool:
    """Was this access token revoked, itself or through its grant? One statement."""
    keys = _revocation_keys(claims)
    if not keys:
        return False
    return bool(await deps.storage.run(deps.storage.revoked_tokens.steps.present(keys)))
