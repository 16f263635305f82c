"""Logging in: choosing a connector, starting its login, and binding the identity to the auth request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar
from urllib.parse import quote, urlencode

from appliance.connectors.base import CallbackConnector, Identity, PasswordConnector, RefreshConnector
from appliance.errors import AlreadyExists, ConnectorError, DisplayedError, NotFound
from appliance.oidc import scopes as sc
from appliance.oidc.authorize import connector_allowed, store_auth_request, validate_authorize
from appliance.oidc.deps import Deps, OpenConnector, Snapshot
from appliance.store.models import AuthRequest, Claims, OfflineSession, offline_session_key

log = logging.getLogger("portico.oidc.login")

# How long an upstream (LDAP, an OIDC provider...) may take to answer before the login fails.
CONNECTOR_TIMEOUT = 30.0

T = TypeVar("T")


async def upstream(call: Awaitable[T]) -> T:
    """A connector call with a deadline: a hung upstream becomes a ConnectorError, not a hung request."""
    try:
        return await asyncio.wait_for(call, CONNECTOR_TIMEOUT)
    except TimeoutError:
        raise ConnectorError(f"the connector did not answer within {CONNECTOR_TIMEOUT:.0f} s") from None


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


@dataclass(frozen=True)
class PasswordLogin:
    """A password form in progress: the request it serves and the connector that checks it."""

    auth_req: AuthRequest
    connector: OpenConnector
    password_connector: PasswordConnector
    prompt: str
    back_url: str
    client_name: str


def _connector_path(snap: Snapshot, connector_id: str, *rest: str) -> str:
    return snap.issuer.abs_path("/auth", quote(connector_id, safe=""), *rest)


async def pick_connector(deps: Deps, snap: Snapshot, params: Sequence[tuple[str, str]]) -> Picker:
    """GET/POST /auth: validate the request, then pick the connector or list the choices."""
    req = await validate_authorize(deps, snap, dict(params))
    usable = [conn for conn in snap.connectors.values() if connector_allowed(req.client, conn.id)]
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


async def start_login(deps: Deps, snap: Snapshot, connector_id: str, params: Mapping[str, str]) -> str:
    """GET /auth/{connector}: store the auth request and return where the browser goes next."""
    req = await validate_authorize(deps, snap, params)
    conn = snap.connectors.get(connector_id)
    if conn is None:
        raise DisplayedError("Not found", "Requested resource does not exist.", 404)
    if not connector_allowed(req.client, connector_id):
        raise DisplayedError("Forbidden", "Connector not allowed for this client.", 403)
    if req.connector_id and req.connector_id != connector_id:
        raise DisplayedError("Bad request", "Bad connector ID", 400)
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
    deps: Deps, snap: Snapshot, login: PasswordLogin, username: str, password: str
) -> AuthRequest | None:
    """Check the credentials; None for wrong ones (the form is shown again). ConnectorError propagates."""
    identity = await upstream(login.password_connector.login(
        sc.connector_scopes(login.auth_req.scopes), username, password
    ))
    if identity is None:
        log.info("failed login attempt: invalid credentials (connector %s)", login.connector.id)
        return None
    return await finalize_login(deps, snap, login.auth_req, identity, login.connector)


async def handle_callback(
    deps: Deps, snap: Snapshot, connector_id: str | None, params: Mapping[str, str]
) -> AuthRequest:
    """GET /callback[/{connector}]: the upstream's answer, `state` being the auth request id."""
    auth_req = await load_auth_request(deps, snap, params.get("state", ""))
    if connector_id is not None and connector_id != auth_req.connector_id:
        raise DisplayedError("Bad request", "Requested resource does not exist.", 400)
    conn = snap.connectors.get(auth_req.connector_id)
    if conn is None or not isinstance(conn.instance, CallbackConnector):
        raise DisplayedError("Bad request", "Requested resource does not exist.", 400)
    identity = await upstream(conn.instance.handle_callback(sc.connector_scopes(auth_req.scopes), params))
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
    """Bind the identity to the auth request; keep connector data for refresh on the offline session."""
    claims = claims_of(identity)

    def mark(current: AuthRequest) -> AuthRequest:
        return replace(current, logged_in=True, claims=claims, connector_data=identity.connector_data)

    updated = await deps.storage.auth_requests.update(auth_req.id, mark)
    log.info("login successful: connector %s, user %s", auth_req.connector_id, identity.user_id)
    if sc.OFFLINE_ACCESS in auth_req.scopes and isinstance(conn.instance, RefreshConnector):
        await _remember_connector_data(deps, identity, auth_req.connector_id)
    return updated


async def _remember_connector_data(deps: Deps, identity: Identity, connector_id: str) -> None:
    key = offline_session_key(identity.user_id, connector_id)
    fresh = OfflineSession(identity.user_id, connector_id, {}, identity.connector_data)
    try:
        await deps.storage.offline_sessions.create(fresh)
        return
    except AlreadyExists:
        pass
    if identity.connector_data:
        data = identity.connector_data
        await deps.storage.offline_sessions.update(key, lambda old: replace(old, connector_data=data))
