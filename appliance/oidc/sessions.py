"""Browser SSO sessions: the session cookie's value, loading and ending sessions, and id_token_hint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from appliance.errors import NotFound
from appliance.ids import new_id, new_secret
from appliance.keys.errors import InvalidToken, KeysNotLoaded
from appliance.oidc.deps import Deps, Snapshot
from appliance.store.models import AuthRequest, BrowserSession

log = logging.getLogger("portico.oidc.sessions")

# How long a login is good for SSO. A session cookie (no Max-Age) also ends with the browser.
SESSION_LIFETIME = timedelta(hours=24)
# A session's last_active is written at most this often (every /auth would otherwise be a write).
_TOUCH_EVERY = timedelta(minutes=5)
_COOKIE_PLAIN = "portico_session"
_COOKIE_SECURE = "__Host-portico_session"  # https only: no sibling subdomain can plant one
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cookie_name(secure: bool) -> str:
    return _COOKIE_SECURE if secure else _COOKIE_PLAIN


def _digest(secret: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()).rstrip(b"=").decode()


async def start_session(deps: Deps, auth_req: AuthRequest) -> tuple[AuthRequest, str]:
    """A new session for the login bound to `auth_req`; returns the request (now carrying auth_time
    and the session id) and the cookie value "<id>.<secret>" (only the secret's digest is stored)."""
    assert auth_req.claims is not None
    now = deps.clock.now()
    secret = new_secret()
    session = BrowserSession(
        id=new_id(), secret_hash=_digest(secret), connector_id=auth_req.connector_id, claims=auth_req.claims,
        auth_time=now, expiry=now + SESSION_LIFETIME, last_active=now,
        connector_data=auth_req.connector_data, mfa=auth_req.mfa_done,
    )
    await deps.storage.browser_sessions.create(session)
    updated = await deps.storage.auth_requests.update(
        auth_req.id, lambda old: replace(old, auth_time=now, session_id=session.id)
    )
    return updated, f"{session.id}.{secret}"


async def load_session(deps: Deps, cookie: str | None) -> BrowserSession | None:
    """The live session a cookie names, or None (no cookie, a forged or ended one, expired)."""
    if not cookie or len(cookie) > 200:
        return None
    session_id, sep, secret = cookie.partition(".")
    if not sep or not session_id or not secret:
        return None
    try:
        session = await deps.storage.browser_sessions.get(session_id)
    except NotFound:
        return None
    if not hmac.compare_digest(session.secret_hash.encode(), _digest(secret).encode()):
        return None
    now = deps.clock.now()
    if now >= session.expiry:
        return None
    if now - session.last_active > _TOUCH_EVERY:
        try:
            session = await deps.storage.browser_sessions.update(
                session.id, lambda old: replace(old, last_active=now)
            )
        except NotFound:
            return None
    return session


async def add_client(deps: Deps, session_id: str, client_id: str) -> None:
    """Remember that `client_id` got tokens in this session: logout notifies it."""
    if not session_id:
        return

    def add(old: BrowserSession) -> BrowserSession:
        return old if client_id in old.clients else replace(old, clients=(*old.clients, client_id))

    try:
        await deps.storage.browser_sessions.update(session_id, add)
    except NotFound:
        pass


async def end_session(deps: Deps, session: BrowserSession) -> None:
    try:
        await deps.storage.browser_sessions.delete(session.id)
    except NotFound:
        pass


def verify_hint(deps: Deps, snap: Snapshot, token: str) -> dict[str, Any] | None:
    """The claims of an ID token we issued (id_token_hint); an expired one still counts (OIDC Core
    3.1.2.1), so only the signature, a key still in the set and the issuer are checked."""
    try:
        # Verifying "at the epoch" skips the exp check and nothing else.
        claims = deps.keys.verify(token, now=_EPOCH + timedelta(seconds=1))
    except (InvalidToken, KeysNotLoaded):
        return None
    if claims.get("iss") != snap.issuer.url or not isinstance(claims.get("sub"), str):
        return None
    return claims


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [item for item in aud if isinstance(item, str)]
    return []
