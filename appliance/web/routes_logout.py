"""RP-initiated logout at /logout: the confirmation page, ending the SSO session (at the upstream too,
through /logout/callback), the way back."""

from __future__ import annotations

from quart import Blueprint, Response, request

from appliance.errors import DisplayedError
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.logout import LOGOUT_CALLBACK_PATH, check_logout, logout, start_upstream_logout
from appliance.web import csrf
from appliance.web.responses import Pages, redirect, request_snapshot
from appliance.web.sessioncookie import clear_session_cookie, current_session

_PARAMS = ("id_token_hint", "post_logout_redirect_uri", "state", "client_id")


def logout_routes(deps: Deps, pages: Pages) -> Blueprint:
    bp = Blueprint("logout", __name__)

    async def done(snap: Snapshot, target: str) -> Response:
        if target:
            response = redirect(target, 303)
        else:
            response = await pages.page(snap, "logged_out.html")
        clear_session_cookie(response, snap)
        return response

    @bp.route("/logout", methods=["GET", "POST"])
    async def end_session() -> Response:
        snap = request_snapshot(deps)
        params = {key: value for key, value in request.args.items() if key in _PARAMS}
        confirmed = False
        if request.method == "POST":
            form = await request.form
            params.update({key: value for key, value in form.items() if key in _PARAMS})
            # The confirmation form carries a CSRF token; an RP may also POST without one (it then
            # counts as a request, confirmed only by a matching id_token_hint).
            confirmed = csrf.valid(request, form.get(csrf.FIELD), snap.issuer.secure)
        session = await current_session(deps, snap, request)
        checked = await check_logout(deps, snap, params, session)
        if checked.confirm and not confirmed:
            client_name = (checked.client.name or checked.client.id) if checked.client else ""
            return await pages.form_page(
                snap, request, "logout.html", post_url=snap.issuer.abs_path("/logout"),
                client_name=client_name, fields=params,
            )
        if session is not None:
            upstream_url = await start_upstream_logout(deps, snap, session, checked.redirect)
            if upstream_url:
                # The session ends when the upstream sends the browser back to /logout/callback.
                return redirect(upstream_url, 303)
        await logout(deps, snap, session)
        return await done(snap, checked.redirect)

    @bp.route(LOGOUT_CALLBACK_PATH, methods=["GET"])
    async def upstream_logged_out() -> Response:
        # The session cookie (SameSite=Lax: it comes along on the upstream's top-level redirect) says
        # whose logout this is; what the upstream adds to the URL is not needed and not trusted.
        snap = request_snapshot(deps)
        session = await current_session(deps, snap, request)
        if session is None or session.logout_redirect is None:
            raise DisplayedError("Bad request", "No logout in progress.", 400)
        await logout(deps, snap, session)
        return await done(snap, session.logout_redirect)

    return bp
