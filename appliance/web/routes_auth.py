"""The browser side of the code flow: /auth, the connector logins, /callback and /approval."""

from __future__ import annotations

from dataclasses import asdict
from urllib.parse import quote, urlencode

from quart import Blueprint, Response, request

from appliance.errors import DisplayedError
from appliance.oidc.approval import (
    AuthResult,
    after_login,
    approval_page,
    complete,
    deny,
    load_approval,
    needs_approval,
)
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.login import (
    handle_callback,
    load_password_login,
    pick_connector,
    start_login,
    submit_password,
)
from appliance.web import csrf
from appliance.web.responses import Pages, redirect, request_snapshot

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

    async def finish(snap: Snapshot, result: AuthResult) -> Response:
        if result.oob_code:
            return await pages.page(snap, "oob.html", code=result.oob_code)
        return redirect(result.redirect, 303)

    @bp.route("/auth", methods=["GET", "POST"])
    async def authorize() -> Response:
        snap = request_snapshot(deps)
        picker = await pick_connector(deps, snap, await _args_and_form())
        if picker.redirect:
            return redirect(picker.redirect, 302)
        return await pages.page(
            snap, "login.html", client_name=picker.client_name,
            connectors=[asdict(choice) for choice in picker.choices],
        )

    @bp.route("/auth/<connector_id>", methods=["GET"])
    async def connector_login(connector_id: str) -> Response:
        snap = request_snapshot(deps)
        target = await start_login(deps, snap, connector_id, _first(list(request.args.items(multi=True))))
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
            form = await _check_csrf(snap)
            username = form.get("login", "")
            auth_req = await submit_password(deps, snap, login, username, form.get("password", ""))
            if auth_req is not None:
                return await finish(snap, await after_login(deps, snap, auth_req))
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
        auth_req = await handle_callback(deps, snap, connector_id, params)
        return await finish(snap, await after_login(deps, snap, auth_req))

    @bp.route("/approval", methods=["GET", "POST"])
    async def approval() -> Response:
        snap = request_snapshot(deps)
        if request.method == "POST":
            form = await _check_csrf(snap)
            auth_req = await load_approval(deps, snap, form.get("req", ""), form.get("hmac", ""))
            if form.get("approval") != "approve":
                raise await deny(deps, auth_req)
            return await finish(snap, await complete(deps, snap, auth_req))
        auth_req = await load_approval(deps, snap, request.args.get("req", ""), request.args.get("hmac", ""))
        if not needs_approval(snap, auth_req):
            return await finish(snap, await complete(deps, snap, auth_req))
        page = await approval_page(deps, snap, auth_req)
        return await pages.form_page(
            snap, request, "approval.html", post_url=snap.issuer.abs_path("/approval"),
            client_name=page.client_name, scopes=page.scopes, req=auth_req.id, hmac=page.hmac,
        )

    return bp
