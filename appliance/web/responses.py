"""Turning protocol results and errors into HTTP responses: pages, JSON, redirects, headers, CORS."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from quart import Request, Response, g

from appliance.errors import OAuthError, RedirectError
from appliance.oidc.deps import Deps, Snapshot
from appliance.web import csrf
from appliance.web.headers import oauth_error_headers
from appliance.web.render import LiveRenderer, Renderer

log = logging.getLogger("portico.web")

_HTML = "text/html; charset=utf-8"


def request_snapshot(deps: Deps) -> Snapshot:
    """The snapshot this request uses: read from `deps` once, when the request starts, then pinned
    (a reload in the middle of a request never mixes two configurations)."""
    snap: Snapshot | None = getattr(g, "snapshot", None)
    if snap is None:
        snap = deps.snapshot
        g.snapshot = snap
    return snap


class Pages:
    """Renders pages with the renderer of the current snapshot's frontend settings and files (rebuilt
    when a reload changes either: see LiveRenderer)."""

    def __init__(self) -> None:
        self._live = LiveRenderer()

    async def renderer(self, snap: Snapshot) -> Renderer:
        version = str(snap.extra.get("frontend_version", ""))  # set by the reloader
        return await self._live.get(snap.config.frontend, snap.issuer.path, version)

    async def page(self, snap: Snapshot, template: str, http_status: int = 200, **context: Any) -> Response:
        html = (await self.renderer(snap)).render(template, **context)
        response = Response(html, status=http_status, content_type=_HTML)
        # Pages carry form tokens and one-time links: never cache them.
        response.headers["Cache-Control"] = "no-store"
        return response

    async def form_page(
        self, snap: Snapshot, request: Request, template: str, http_status: int = 200, **context: Any
    ) -> Response:
        """A page with a form: adds `csrf_token` and sets its cookie when the browser has none."""
        token, fresh = csrf.issue(request, snap.issuer.secure)
        response = await self.page(snap, template, http_status, csrf_token=token, **context)
        if fresh:
            csrf.set_cookie(response, fresh, snap.issuer.secure)
        return response

    async def error(self, snap: Snapshot, title: str, message: str, status: int) -> Response:
        return await self.page(snap, "error.html", status, title=title, message=message, status=status)


def json_response(body: object, status: int = 200, *, no_store: bool = False) -> Response:
    response = Response(json.dumps(body), status=status, content_type="application/json")
    if no_store:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


def oauth_error_response(exc: OAuthError) -> Response:
    """RFC 6749 5.2 error body; a description only for 4xx (server faults are never described)."""
    response = json_response(exc.as_dict(), exc.status, no_store=True)
    for name, value in oauth_error_headers(exc):
        response.headers[name] = value
    return response


def redirect(location: str, status: int = 302) -> Response:
    response = Response("", status=status)
    response.headers["Location"] = location
    return response


def redirect_error_response(exc: RedirectError) -> Response:
    """The error back to the client's (already validated) redirect URI (RFC 6749 4.1.2.1)."""
    params = [("error", exc.error.error)]
    if exc.error.description and exc.error.status < 500:
        params.append(("error_description", exc.error.description))
    if exc.state:
        params.append(("state", exc.state))
    parts = urlsplit(exc.redirect_uri)
    if exc.fragment:
        target = urlunsplit(parts._replace(fragment=urlencode(params)))
    else:
        kept = parse_qsl(parts.query, keep_blank_values=True)
        target = urlunsplit(parts._replace(query=urlencode(kept + params)))
    return redirect(target, 303)


def apply_cors(request: Request, response: Response, snap: Snapshot) -> None:
    """CORS for the endpoints browsers call from other origins (web.allowedOrigins, allowedHeaders)."""
    origin = request.headers.get("Origin")
    allowed = snap.config.web.allowed_origins
    if not origin or not allowed:
        return
    if "*" not in allowed and origin not in allowed:
        return
    response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
    response.headers.add("Vary", "Origin")
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        headers = list(snap.config.web.allowed_headers or ("Authorization",))
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = ", ".join(
            ["Accept", "Accept-Language", "Content-Language", "Content-Type", "Origin", *headers]
        )
        response.headers["Access-Control-Max-Age"] = "600"
