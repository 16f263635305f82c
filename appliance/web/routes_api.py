"""The machine-facing endpoints: discovery, keys, token, userinfo, health, and the page assets."""

from __future__ import annotations

import asyncio
import logging

from quart import Blueprint, Response, request, send_file
from werkzeug.exceptions import NotFound as HTTPNotFound

from appliance.keys.errors import KeysNotLoaded
from appliance.oidc.deps import Deps
from appliance.oidc.revoke import revoke
from appliance.oidc.token import TokenEndpoint
from appliance.web.fastpath_shared import HEALTH_TYPE, MachineCalls, form_values, health
from appliance.web.responses import Pages, json_response, request_snapshot

log = logging.getLogger("portico.web")


def api_routes(deps: Deps, pages: Pages, token_endpoint: TokenEndpoint) -> Blueprint:
    bp = Blueprint("api", __name__)
    # The same calls as the fast path's (appliance/web/fastpath.py answers these three endpoints
    # in production; these routes answer when it hands a request over, and in tests).
    calls = MachineCalls(deps, token_endpoint)

    @bp.route("/.well-known/openid-configuration", methods=["GET"])
    async def discovery() -> Response:
        return Response(request_snapshot(deps).discovery, content_type="application/json")

    @bp.route("/keys", methods=["GET"])
    async def keys() -> Response:
        try:
            body = deps.keys.jwks_bytes()
        except KeysNotLoaded:
            log.error("the JWKS was asked for before the signing keys were loaded")
            raise
        response = Response(body, content_type="application/json")
        response.headers["Cache-Control"] = "max-age=600, must-revalidate"
        return response

    @bp.route("/token", methods=["POST"])
    async def token() -> Response:
        form = form_values((await request.form).items(multi=True))
        body = await calls.token(request_snapshot(deps), form, request.headers.get("Authorization", ""),
                                 request.scope, request.headers.get)
        return json_response(body, no_store=True)

    @bp.route("/token/introspect", methods=["POST"])
    async def token_introspect() -> Response:
        form = form_values((await request.form).items(multi=True))
        body = await calls.introspect(request_snapshot(deps), form, request.headers.get("Authorization", ""),
                                      request.scope, request.headers.get)
        return json_response(body, no_store=True)

    @bp.route("/token/revoke", methods=["POST"])
    async def token_revoke() -> Response:
        form = await request.form
        await revoke(
            deps, request_snapshot(deps), {key: value for key, value in form.items()},
            request.headers.get("Authorization", ""),
        )
        return json_response({}, no_store=True)

    @bp.route("/userinfo", methods=["GET", "POST"])
    async def user_info() -> Response:
        claims = await calls.userinfo(request_snapshot(deps), request.headers.get("Authorization", ""),
                                      request.scope, request.headers.get)
        return json_response(claims, no_store=True)

    @bp.route("/healthz", methods=["GET"])
    async def healthz() -> Response:
        status, text = await health(deps)
        return Response(text, status=status, content_type=HEALTH_TYPE)

    async def asset(kind: str, path: str) -> Response:
        renderer = await pages.renderer(request_snapshot(deps))
        found = await asyncio.to_thread(renderer.static_file, kind, path)
        if found is None:
            raise HTTPNotFound()
        response = await send_file(found)
        # Pages link assets with ?v=<content hash>: such a URL never changes content.
        response.headers["Cache-Control"] = (
            "public, max-age=31536000, immutable" if request.args.get("v") else "public, max-age=3600"
        )
        return response

    @bp.route("/static/<path:path>", methods=["GET"])
    async def static_asset(path: str) -> Response:
        return await asset("static", path)

    @bp.route("/theme/<path:path>", methods=["GET"])
    async def theme_asset(path: str) -> Response:
        return await asset("theme", path)

    return bp
