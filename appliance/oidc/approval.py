"""After login: the consent step (bound by an HMAC) and the authorization response (RFC 6749 4.1.2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from appliance.errors import DisplayedError, NotFound, OAuthError, RedirectError
from appliance.ids import new_id
from appliance.oidc import scopes as sc
from appliance.oidc.consent import consent_covers
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.issue import mint
from appliance.oidc.login import load_auth_request
from appliance.oidc.sessions import add_client
from appliance.oidc.urls import REDIRECT_URI_OOB
from appliance.store.models import AuthCode, AuthRequest

log = logging.getLogger("portico.oidc.approval")

AUTH_CODE_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True)
class AuthResult:
    """Where the browser goes next: a 303 to `redirect`, or the oob page showing `oob_code`."""

    redirect: str = ""
    oob_code: str = ""


@dataclass(frozen=True)
class ApprovalPage:
    auth_req: AuthRequest
    client_name: str
    scopes: list[str]
    hmac: str


def approval_hmac(auth_req: AuthRequest) -> str:
    """HMAC-SHA256 of the request id under its own key: the approval URL cannot be guessed from the id
    (which travelled through the upstream as `state`)."""
    mac = hmac.new(auth_req.hmac_key, auth_req.id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def approval_url(snap: Snapshot, auth_req: AuthRequest) -> str:
    query = urlencode({"req": auth_req.id, "hmac": approval_hmac(auth_req)})
    return f"{snap.issuer.abs_path('/approval')}?{query}"


def needs_approval(snap: Snapshot, auth_req: AuthRequest) -> bool:
    return auth_req.force_approval_prompt or not snap.config.oauth2.skip_approval_screen


async def approval_needed(deps: Deps, snap: Snapshot, auth_req: AuthRequest) -> bool:
    """needs_approval, unless the user already granted these scopes and chose to be remembered."""
    if not needs_approval(snap, auth_req):
        return False
    return auth_req.force_approval_prompt or not await consent_covers(deps, auth_req)


async def after_login(deps: Deps, snap: Snapshot, auth_req: AuthRequest) -> AuthResult:
    """The step after a successful login: the consent page, or straight to the response."""
    if await approval_needed(deps, snap, auth_req):
        if "none" in auth_req.prompt.split():
            # prompt=none may show nothing: the client hears it must ask with a page (OIDC Core 3.1.2.6).
            raise await deny(deps, auth_req, OAuthError("consent_required", "User consent is required."))
        return AuthResult(redirect=approval_url(snap, auth_req))
    return await complete(deps, snap, auth_req)


async def load_approval(deps: Deps, snap: Snapshot, req_id: str, mac: str) -> AuthRequest:
    """The logged-in auth request an /approval URL names, if its HMAC is right."""
    if not mac:
        raise DisplayedError("Unauthorized", "Unauthorized request", 401)
    auth_req = await load_auth_request(deps, snap, req_id)
    if not auth_req.logged_in:
        raise DisplayedError("Bad request", "Login process not yet finalized.", 400)
    if not hmac.compare_digest(approval_hmac(auth_req).encode(), mac.encode("utf-8", "replace")):
        raise DisplayedError("Unauthorized", "Unauthorized request", 401)
    return auth_req


async def approval_page(deps: Deps, snap: Snapshot, auth_req: AuthRequest) -> ApprovalPage:
    client = await deps.find_client(snap, auth_req.client_id)
    name = (client.name or client.id) if client is not None else auth_req.client_id
    return ApprovalPage(auth_req, name, sc.describe(auth_req.scopes), approval_hmac(auth_req))


async def deny(deps: Deps, auth_req: AuthRequest, error: OAuthError | None = None) -> RedirectError:
    """The user said no: the request is spent, and the client hears access_denied (RFC 6749 4.1.2.1)."""
    try:
        await deps.storage.auth_requests.delete(auth_req.id)
    except NotFound:
        raise DisplayedError("Bad request", "User session error.", 400) from None
    return RedirectError(error or OAuthError("access_denied", "The user denied the request."),
                         auth_req.redirect_uri, auth_req.state, fragment=_implicit(auth_req))


def _implicit(auth_req: AuthRequest) -> bool:
    return any(item in ("token", "id_token") for item in auth_req.response_types)


def with_params(uri: str, params: list[tuple[str, str]], fragment: bool) -> str:
    """`uri` with params added to its query (replacing same-named ones) or set as its fragment."""
    parts = urlsplit(uri)
    if fragment:
        return urlunsplit(parts._replace(fragment=urlencode(params)))
    names = {name for name, _ in params}
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in names]
    return urlunsplit(parts._replace(query=urlencode(kept + params)))


async def complete(deps: Deps, snap: Snapshot, auth_req: AuthRequest) -> AuthResult:
    """Issue the authorization response: the code (and, for implicit/hybrid flows, tokens)."""
    now = deps.clock.now()
    if now >= auth_req.expiry:
        raise DisplayedError("Bad request", "User session has expired.", 400)
    if auth_req.claims is None:
        raise DisplayedError("Bad request", "Login process not yet finalized.", 400)
    # Deleting first makes the request single-use: a second approval finds it gone.
    try:
        await deps.storage.auth_requests.delete(auth_req.id)
    except NotFound:
        raise DisplayedError("Bad request", "User session error.", 400) from None

    await add_client(deps, auth_req.session_id, auth_req.client_id)
    code_id = ""
    if "code" in auth_req.response_types:
        code = AuthCode(
            id=new_id(), client_id=auth_req.client_id, redirect_uri=auth_req.redirect_uri,
            scopes=auth_req.scopes, connector_id=auth_req.connector_id, claims=auth_req.claims,
            expiry=now + AUTH_CODE_LIFETIME, nonce=auth_req.nonce, connector_data=auth_req.connector_data,
            pkce=auth_req.pkce, auth_time=auth_req.auth_time, session_id=auth_req.session_id,
        )
        await deps.storage.auth_codes.create(code)
        code_id = code.id
        if auth_req.redirect_uri == REDIRECT_URI_OOB:
            return AuthResult(oob_code=code_id)

    if not _implicit(auth_req):
        params = [("code", code_id), ("state", auth_req.state)]
        return AuthResult(redirect=with_params(auth_req.redirect_uri, params, fragment=False))

    # Implicit and hybrid flows (only when oauth2.responseTypes allows them): values in the fragment.
    want_id = "id_token" in auth_req.response_types
    minted = await mint(
        deps, snap, client_id=auth_req.client_id, claims=auth_req.claims, connector_id=auth_req.connector_id,
        scopes=auth_req.scopes, nonce=auth_req.nonce, code=code_id or None, grant_id=code_id,
        auth_time=auth_req.auth_time, sid=auth_req.session_id,
    )
    fragment: list[tuple[str, str]] = []
    if "token" in auth_req.response_types:
        fragment += [("access_token", minted.access_token), ("token_type", "bearer")]
        if not code_id:  # the hybrid flow sends no expires_in (OIDC Core 3.3.2.5)
            fragment.append(("expires_in", str(minted.expires_in)))
    fragment.append(("state", auth_req.state))
    if want_id and minted.id_token:
        fragment.append(("id_token", minted.id_token))
    if code_id:
        fragment.append(("code", code_id))
    return AuthResult(redirect=with_params(auth_req.redirect_uri, fragment, fragment=True))
