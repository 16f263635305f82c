"""The SAML 2.0 HTTP-POST binding at the web edge: the auto-submitting form to the IdP, and the IdP's
signed answer posted back to /callback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from quart import Blueprint, Quart, Request, Response, request
from quart.blueprints import BlueprintSetupState

from appliance.connectors.base import SAMLPost
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.login import handle_saml_post
from appliance.store.models import AuthRequest
from appliance.web.headers import CSP
from appliance.web.responses import Pages, request_snapshot
from appliance.web.upstream_edge import refusals_shown

# An IdP may post a response of up to saml_xml.MAX_RESPONSE_BYTES (512 KiB) of XML: base64 makes that
# 683 KiB and form encoding ('+', '/', '=' become %XX) a few percent more. Every other body stays small.
SAML_MAX_BODY_BYTES = 1024 * 1024

LoggedIn = Callable[[Snapshot, AuthRequest], Awaitable[Response]]


def form_action_csp(action: str) -> str:
    """The pages' CSP with form-action allowing only the IdP's origin (the form posts there, nowhere else)."""
    parts = urlsplit(action)
    usable = parts.scheme in ("http", "https") and parts.netloc
    source = f"{parts.scheme}://{parts.netloc}" if usable else "'none'"
    kept = [d.strip() for d in CSP.split(";") if d.strip() and not d.strip().startswith("form-action")]
    return "; ".join([*kept, f"form-action {source}"])


async def saml_post_page(pages: Pages, snap: Snapshot, post: SAMLPost) -> Response:
    """The page that posts the AuthnRequest to the IdP: a static script submits it, <noscript> a button."""
    response = await pages.page(
        snap, "saml_post.html", action=post.action, saml_request=post.saml_request,
        relay_state=post.relay_state,
    )
    response.headers["Content-Security-Policy"] = form_action_csp(post.action)
    return response


def _is_callback(prefix: str, method: str, path: str) -> bool:
    callback = prefix + "/callback"
    return method == "POST" and (path == callback or path.startswith(callback + "/"))


def allow_large_saml_posts(app: Quart, prefix: str) -> None:
    """Raise the body limit of POST /callback[/{id}] alone to SAML_MAX_BODY_BYTES.

    Quart fixes a request's body limit when it builds the request (before any route runs), from the
    app-wide MAX_CONTENT_LENGTH; so the request class picks the limit by method and path.
    """
    base: type[Request] = app.request_class

    class SAMLPostRequest(base):  # type: ignore[valid-type,misc]
        def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
            if _is_callback(prefix, method, path):
                kwargs["max_content_length"] = max(kwargs.get("max_content_length") or 0, SAML_MAX_BODY_BYTES)
            super().__init__(method, scheme, path, *args, **kwargs)
            if _is_callback(prefix, method, path):
                # Multipart posts are parsed against these two (urlencoded ones only against the body's).
                self.max_content_length = kwargs["max_content_length"]
                self.max_form_memory_size = SAML_MAX_BODY_BYTES

    app.request_class = SAMLPostRequest


def saml_routes(deps: Deps, logged_in: LoggedIn) -> Blueprint:
    """POST /callback and /callback/{connector}: SAMLResponse and RelayState (the auth request id).

    The IdP's page posts across sites, so no CSRF token and no SameSite cookie can come with it: what
    binds the answer to this login is its signature and its InResponseTo (the connector checks both),
    and the auth request named by RelayState.
    """
    bp = Blueprint("saml", __name__)

    def install(state: BlueprintSetupState) -> None:
        assert isinstance(state.app, Quart)
        allow_large_saml_posts(state.app, deps.snapshot.issuer.path)

    bp.record_once(install)

    @bp.route("/callback", methods=["POST"])
    @bp.route("/callback/<connector_id>", methods=["POST"])
    async def saml_callback(connector_id: str | None = None) -> Response:
        snap = request_snapshot(deps)
        form = await request.form
        auth_req = await refusals_shown(handle_saml_post(
            deps, snap, connector_id, form.get("SAMLResponse", ""), form.get("RelayState", "")
        ))
        return await logged_in(snap, auth_req)

    return bp
