"""RP-initiated logout (OIDC RP-Initiated Logout 1.0) and back-channel logout (OIDC Back-Channel
Logout 1.0): ending a browser session, telling the clients that got tokens in it, and ending the
upstream's session too when the login came through an OpenID Provider that offers it.

Upstream logout, as Dex's main branch does it: /logout keeps the session, remembers on it where the
browser goes afterwards, and sends the browser to the upstream's end_session_endpoint with
post_logout_redirect_uri = <issuer>/logout/callback (plus the upstream ID token as id_token_hint,
which Dex leaves out). The session ends, and the clients are told, only at /logout/callback: a user
who abandons the upstream's page is still logged in everywhere, not half logged out."""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlencode, urlsplit

from appliance.errors import ConnectorError, DisplayedError, NotFound
from appliance.ids import new_id
from appliance.oidc.approval import with_params
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.login import upstream
from appliance.oidc.sessions import audiences, end_session, verify_hint
from appliance.oidc.tokens import encode_sub
from appliance.store.models import BrowserSession, Client

log = logging.getLogger("portico.oidc.logout")

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_LIFETIME = timedelta(minutes=2)
BACKCHANNEL_TIMEOUT = 5.0  # seconds per client; a slow client must not hold the logout page
LOGOUT_CALLBACK_PATH = "/logout/callback"  # where an upstream sends the browser back (Dex's path)


@runtime_checkable
class UpstreamLogoutConnector(Protocol):
    """A connector whose upstream can end its own session (RP-Initiated Logout): the oidc connector."""

    async def end_session_url(self, id_token_hint: str = "",
                              post_logout_redirect_uri: str = "") -> str | None:
        """The upstream's logout URL, or None when it advertises no end_session_endpoint."""
        ...

    def upstream_id_token(self, connector_data: bytes | None) -> str:
        """The upstream ID token kept in the connector data at login, or ""."""
        ...


@dataclass(frozen=True)
class LogoutRequest:
    """A checked /logout request: where to go afterwards, and whether to ask the user first."""

    client: Client | None
    redirect: str  # post_logout_redirect_uri with state, or "" for Portico's own page
    confirm: bool  # no id_token_hint matching the session: ask before logging out (CSRF)
    hint_sub: str = ""


async def check_logout(
    deps: Deps, snap: Snapshot, params: Mapping[str, str], session: BrowserSession | None
) -> LogoutRequest:
    """Validate id_token_hint, client_id and post_logout_redirect_uri (which must be registered for
    the client, exactly); errors are shown as a page, never redirected to an unchecked URI."""
    hint = params.get("id_token_hint", "")
    claims: dict[str, Any] | None = None
    if hint:
        claims = verify_hint(deps, snap, hint)
        if claims is None:
            raise DisplayedError("Bad request", "Invalid id_token_hint.", 400)
    client_id = params.get("client_id", "")
    if claims is not None:
        auds = audiences(claims)
        if client_id and client_id not in auds:
            raise DisplayedError("Bad request", "client_id does not match the id_token_hint.", 400)
        client_id = client_id or str(claims.get("azp") or (auds[-1] if auds else ""))
    client = await deps.find_client(snap, client_id) if client_id else None
    if client_id and client is None:
        raise DisplayedError("Bad request", "Invalid client_id.", 400)
    redirect = ""
    target = params.get("post_logout_redirect_uri", "")
    if target:
        if client is None:
            raise DisplayedError(
                "Bad request", "post_logout_redirect_uri needs id_token_hint or client_id.", 400
            )
        if target not in client.post_logout_redirect_uris:
            raise DisplayedError("Bad request", "Unregistered post_logout_redirect_uri.", 400)
        state = params.get("state", "")
        redirect = with_params(target, [("state", state)], fragment=False) if state else target
    matches = False
    sub = str(claims["sub"]) if claims is not None else ""
    if session is not None and claims is not None:
        same_user = sub == encode_sub(session.claims.user_id, session.connector_id)
        sid = claims.get("sid")
        matches = same_user and (not sid or sid == session.id)
    return LogoutRequest(client, redirect, confirm=session is not None and not matches, hint_sub=sub)


def logout_token(deps: Deps, snap: Snapshot, client_id: str, session: BrowserSession) -> str:
    """A Logout Token (Back-Channel Logout 2.4): sub and sid, the event, and never a nonce."""
    now = deps.clock.now()
    return deps.keys.sign({
        "iss": snap.issuer.url,
        "sub": encode_sub(session.claims.user_id, session.connector_id),
        "aud": client_id,
        "iat": int(now.timestamp()),
        "exp": int((now + LOGOUT_TOKEN_LIFETIME).timestamp()),
        "jti": new_id(),
        "sid": session.id,
        "events": {BACKCHANNEL_EVENT: {}},
    })


def _post(uri: str, token: str) -> int:
    """One back-channel POST (blocking: it runs in a thread). Returns the HTTP status."""
    body = urlencode({"logout_token": token}).encode()
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked to be http or https)
        uri, data=body, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cache-Control": "no-store"},
    )
    try:
        with urllib.request.urlopen(request, timeout=BACKCHANNEL_TIMEOUT) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def notify_backchannel(deps: Deps, snap: Snapshot, session: BrowserSession) -> dict[str, int]:
    """POST a logout token to each client of the session that registered a backchannelLogoutURI, all at
    once; returns client id -> HTTP status (0 when it could not be reached). Failures are logged."""
    targets: list[tuple[str, str]] = []
    for client_id in session.clients:
        client = await deps.find_client(snap, client_id)
        uri = client.backchannel_logout_uri if client is not None else ""
        if uri and urlsplit(uri).scheme in ("http", "https"):
            targets.append((client_id, uri))

    async def one(client_id: str, uri: str) -> int:
        token = logout_token(deps, snap, client_id, session)
        try:
            status = await asyncio.wait_for(asyncio.to_thread(_post, uri, token), BACKCHANNEL_TIMEOUT + 1)
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning("back-channel logout to client %s failed: %s", client_id, type(exc).__name__)
            return 0
        if status != 200:
            log.warning("back-channel logout to client %s answered %d", client_id, status)
        return status

    results = await asyncio.gather(*(one(cid, uri) for cid, uri in targets))
    return {cid: status for (cid, _), status in zip(targets, results, strict=True)}


async def start_upstream_logout(
    deps: Deps, snap: Snapshot, session: BrowserSession, redirect: str
) -> str | None:
    """The upstream's end_session URL to send the browser to, with `redirect` (where to go once back at
    /logout/callback) kept on the session; None to log out here and now: the connector cannot end its
    upstream's session, none is advertised, no upstream ID token was kept, or the upstream is down."""
    entry = snap.connectors.get(session.connector_id)
    conn = entry.instance if entry is not None else None
    if not isinstance(conn, UpstreamLogoutConnector):
        return None
    hint = conn.upstream_id_token(session.connector_data)
    if not hint:
        return None
    try:
        url = await upstream(conn.end_session_url(hint, snap.issuer.abs_url(LOGOUT_CALLBACK_PATH)))
    except ConnectorError as exc:
        # Discovery failed: the user still gets logged out of Portico (the upstream's session stays).
        log.warning("connector %s: upstream logout unavailable, logging out locally: %s",
                    session.connector_id, exc)
        return None
    if not url:
        return None
    try:
        await deps.storage.browser_sessions.update(
            session.id, lambda old: replace(old, logout_redirect=redirect)
        )
    except NotFound:
        return None
    log.info("session of user %s: logging out at the upstream of connector %s", session.claims.user_id,
             session.connector_id)
    return url


async def logout(deps: Deps, snap: Snapshot, session: BrowserSession | None) -> None:
    """End the session (if any) and notify its clients over the back channel."""
    if session is None:
        return
    await end_session(deps, session)
    log.info("session of user %s ended by logout", session.claims.user_id)
    await notify_backchannel(deps, snap, session)
