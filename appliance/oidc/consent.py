"""Remembered consent: the scopes a user granted a client, so the approval page is asked once."""

from __future__ import annotations

from appliance.errors import AlreadyExists, NotFound
from appliance.oidc.deps import Deps
from appliance.store.models import AuthRequest, Consent, consent_key


async def consent_covers(deps: Deps, auth_req: AuthRequest) -> bool:
    """Did this user already grant this client every scope the request asks for?"""
    if auth_req.claims is None:
        return False
    key = consent_key(auth_req.claims.user_id, auth_req.connector_id, auth_req.client_id)
    try:
        consent = await deps.storage.consents.get(key)
    except NotFound:
        return False
    return set(auth_req.scopes) <= set(consent.scopes)


async def remember_consent(deps: Deps, auth_req: AuthRequest) -> None:
    """Record the scopes granted by an approval (added to what was granted before)."""
    assert auth_req.claims is not None
    user_id, conn, client = auth_req.claims.user_id, auth_req.connector_id, auth_req.client_id
    fresh = Consent(user_id, conn, client, tuple(auth_req.scopes), deps.clock.now())
    try:
        await deps.storage.consents.create(fresh)
        return
    except AlreadyExists:
        pass

    def widen(old: Consent) -> Consent:
        scopes = tuple(dict.fromkeys((*old.scopes, *auth_req.scopes)))
        return Consent(user_id, conn, client, scopes, fresh.created_at)

    await deps.storage.consents.update(consent_key(user_id, conn, client), widen)


async def list_consents(deps: Deps, user_id: str = "") -> list[Consent]:
    """Remembered consents, of one user or all: what an administrator lists to revoke one."""
    return [c for c in await deps.storage.consents.list() if not user_id or c.user_id == user_id]


async def revoke_consent(deps: Deps, user_id: str, connector_id: str, client_id: str) -> bool:
    """Forget a consent: the approval page is shown again. False when there was none."""
    try:
        await deps.storage.consents.delete(consent_key(user_id, connector_id, client_id))
    except NotFound:
        return False
    return True
