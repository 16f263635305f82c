"""The browser side of the code flow: /auth, the connector logins, /callback and /approval."""

from __future__ import annotations

from dataclasses import asdict
from urllib.parse import quote, urlencode

from quart import Blueprint, Quart, Response, request
from quart.blueprints import BlueprintSetupState

from appliance.connectors.base import SAMLPost
from appliance.errors import DisplayedError
from appliance.mfa.flow import step_url
from appliance.oidc.approval import (
    AuthResult,
    after_login,
    approval_needed,
    approval_page,
    complete,
    deny,
    load_approval,
)
from appliance.oidc.consent import remember_consent
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.login import (
    handle_callback,
    load_password_login,
    pick_connector,
    start_login,
    submit_password,
)
from appliance.oidc.sessions import start_session
from appliance.security.clientip import ClientAddress
from appliance.store.models import AuthRequest
from appliance.web import csrf
from appliance.web.responses import Pages, redirect, request_snapshot
from appliance.web.routes_mfa import mfa_routes
from appliance.web.routes_saml import saml_post_page, saml_routes
from appliance.web.sessioncookie import current_session, set_session_cookie
from appliance.web.upstream_edge import refusals_shown, strip_untrusted_headers

_CSRF_FAILED = DisplayedError(
    "Bad request", "The form has expired or did not come from this site. Go back, reload and try again.",
    400,
)


async def _args_and_form() -> list[tuple[str, str]]:
    """The query, then (for POST) the form body: /auth accepts both (OIDC Core 3.1.2.1)."""
    params = list(request.args.items(multi=True))
    if request.method == "POST":
        form = await request.form
        params += list(form.items(multi=True))
    return params


def _headers() -> dict[str, str]:
    """The request's headers by lowercase name, the first of repeated ones (as Go's Header.Get)."""
    found: dict[str, str] = {}
    for name, value in request.headers.items():
        found.setdefault(name.lower(), value)
    return found


def _first(params: list[tuple[str, str]]) -> dict[str, str]:
    # A repeated parameter counts once, its first value (RFC 6749 3.1 forbids repeats; Go takes the first).
    out: dict[str, str] = {}
    for key, value in params:
        out.setdefault(key, value)
    return out


async def _check_csrf(snap: Snapshot) -> dict[str, str]:
    form = await request.form
    if not csrf.valid(request, form.get(csrf.FIELD), snap.issuer.secure):
        raise _CSRF_FAILED
    return {key: value for key, value in form.items()}


def auth_routes(deps: Deps, pages: Pages) -> Blueprint:
    bp = Blueprint("auth", __name__)
    addresses = ClientAddress()

    async def finish(snap: Snapshot, result: AuthResult) -> Response:
        if result.oob_code:
            return await pages.page(snap, "oob.html", code=result.oob_code)
        return redirect(result.redirect, 303)

    async def logged_in(snap: Snapshot, auth_req: AuthRequest) -> Response:
        """A fresh login: start the SSO session (its cookie replaces any earlier one), then go on."""
        if auth_req.mfa_pending:  # a second factor first (appliance.mfa)
            return redirect(step_url(snap, auth_req), 303)
        auth_req, cookie = await start_session(deps, auth_req)
        response = await finish(snap, await after_login(deps, snap, auth_req))
        set_session_cookie(response, snap, cookie)
        return response

    @bp.route("/auth", methods=["GET", "POST"])
    async def authorize() -> Response:
        snap = request_snapshot(deps)
        session = await current_session(deps, snap, request)
        picker = await pick_connector(deps, snap, await _args_and_form(), session)
        if picker.sso is not None:
            return await finish(snap, await after_login(deps, snap, picker.sso))
        if picker.redirect:
            return redirect(picker.redirect, 302)
        return await pages.page(
            snap, "login.html", client_name=picker.client_name,
            connectors=[asdict(choice) for choice in picker.choices],
        )

    @bp.route("/auth/<connector_id>", methods=["GET"])
    async def connector_login(connector_id: str) -> Response:
        snap = request_snapshot(deps)
        session = await current_session(deps, snap, request)
        target = await start_login(
            deps, snap, connector_id, _first(list(request.args.items(multi=True))), session
        )
        if isinstance(target, AuthRequest):
            return await finish(snap, await after_login(deps, snap, target))
        if isinstance(target, SAMLPost):
            return await saml_post_page(pages, snap, target)
        return redirect(target, 302)

    @bp.route("/auth/<connector_id>/login", methods=["GET", "POST"])
    async def password_login(connector_id: str) -> Response:
        snap = request_snapshot(deps)
        state = request.args.get("state", "")
        login = await load_password_login(deps, snap, connector_id, state)
        post_url = (f"{snap.issuer.abs_path('/auth', quote(connector_id, safe=''), 'login')}"
                    f"?{urlencode({'state': state})}")
        username = ""
        if request.method == "POST":
            client_ip = addresses.of_scope(snap.config.web.client_remote_ip, request.scope,
                                           request.headers.get)
            deps.protection.rate_limit(snap.config.security, "login", client_ip)
            form = await _check_csrf(snap)
            username = form.get("login", "")
            auth_req = await refusals_shown(
                submit_password(deps, snap, login, username, form.get("password", ""), client_ip)
            )
            if auth_req is not None:
                return await logged_in(snap, auth_req)
        return await pages.form_page(
            snap, request, "password.html", post_url=post_url, username_prompt=login.prompt,
            username=username, invalid=request.method == "POST", back_url=login.back_url,
            client_name=login.client_name,
        )

    @bp.route("/callback", methods=["GET"])
    @bp.route("/callback/<connector_id>", methods=["GET"])
    async def callback(connector_id: str | None = None) -> Response:
        snap = request_snapshot(deps)
        params = _first(list(request.args.items(multi=True)))
        auth_req = await refusals_shown(handle_callback(deps, snap, connector_id, params, _headers()))
        return await logged_in(snap, auth_req)

    @bp.route("/approval", methods=["GET", "POST"])
    async def approval() -> Response:
        snap = request_snapshot(deps)
        if request.method == "POST":
            form = await _check_csrf(snap)
            auth_req = await load_approval(deps, snap, form.get("req", ""), form.get("hmac", ""))
            if form.get("approval") != "approve":
                raise await deny(deps, auth_req)
            if form.get("remember") == "on":  # the checkbox (unchecked unless the user ticks it)
                await remember_consent(deps, auth_req)
            return await finish(snap, await complete(deps, snap, auth_req))
        auth_req = await load_approval(deps, snap, request.args.get("req", ""), request.args.get("hmac", ""))
        if not await approval_needed(deps, snap, auth_req):
            return await finish(snap, await complete(deps, snap, auth_req))
        page = await approval_page(deps, snap, auth_req)
        return await pages.form_page(
            snap, request, "approval.html", post_url=snap.issuer.abs_path("/approval"),
            client_name=page.client_name, scopes=page.scopes, req=auth_req.id, hmac=page.hmac,
        )

    # Upstream logins at the edge: the SAML POST binding, and authproxy headers trusted on one path only.
    bp.register_blueprint(saml_routes(deps, logged_in))
    bp.register_blueprint(mfa_routes(deps, pages, logged_in))

    def install_header_strip(state: BlueprintSetupState) -> None:
        assert isinstance(state.app, Quart)
        strip_untrusted_headers(state.app, deps)

    bp.record_once(install_header_strip)
    return bp
