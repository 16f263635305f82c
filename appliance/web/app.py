"""The Quart application: routes under the issuer's path, and the one place errors become responses."""

from __future__ import annotations

import contextlib
import logging

from quart import Quart, Response, g, request
from werkzeug.exceptions import HTTPException

from appliance.errors import ConnectorError, DisplayedError, OAuthError, RedirectError
from appliance.oidc.deps import Deps
from appliance.oidc.token import TokenEndpoint
from appliance.security.ratelimit import RateLimited
from appliance.telemetry.context import NO_REQUEST, RequestIds, request_id_var
from appliance.web.headers import SECURITY_HEADERS
from appliance.web.responses import (
    Pages,
    apply_cors,
    json_response,
    oauth_error_response,
    redirect_error_response,
    request_snapshot,
)
from appliance.web.routes_api import api_routes
from appliance.web.routes_auth import auth_routes
from appliance.web.routes_device import device_routes
from appliance.web.routes_logout import logout_routes

log = logging.getLogger("portico.web")

# Endpoints that answer in JSON (errors too), and those browsers may call from other origins.
_JSON_ENDPOINTS = (
    "/token", "/token/introspect", "/token/revoke", "/device/code", "/userinfo", "/keys",
    "/.well-known/openid-configuration",
)
_CORS_ENDPOINTS = _JSON_ENDPOINTS
MAX_BODY_BYTES = 64 * 1024  # token and login requests are small; larger bodies are refused (413)


def create_app(deps: Deps, *, token_endpoint: TokenEndpoint | None = None) -> Quart:
    """The public app. The route prefix is the issuer's path when the app is built (changing the
    issuer needs a restart); everything else is read from `deps.snapshot` once per request."""
    app = Quart("appliance.web", static_folder=None, template_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    pages = Pages()
    prefix = deps.snapshot.issuer.path
    json_paths = {prefix + path for path in _JSON_ENDPOINTS}
    cors_paths = {prefix + path for path in _CORS_ENDPOINTS}

    app.register_blueprint(auth_routes(deps, pages), url_prefix=prefix or None)
    tokens = token_endpoint or TokenEndpoint()
    app.register_blueprint(api_routes(deps, pages, tokens), url_prefix=prefix or None)
    app.register_blueprint(device_routes(deps, pages), url_prefix=prefix or None)
    app.register_blueprint(logout_routes(deps, pages), url_prefix=prefix or None)

    @app.before_serving
    async def warm_up() -> None:
        # The templates are compiled when the app starts (at its build, under `portico serve`: web/lazy.py),
        # so a broken frontend folder fails its start rather than each request.
        await pages.renderer(deps.snapshot)

    new_request_id = RequestIds()

    @app.before_request
    async def tag_request() -> None:
        # The telemetry middleware's id when it runs (it never takes a client's), else our own: a
        # counter behind a random prefix, no system call per request.
        current = request_id_var.get()
        g.request_id = current if current != NO_REQUEST else new_request_id()
        request_snapshot(deps)  # pin the configuration for the whole request

    @app.after_request
    async def add_headers(response: Response) -> Response:
        await _drain_unread_body()
        snap = request_snapshot(deps)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        for name, value in snap.config.web.headers.items():
            response.headers[name] = value
        if request.path in cors_paths:
            apply_cors(request, response, snap)
        response.headers["X-Request-Id"] = getattr(g, "request_id", "")
        return response

    @app.errorhandler(Exception)
    async def on_error(exc: Exception) -> Response:
        snap = request_snapshot(deps)
        rid = getattr(g, "request_id", "-")
        wants_json = request.path in json_paths
        if isinstance(exc, RedirectError):
            log.info("[%s] %s: redirecting error %s to the client", rid, request.path, exc.error.error)
            return redirect_error_response(exc)
        if isinstance(exc, OAuthError):
            log.info("[%s] %s: %s %s", rid, request.path, exc.error, exc.description)
            if wants_json:
                return oauth_error_response(exc)
            if isinstance(exc, RateLimited):  # a form posted too often: a page, and when to come back
                page = await pages.error(snap, "Too many requests", "Too many attempts from your network. "
                                         f"Please wait {exc.retry_after} seconds, then try again.", 429)
                page.headers["Retry-After"] = str(exc.retry_after)
                return page
            return await pages.error(snap, "Bad request", exc.description or exc.error, exc.status)
        if isinstance(exc, DisplayedError):
            log.info("[%s] %s: %s: %s", rid, request.path, exc.title, exc.message)
            return await pages.error(snap, exc.title, exc.message, exc.status)
        if isinstance(exc, ConnectorError):
            # The detail goes to the log only: it may name upstream hosts or accounts.
            log.warning("[%s] %s: connector failed: %s", rid, request.path, exc)
            if wants_json:
                return json_response({"error": "server_error"}, 502, no_store=True)
            return await pages.error(snap, "Login failed", "The login service did not answer as expected. "
                                     "Please try again later.", 502)
        if isinstance(exc, HTTPException):
            status = exc.code or 500
            if wants_json:
                error = "invalid_request" if status < 500 else "server_error"
                return json_response({"error": error}, status, no_store=True)
            return await pages.error(snap, exc.name, _http_message(status), status)
        log.exception("[%s] %s: internal error", rid, request.path, exc_info=exc)
        if wants_json:
            return json_response({"error": "server_error"}, 500, no_store=True)
        return await pages.error(snap, "Internal Server Error", "Something went wrong on our side.", 500)

    return app


async def _drain_unread_body() -> None:
    """Read a body that the route never read (a 404, a 405, an early error), within the size limit.

    A server that answers before the body has arrived closes the connection, and a client still
    sending it may lose the answer to a reset; read, the connection answers and stays usable.
    Already-read bodies come from the cache at no cost."""
    length = request.content_length
    if length and length <= (request.max_content_length or MAX_BODY_BYTES):
        with contextlib.suppress(Exception):
            await request.get_data()


def _http_message(status: int) -> str:
    if status == 404:
        return "Requested resource does not exist."
    if status == 405:
        return "Unsupported request method."
    if status == 413:
        return "The request is too large."
    return "The request could not be handled."
