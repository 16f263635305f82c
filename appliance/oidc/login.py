"""Logging in: choosing a connector, starting its login, and binding the identity to the auth request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, urlencode

from appliance.connectors.base import (
    CallbackConnector,
    Identity,
    PasswordConnector,
    RefreshConnector,
    SAMLConnector,
    SAMLPost,
)
from appliance.errors import AlreadyExists, ConnectorError, DisplayedError, NotFound
from appliance.mfa.policy import chain_for
from appliance.oidc import scopes as sc
from appliance.oidc.authorize import connector_allowed, store_auth_request, validate_authorize
from appliance.oidc.deps import Deps, OpenConnector, Snapshot
from appliance.store.models import AuthRequest, BrowserSession, Claims, OfflineSession, offline_session_key

log = logging.getLogger("portico.oidc.login")

# How long an upstream (LDAP, an OIDC provider...) may take to answer before the login fails.
CONNECTOR_TIMEOUT = 30.0

T = TypeVar("T")


async def upstream(call: Awaitable[T]) -> T:
    """A connector call with a deadline: a hung upstream becomes a ConnectorError, not a hung request."""
    try:
        async with asyncio.timeout(CONNECTOR_TIMEOUT):
            return await call
    except TimeoutError:
        raise ConnectorError(f"the connector did not answer within {CONNECTOR_TIMEOUT:.0f} s") from None


@runtime_checkable
class HeaderConnector(Protocol):
    """A connector whose user is named by headers an authenticating proxy sets (authproxy)."""

    def identity_from_headers(self, headers: Mapping[str, str]) -> Identity: ...


@dataclass(frozen=True)
class ConnectorChoice:
    """One entry of the connector picker (login.html)."""

    id: str
    name: str
    type: str
    url: str


@dataclass(frozen=True)
class Picker:
    """What /auth answers: a redirect straight to one connector, or the list to choose from."""

    redirect: str = ""
    choices: tuple[ConnectorChoice, ...] = ()
    client_name: str = ""
    sso: AuthRequest | None = None  # already logged in through the browser's session


@dataclass(frozen=True)
class PasswordLogin:
    """A password form in progress: the request it serves and the connector that checks it."""

    auth_req: AuthRequest
    connector: OpenConnector
    password_connector: PasswordConnector
    prompt: str
    back_url: str
    client_name: str


def can_log_in(instance: object) -> bool:
    """Does the connector log people in (a form, a redirect upstream, a SAML post)? One that only
    verifies tokens (for token exchange) is no choice on the login page."""
    return isinstance(instance, PasswordConnector | CallbackConnector) or hasattr(instance, "post_data")


def _connector_path(snap: Snapshot, connector_id: str, *rest: str) -> str:
    return snap.issuer.abs_path("/auth", quote(connector_id, safe=""), *rest)


async def pick_connector(
    deps: Deps, snap: Snapshot, params: Sequence[tuple[str, str]], session: BrowserSession | None = None
) -> Picker:
    """GET/POST /auth: validate the request, then pick the connector or list the choices (or, with a
    usable SSO session, skip the login)."""
    req = await validate_authorize(deps, snap, dict(params), session)
    if req.session is not None:
        return Picker(sso=await store_auth_request(deps, snap, req, req.session.connector_id))
    usable = [
        conn for conn in snap.connectors.values()
        if connector_allowed(req.client, conn.id) and can_log_in(conn.instance)
    ]
    if not usable:
        raise DisplayedError("Bad request", "No connectors available for this client.", 400)
    # The connector's own URL carries the whole request again: /auth/{id} validates and stores it.
    query = urlencode([(key, value) for key, value in params if key != "connector_id"])
    if req.connector_id:
        return Picker(redirect=f"{_connector_path(snap, req.connector_id)}?{query}")
    if len(usable) == 1 and not snap.config.oauth2.always_show_login_screen:
        return Picker(redirect=f"{_connector_path(snap, usable[0].id)}?{query}")
    choices = [
        ConnectorChoice(conn.id, conn.name, conn.type, f"{_connector_path(snap, conn.id)}?{query}")
        for conn in usable
    ]
    choices.sort(key=lambda item: item.name.lower())  # as a reader scans, not as bytes compare
    return Picker(choices=tuple(choices), client_name=req.client.name or req.client.id)


async def start_login(
    deps: Deps, snap: Snapshot, connector_id: str, params: Mapping[str, str],
    session: BrowserSession | None = None,
) -> str | AuthRequest | SAMLPost:
    """GET /auth/{connector}: store the auth request and return where the browser goes next (or the
    logged-in request, when the browser's session for this connector stands in for the login, or the
    form the browser posts to a SAML IdP)."""
    req = await validate_authorize(deps, snap, params, session)
    conn = snap.connectors.get(connector_id)
    if conn is None:
        raise DisplayedError("Not found", "Requested resource does not exist.", 404)
    if not connector_allowed(req.client, connector_id):
        raise DisplayedError("Forbidden", "Connector not allowed for this client.", 403)
    if req.connector_id and req.connector_id != connector_id:
        raise DisplayedError("Bad request", "Bad connector ID", 400)
    if req.session is not None and req.session.connector_id == connector_id:
        return await store_auth_request(deps, snap, req, connector_id)
    instance = conn.instance
    if isinstance(instance, CallbackConnector):
        auth_req = await store_auth_request(deps, snap, req, connector_id)
        # The auth request id is the state the upstream hands back to /callback.
        return await upstream(instance.login_url(
            sc.connector_scopes(auth_req.scopes), snap.issuer.abs_url("/callback"), auth_req.id
        ))
    if isinstance(instance, PasswordConnector):
        auth_req = await store_auth_request(deps, snap, req, connector_id)
        return f"{_connector_path(snap, connector_id, 'login')}?{urlencode({'state': auth_req.id})}"
    if isinstance(instance, SAMLConnector):
        auth_req = await store_auth_request(deps, snap, req, connector_id)
        # The auth request id is the RelayState the IdP posts back, and the AuthnRequest's ID comes from it.
        return await upstream(instance.post_data(sc.connector_scopes(auth_req.scopes), auth_req.id))
    raise DisplayedError("Bad request", "Requested resource does not exist.", 400)


async def load_auth_request(deps: Deps, snap: Snapshot, auth_id: str) -> AuthRequest:
    """An unexpired auth request by id, or the page Dex shows for a lost one."""
    if not auth_id:
        raise DisplayedError("Bad request", "User session error.", 400)
    try:
        auth_req = await deps.storage.auth_requests.get(auth_id)
    except NotFound:
        raise DisplayedError("Bad request", "Requested resource does not exist.", 400) from None
    if deps.clock.now() >= auth_req.expiry:
        raise DisplayedError("Bad request", "User session has expired.", 400)
    return auth_req


def _back_url(snap: Snapshot, auth_req: AuthRequest, usable: int) -> str:
    # "Select another login method": rebuilt from the stored request, never taken from the query,
    # so the link cannot be pointed anywhere else.
    if usable < 2:
        return ""
    params = [
        ("client_id", auth_req.client_id),
        ("redirect_uri", auth_req.redirect_uri),
        ("response_type", " ".join(auth_req.response_types)),
        ("scope", " ".join(auth_req.scopes)),
        ("state", auth_req.state),
        ("nonce", auth_req.nonce),
        ("code_challenge", auth_req.pkce.code_challenge),
        ("code_challenge_method", auth_req.pkce.code_challenge_method),
    ]
    return f"{snap.issuer.abs_path('/auth')}?{urlencode([(k, v) for k, v in params if v])}"


async def load_password_login(deps: Deps, snap: Snapshot, connector_id: str, auth_id: str) -> PasswordLogin:
    """GET/POST /auth/{connector}/login?state=<auth request id>."""
    auth_req = await load_auth_request(deps, snap, auth_id)
    if connector_id != auth_req.connector_id:
        raise DisplayedError("Bad request", "Requested resource does not exist.", 400)
    conn = snap.connectors.get(auth_req.connector_id)
    if conn is None or not isinstance(conn.instance, PasswordConnector):
        raise DisplayedError("Bad request", "Requested resource does not exist.", 400)
    client = await deps.find_client(snap, auth_req.client_id)
    usable = 0
    if client is not None:
        usable = sum(1 for item in snap.connectors.values() if connector_allowed(client, item.id))
    return PasswordLogin(
        auth_req=auth_req,
        connector=conn,
        password_connector=conn.instance,
        prompt=conn.instance.prompt() or "Username",
        back_url=_back_url(snap, auth_req, usable),
        client_name=(client.name or client.id) if client is not None else "",
    )


async def submit_password(
    deps: Deps, snap: Snapshot, login: PasswordLogin, username: str, password: str, client_ip: str = ""
) -> AuthRequest | None:
    """Check the credentials; None for wrong ones (the form is shown again). ConnectorError propagates.
    The brute-force throttle answers a locked account or address exactly as wrong credentials."""
    identity = await deps.protection.check_password(
        snap.config.security.brute_force, login.connector.id, username, client_ip,
        lambda: upstream(login.password_connector.login(
            sc.connector_scopes(login.auth_req.scopes), username, password
        )),
    )
    if identity is None:
        log.info("failed login attempt: invalid credentials (connector %s)", login.connector.id)
        return None
    return await finalize_login(deps, snap, login.auth_req, identity, login.connector)


async def handle_callback(
    deps: Deps, snap: Snapshot, connector_id: str | None, params: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
) -> AuthRequest:
    """GET /callback[/{connector}]: the upstream's answer, `state` being the auth request id. An
    authproxy connector reads the user from `headers` instead, and only at /callback/{its id}."""
    auth_req = await load_auth_request(deps, snap, params.get("state", ""))
    if connector_id is not None and connector_id != auth_req.connector_id:
        raise DisplayedError("Bad request", "Requested resource does not exist.", 400)
    conn = snap.connectors.get(auth_req.connector_id)
    if conn is None or not isinstance(conn.instance, CallbackConnector):
        raise DisplayedError("Bad request", "Requested resource does not exist.", 400)
    if isinstance(conn.instance, HeaderConnector):
        # The proxy authenticates its own path only: on bare /callback the headers are anybody's.
        if connector_id is None or headers is None:
            raise DisplayedError("Bad request", "Requested resource does not exist.", 400)
        identity = conn.instance.identity_from_headers(headers)
    else:
        identity = await upstream(conn.instance.handle_callback(sc.connector_scopes(auth_req.scopes), params))
    return await finalize_login(deps, snap, auth_req, identity, conn)


async def handle_saml_post(
    deps: Deps, snap: Snapshot, connector_id: str | None, saml_response: str, relay_state: str
) -> AuthRequest:
    """POST /callback[/{connector}]: a SAML IdP's signed answer, RelayState being the auth request id
    (the connector checks the answer's InResponseTo against the AuthnRequest made from that id)."""
    auth_req = await load_auth_request(deps, snap, relay_state)
    if connector_id is not None and connector_id != auth_req.connector_id:
        raise DisplayedError("Bad request", "Requested resource does not exist.", 400)
    conn = snap.connectors.get(auth_req.connector_id)
    if conn is None or not isinstance(conn.instance, SAMLConnector):
        raise DisplayedError("Bad request", "Requested resource does not exist.", 400)
    identity = await upstream(conn.instance.handle_post(
        sc.connector_scopes(auth_req.scopes), saml_response, auth_req.id
    ))
    return await finalize_login(deps, snap, auth_req, identity, conn)


def claims_of(identity: Identity) -> Claims:
    return Claims(
        user_id=identity.user_id,
        username=identity.username,
        preferred_username=identity.preferred_username,
        email=identity.email,
        email_verified=identity.email_verified,
        groups=tuple(identity.groups),
    )


async def finalize_login(
    deps: Deps, snap: Snapshot, auth_req: AuthRequest, identity: Identity, conn: OpenConnector
) -> AuthRequest:
    """Bind the identity to the auth request; keep connector data for refresh on the offline session.
    With second factors due (appliance.mfa), the request stays not logged in until they are passed."""
    claims = claims_of(identity)
    pending = chain_for(snap, await deps.find_client(snap, auth_req.client_id), auth_req.connector_id)

    def mark(current: AuthRequest) -> AuthRequest:
        return replace(current, logged_in=not pending, claims=claims, connector_data=identity.connector_data,
                       mfa_pending=pending, mfa_done=(), mfa_failures=0)

    updated = await deps.storage.auth_requests.update(auth_req.id, mark)
    if pending:  # "login successful" is logged (and counted) once the second factor is passed too
        log.info("first factor accepted: connector %s, user %s; second factor due", auth_req.connector_id,
                 identity.user_id)
    else:
        log.info("login successful: connector %s, user %s", auth_req.connector_id, identity.user_id)
    if sc.OFFLINE_ACCESS in auth_req.scopes and isinstance(conn.instance, RefreshConnector):
        await remember_connector_data(deps, identity, auth_req.connector_id)
    return updated


async def remember_connector_data(deps: Deps, identity: Identity, connector_id: str) -> None:
    key = offline_session_key(identity.user_id, connector_id)
    fresh = OfflineSession(identity.user_id, connector_id, identity.connector_data)
    try:
        await deps.storage.offline_sessions.create(fresh)
        return
    except AlreadyExists:
        pass
    if identity.connector_data:
        data = identity.connector_data
        await deps.storage.offline_sessions.update(key, lambda old: replace(old, connector_data=data))
