"""The administrator's side of TOTP: who has enrolled, and resetting a user (they enrol again)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from appliance.errors import NotFound
from appliance.oidc.deps import LOCAL_CONNECTOR_ID, Deps
from appliance.store.models import mfa_key


async def reset_totp(deps: Deps, email: str) -> dict[str, Any]:
    """Forget every TOTP secret and recovery code of a local user (static or stored): at their next
    login they enrol again, or, where enrolment is optional, may skip it. Never returns the secret."""
    user = await deps.get_password(deps.snapshot, email)
    if user is None:
        raise NotFound(f"no user {email.strip().lower()!r} in the local password database")
    try:
        await deps.storage.user_mfa.delete(mfa_key(user.user_id, LOCAL_CONNECTOR_ID))
        had = True
    except NotFound:
        had = False
    return {"email": user.email.lower(), "user_id": user.user_id, "reset": had}


async def with_totp(deps: Deps, rows: Awaitable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The users list with `totp`: True once the user confirmed a TOTP secret for the local connector."""
    users = await rows
    enrolled = {
        item.user_id for item in await deps.storage.user_mfa.list()
        if item.connector_id == LOCAL_CONNECTOR_ID and any(sec.confirmed for sec in item.totp.values())
    }
    return [{**user, "totp": user.get("user_id") in enrolled} for user in users]
