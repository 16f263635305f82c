"""The SSO session cookie: reading, setting and clearing it (Secure and __Host- on https, HttpOnly)."""

from __future__ import annotations

from quart import Request, Response

from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.sessions import SESSION_LIFETIME, cookie_name, load_session
from appliance.store.models import BrowserSession


async def current_session(deps: Deps, snap: Snapshot, request: Request) -> BrowserSession | None:
    return await load_session(deps, request.cookies.get(cookie_name(snap.issuer.secure)))


def set_session_cookie(response: Response, snap: Snapshot, value: str) -> None:
    # SameSite=Lax: the cookie goes along on the top-level redirects of a login (an RP sending the
    # browser to /auth), never on cross-site POSTs or sub-requests. Max-Age bounds a browser that
    # restores its session cookies; the stored session's expiry is what counts.
    response.set_cookie(
        cookie_name(snap.issuer.secure), value, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
        secure=snap.issuer.secure, httponly=True, samesite="Lax",
    )


def clear_session_cookie(response: Response, snap: Snapshot) -> None:
    response.delete_cookie(
        cookie_name(snap.issuer.secure), path="/", secure=snap.issuer.secure, httponly=True, samesite="Lax"
    )
