"""The authorization endpoint (RFC 6749 4.1.1, OIDC Core 3.1.2.1): validating /auth as ordered checks."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from urllib.parse import urlsplit

from appliance.errors import DisplayedError, OAuthError, RedirectError
from appliance.ids import new_hmac_key, new_id
from appliance.mfa.policy import session_satisfies
from appliance.oidc import scopes as sc
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.pkce import check_challenge
from appliance.oidc.sessions import verify_hint
from appliance.oidc.tokens import encode_sub
from appliance.oidc.urls import DEVICE_CALLBACK_PATH, REDIRECT_URI_OOB
from appliance.store.models import PKCE, AuthRequest, BrowserSession, Client

_RESPONSE_TYPES = frozenset({"code", "token", "id_token"})
_PROMPTS = frozenset({"none", "login", "consent", "select_account"})


@dataclass(frozen=True)
class AuthorizeRequest:
    """A validated authorization request, not stored yet."""

    client: Client
    redirect_uri: str
    state: str
    nonce: str
    scopes: tuple[str, ...]
    response_types: tuple[str, ...]
    connector_id: str
    pkce: PKCE
    force_approval: bool
    prompt: str = ""
    # The browser's SSO session when it may stand in for a login (no prompt=login, max_age and
    # id_token_hint satisfied, its connector allowed); None means the user logs in.
    session: BrowserSession | None = None


@dataclass
class _Check:
    """What the checks read and fill in, in order."""

    deps: Deps
    snap: Snapshot
    params: Mapping[str, str]
    client: Client | None = None
    redirect_uri: str = ""
    scopes: tuple[str, ...] = ()
    response_types: tuple[str, ...] = ()
    pkce: PKCE = field(default_factory=PKCE)
    force_approval: bool = False
    session: BrowserSession | None = None  # the browser's session, as the web layer found it
    prompts: frozenset[str] = frozenset()
    reuse: BrowserSession | None = None

    def get(self, name: str) -> str:
        return self.params.get(name, "")

    def fail(self, error: str, description: str) -> RedirectError:
        """From the redirect URI check on, errors go back to the client (RFC 6749 4.1.2.1)."""
        return RedirectError(OAuthError(error, description), self.redirect_uri, self.get("state"),
                             fragment=_wants_fragment(self.get("response_type")))


def _wants_fragment(response_type: str) -> bool:
    # Implicit and hybrid responses (and so their errors) travel in the fragment.
    return any(item in ("token", "id_token") for item in response_type.split())


def _go_quote(items: list[str]) -> str:
    # Dex formats lists with Go's %q: ["a" "b"].
    return "[" + " ".join(json.dumps(item) for item in items) + "]"


def is_loopback_http(uri: str) -> bool:
    """`http://localhost|127.x|[::1][:port]/...`: what a native app may use without registering.

    Anything a browser could read differently from Python is refused: a backslash (WHATWG URL treats it
    as "/", so `http://evil\\@localhost/` goes to evil), userinfo, control characters, white space and
    fragments.
    """
    if "\\" in uri or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        return False
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    if parts.scheme != "http" or "@" in parts.netloc or parts.fragment:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redirect_uri_allowed(client: Client, uri: str) -> bool:
    """Exact match with a registered URI; public clients without any may use oob, the device callback
    or a loopback URL (Dex's validateRedirectURI)."""
    if uri in client.redirect_uris:
        return True
    if not client.public or client.redirect_uris:
        return False
    if uri in (REDIRECT_URI_OOB, DEVICE_CALLBACK_PATH):
        return True
    return is_loopback_http(uri)


async def validate_scopes(deps: Deps, snap: Snapshot, client: Client, scopes: tuple[str, ...]) -> None:
    """openid present, every scope known, every cross-client audience trusted; OAuthError otherwise
    (/auth redirects it; the token and device endpoints answer it)."""
    unrecognized: list[str] = []
    untrusted: list[str] = []
    for scope in scopes:
        if scope in sc.STANDARD_SCOPES:
            continue
        peer = sc.cross_client_peer(scope)
        if peer is None:
            unrecognized.append(scope)
        elif not await peer_trusts(deps, snap, client.id, peer):
            untrusted.append(scope)
    if sc.OPENID not in scopes:
        raise OAuthError("invalid_scope", 'Missing required scope(s) ["openid"].')
    if unrecognized:
        raise OAuthError("invalid_scope", f"Unrecognized scope(s) {_go_quote(unrecognized)}")
    if untrusted:
        raise OAuthError("invalid_scope", f"Client can't request scope(s) {_go_quote(untrusted)}")


def connector_allowed(client: Client, connector_id: str) -> bool:
    """A client's allowedConnectors (empty: all). Every place that picks a connector asks here."""
    return not client.allowed_connectors or connector_id in client.allowed_connectors


async def peer_trusts(deps: Deps, snap: Snapshot, client_id: str, peer_id: str) -> bool:
    """May `client_id` ask for `audience:server:client_id:<peer_id>`? Only if the peer says so."""
    if peer_id == client_id:
        return True
    peer = await deps.find_client(snap, peer_id)
    return peer is not None and client_id in peer.trusted_peers


# --- the checks, in the order they run ----------------------------------------------------------------


async def check_client(c: _Check) -> None:
    c.client = await c.deps.find_client(c.snap, c.get("client_id"))
    if c.client is None:
        # No client: nobody to redirect to safely (RFC 6749 4.1.2.1).
        raise DisplayedError("Bad request", "Invalid client_id.", 400)


async def check_redirect_uri(c: _Check) -> None:
    assert c.client is not None
    uri = c.get("redirect_uri")
    if not redirect_uri_allowed(c.client, uri):
        raise DisplayedError("Bad request", "Unregistered redirect_uri.", 400)
    if uri == DEVICE_CALLBACK_PATH:
        uri = c.snap.issuer.abs_path(DEVICE_CALLBACK_PATH)
    c.redirect_uri = uri


async def check_connector_id(c: _Check) -> None:
    assert c.client is not None
    connector_id = c.get("connector_id")
    if not connector_id:
        return
    if connector_id not in c.snap.connectors:
        raise c.fail("invalid_request", "Invalid ConnectorID")
    if not connector_allowed(c.client, connector_id):
        raise c.fail("invalid_request", "Connector not allowed for this client")


async def check_request_object(c: _Check) -> None:
    if c.get("request") or c.get("request_uri"):
        raise c.fail("request_not_supported", "Server does not support request parameter.")


async def check_pkce(c: _Check) -> None:
    pkce_config = c.snap.config.oauth2.pkce
    try:  # RFC 7636 4.3: plain when the method is absent
        c.pkce = check_challenge(c.get("code_challenge"), c.get("code_challenge_method"),
                                 pkce_config.code_challenge_methods_supported)
    except OAuthError as exc:
        raise c.fail(exc.error, exc.description) from None
    if pkce_config.enforce and not c.pkce.code_challenge:
        raise c.fail("invalid_request", "PKCE is required. The code_challenge parameter must be provided.")


async def check_scopes(c: _Check) -> None:
    assert c.client is not None
    scopes = sc.split_scopes(c.get("scope"))
    try:
        await validate_scopes(c.deps, c.snap, c.client, scopes)
    except OAuthError as exc:
        raise c.fail(exc.error, exc.description) from None
    c.scopes = scopes


async def check_response_type(c: _Check) -> None:
    types = tuple(c.get("response_type").split())
    for item in types:
        if item not in _RESPONSE_TYPES:
            raise c.fail("invalid_request", f"Invalid response type {json.dumps(item)}")
        if item not in c.snap.response_types:
            raise c.fail("unsupported_response_type", f"Unsupported response type {json.dumps(item)}")
    if not types:
        raise c.fail("invalid_request", "No response_type provided")
    if "token" in types and "code" not in types and "id_token" not in types:
        raise c.fail("invalid_request",
                     "Response type 'token' must be provided with type 'id_token' and/or 'code'")
    if "code" not in types and not c.get("nonce"):
        raise c.fail("invalid_request", "Response type 'token' requires a 'nonce' value.")
    if "token" in types and c.redirect_uri == REDIRECT_URI_OOB:
        raise c.fail("invalid_request",
                     f"Cannot use response type 'token' with redirect_uri '{REDIRECT_URI_OOB}'.")
    c.response_types = types


async def check_prompt(c: _Check) -> None:
    prompts = set(c.get("prompt").split())
    unknown = prompts - _PROMPTS
    if unknown:
        first = json.dumps(sorted(unknown)[0])
        raise c.fail("invalid_request", f"Invalid prompt parameter: unknown value {first}")
    if "none" in prompts and len(prompts) > 1:
        raise c.fail("invalid_request",
                     "Invalid prompt parameter: 'none' cannot be combined with other values")
    max_age = c.get("max_age")
    # ASCII digits only (str.isdigit() also takes "²"), and no more than ~317 years, which timedelta holds.
    if max_age and not (max_age.isascii() and max_age.isdigit() and len(max_age) <= 10):
        raise c.fail("invalid_request", f"Invalid max_age value {json.dumps(max_age)}")
    c.prompts = frozenset(prompts)
    c.force_approval = c.get("approval_prompt") == "force" or "consent" in prompts


async def check_session(c: _Check) -> None:
    """May the browser's session stand in for a login (OIDC Core 3.1.2.1: prompt, max_age,
    id_token_hint)? prompt=none needs a yes, else login_required."""
    assert c.client is not None
    c.reuse = _reusable(c)
    if "none" in c.prompts and c.reuse is None:
        raise c.fail("login_required", "User not authenticated")


def _reusable(c: _Check) -> BrowserSession | None:
    assert c.client is not None
    session = c.session
    if session is None or c.prompts & {"login", "select_account"}:
        return None
    max_age = c.get("max_age")
    if max_age and c.deps.clock.now() - session.auth_time > timedelta(seconds=int(max_age)):
        return None
    if not connector_allowed(c.client, session.connector_id) or session.connector_id not in c.snap.connectors:
        return None
    if not session_satisfies(c.snap, c.client, session):
        return None  # its login did not pass a second factor this client asks for
    if c.get("connector_id") and c.get("connector_id") != session.connector_id:
        return None
    hint = c.get("id_token_hint")
    if hint:
        claims = verify_hint(c.deps, c.snap, hint)
        if claims is None or claims["sub"] != encode_sub(session.claims.user_id, session.connector_id):
            return None  # another user, or a hint we did not issue: log in again
    return session


Step = Callable[[_Check], Awaitable[None]]

# The table: each step reads what the ones before it established. The first two answer with a page
# (no trustworthy redirect URI yet); every later one redirects the error to the client.
CHECKS: tuple[Step, ...] = (
    check_client,
    check_redirect_uri,
    check_connector_id,
    check_request_object,
    check_pkce,
    check_scopes,
    check_response_type,
    check_prompt,
    check_session,
)


async def validate_authorize(
    deps: Deps, snap: Snapshot, params: Mapping[str, str], session: BrowserSession | None = None
) -> AuthorizeRequest:
    """Run every check; raises DisplayedError or RedirectError for the first one that fails.
    `session` is the browser's SSO session, if it has one."""
    c = _Check(deps, snap, params, session=session)
    for step in CHECKS:
        await step(c)
    assert c.client is not None
    return AuthorizeRequest(
        client=c.client,
        redirect_uri=c.redirect_uri,
        state=c.get("state"),
        nonce=c.get("nonce"),
        scopes=c.scopes,
        response_types=c.response_types,
        connector_id=c.get("connector_id"),
        pkce=c.pkce,
        force_approval=c.force_approval,
        prompt=" ".join(sorted(c.prompts)),
        session=c.reuse,
    )


async def store_auth_request(
    deps: Deps, snap: Snapshot, req: AuthorizeRequest, connector_id: str
) -> AuthRequest:
    """Persist a validated request for a login through `connector_id`."""
    lifetime: timedelta = snap.config.expiry.auth_requests
    auth_req = AuthRequest(
        id=new_id(),
        client_id=req.client.id,
        response_types=req.response_types,
        scopes=req.scopes,
        redirect_uri=req.redirect_uri,
        expiry=deps.clock.now() + lifetime,
        nonce=req.nonce,
        state=req.state,
        force_approval_prompt=req.force_approval,
        connector_id=connector_id,
        pkce=req.pkce,
        hmac_key=new_hmac_key(),
        prompt=req.prompt,
    )
    if req.session is not None:
        # SSO: the session's login stands in for a new one.
        auth_req = replace(
            auth_req, logged_in=True, claims=req.session.claims, connector_data=req.session.connector_data,
            auth_time=req.session.auth_time, session_id=req.session.id,
        )
    await deps.storage.auth_requests.create(auth_req)
    return auth_req
