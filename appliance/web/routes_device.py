"""The device flow's pages and endpoint (RFC 8628): /device/code, /device, /device/auth/verify_code,
/device/callback."""

from __future__ import annotations

from quart import Blueprint, Response, request

from appliance.errors import DisplayedError
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.device import device_authorize, device_callback, verify_user_code
from appliance.security.clientip import ClientAddress
from appliance.web import csrf
from appliance.web.responses import Pages, json_response, redirect, request_snapshot


def device_routes(deps: Deps, pages: Pages) -> Blueprint:
    bp = Blueprint("device", __name__)
    addresses = ClientAddress()

    def rate_limit(snap: Snapshot, name: str) -> None:
        client_ip = addresses.of_scope(snap.config.web.client_remote_ip, request.scope, request.headers.get)
        deps.protection.rate_limit(snap.config.security, name, client_ip)

    @bp.route("/device/code", methods=["POST"])
    async def device_code() -> Response:
        snap = request_snapshot(deps)
        rate_limit(snap, "device_code")
        form = await request.form
        body = await device_authorize(
            deps, snap, {key: value for key, value in form.items()}, request.headers.get("Authorization", "")
        )
        return json_response(body, no_store=True)

    @bp.route("/device", methods=["GET"])
    async def device_page() -> Response:
        snap = request_snapshot(deps)
        return await pages.form_page(
            snap, request, "device.html", post_url=snap.issuer.abs_path("/device/auth/verify_code"),
            user_code=request.args.get("user_code", "")[:32], invalid=False,
        )

    @bp.route("/device/auth/verify_code", methods=["POST"])
    async def verify_code() -> Response:
        snap = request_snapshot(deps)
        rate_limit(snap, "login")  # user codes can be guessed like passwords
        form = await request.form
        if not csrf.valid(request, form.get(csrf.FIELD), snap.issuer.secure):
            raise DisplayedError("Bad request", "The form has expired or did not come from this site. "
                                 "Go back, reload and try again.", 400)
        user_code = form.get("user_code", "")
        target = await verify_user_code(deps, snap, user_code)
        if target is None:
            return await pages.form_page(
                snap, request, "device.html", 400, post_url=snap.issuer.abs_path("/device/auth/verify_code"),
                user_code=user_code[:32], invalid=True,
            )
        return redirect(target, 302)

    @bp.route("/device/callback", methods=["GET"])
    async def callback() -> Response:
        snap = request_snapshot(deps)
        params = {key: value for key, value in request.args.items()}
        client_name = await device_callback(deps, snap, params)
        return await pages.page(snap, "device_success.html", client_name=client_name)

    return bp
