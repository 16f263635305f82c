"""RP-initiated logout at /logout: the confirmation page, ending the SSO session, the way back."""

from __future__ import annotations

from quart import Blueprint, Response, request

from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.logout import LogoutRequest, check_logout, logout
from appliance.web import csrf
from appliance.web.responses import Pages, redirect, request_snapshot
from appliance.web.sessioncookie import clear_session_cookie, current_session

_PARAMS = ("id_token_hint", "post_logout_redirect_uri", "state", "client_id")


def logout_routes(deps: Deps, pages: Pages) -> Blueprint:
    bp = Blueprint("logout", __name__)

    async def done(snap: Snapshot, checked: LogoutRequest) -> Response:
        if checked.redirect:
            response = redirect(checked.redirect, 303)
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
        await logout(deps, snap, session)
        return await done(snap, checked)

    return bp
