"""An OAuth 2.0 authorization server (RFC 6749) shared by the fake providers: codes, tokens, clients."""

from __future__ import annotations

import base64
import functools
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

import httpx
from quart import Response, request

DEFAULT_CLIENT_ID = "portico-client"
# Characters that Basic auth must form-encode (RFC 6749 2.3.1), so the escaping is exercised.
DEFAULT_CLIENT_SECRET = "s3cr3t+/=&:%"


@dataclass
class Grant:
    user: str
    scope: str
    redirect_uri: str | None
    expires_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# GitHub's token endpoint answers its refusals with HTTP 200 and its own codes (its docs, "Troubleshooting
# OAuth app access token request errors" and "Refreshing user access tokens"): RFC 6749 code -> GitHub's.
GITHUB_TOKEN_ERRORS = {
    "invalid_client": ("incorrect_client_credentials",
                       "The client_id and/or client_secret passed are incorrect."),
    "bad_code": ("bad_verification_code", "The code passed is incorrect or expired."),
    "bad_refresh": ("bad_refresh_token", "The refresh token passed is incorrect or expired."),
    "redirect_mismatch": ("redirect_uri_mismatch",
                          "The redirect_uri MUST match the registered callback URL for this application."),
    "unsupported_grant_type": ("unsupported_grant_type", "The grant type is not supported."),
}
# The same refusals as RFC 6749 5.2 has them, with the HTTP status each one comes with.
RFC_TOKEN_ERRORS = {
    "invalid_client": ("invalid_client", "", 401),
    "bad_code": ("invalid_grant", "bad code", 400),
    "bad_refresh": ("invalid_grant", "bad refresh token", 400),
    "redirect_mismatch": ("invalid_grant", "redirect_uri", 400),
    "unsupported_grant_type": ("unsupported_grant_type", "", 400),
}


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    import json

    return Response(
        json.dumps(body), status=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


class OAuthServer:
    """The authorization and token endpoints of one provider, and the bearer check of its API.

    `auth_styles` lists the client authentications the token endpoint accepts ("basic", "post", "none").
    A token response may carry extra fields (an id_token) built by `extra_token_fields(grant)`.
    """

    def __init__(
        self,
        redirect_uri: str,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        auth_styles: tuple[str, ...] = ("basic", "post"),
        form_unless_json: bool = False,
        github_errors: bool = False,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.auth_styles = auth_styles
        self.form_unless_json = form_unless_json  # GitHub: form-encoded unless Accept: application/json
        self.github_errors = github_errors  # GitHub: refusals with HTTP 200 and GitHub's error codes
        self.extra_token_fields: Callable[[Grant], dict[str, Any]] = lambda grant: {}
        self.reset()

    def reset(self) -> None:
        self.codes: dict[str, Grant] = {}
        self.access: dict[str, Grant] = {}
        self.refresh: dict[str, Grant] = {}
        self.expires_in: int | None = None
        self.issue_refresh_tokens = False
        self.rotate_refresh_tokens = True
        self.token_failure: int | None = None
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.token_auth_headers: list[str] = []

    # The browser side ---------------------------------------------------------------------------

    async def authorize(self) -> Response:
        """GET /authorize?...&fake_user=<who>: the user "logs in" and the browser goes back with a code."""
        args = dict(request.args)
        self.authorize_requests.append(args)
        if args.get("client_id") != self.client_id:
            return Response("unknown client_id", status=400)
        if args.get("response_type") != "code":
            return Response("unsupported response_type", status=400)
        redirect = args.get("redirect_uri")
        if redirect is not None and redirect != self.redirect_uri:
            return Response("redirect_uri mismatch", status=400)
        user = args.get("fake_user", "")
        target = self.redirect_uri
        if args.get("fake_deny"):
            query = {
                "error": "access_denied",
                "error_description": "The user denied access",
                "state": args.get("state", ""),
            }
            return Response("", status=302, headers={"Location": f"{target}?{urlencode(query)}"})
        code = secrets.token_urlsafe(16)
        self.codes[code] = Grant(user=user, scope=args.get("scope", ""), redirect_uri=redirect)
        query = {"code": code, "state": args.get("state", "")}
        return Response("", status=302, headers={"Location": f"{target}?{urlencode(query)}"})

    # The token endpoint -------------------------------------------------------------------------

    def _client_ok(self, form: Mapping[str, str]) -> bool:
        header = request.headers.get("Authorization", "")
        self.token_auth_headers.append(header.split(" ")[0] if header else "")
        if header.lower().startswith("basic "):
            if "basic" not in self.auth_styles:
                return False
            raw = base64.b64decode(header[6:]).decode()
            user, _, password = raw.partition(":")
            return unquote_plus(user) == self.client_id and unquote_plus(password) == self.client_secret
        if form.get("client_id") != self.client_id:
            return False
        if "client_secret" in form:
            return "post" in self.auth_styles and form["client_secret"] == self.client_secret
        return "none" in self.auth_styles

    def _answer(self, body: dict[str, Any], status: int = 200) -> Response:
        if self.form_unless_json and "application/json" not in request.headers.get("Accept", ""):
            return Response(
                urlencode(body), status=status, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
        return json_response(body, status)

    def _refuse(self, kind: str) -> Response:
        if self.github_errors:
            error, description = GITHUB_TOKEN_ERRORS[kind]
            return self._answer({"error": error, "error_description": description}, 200)
        error, description, status = RFC_TOKEN_ERRORS[kind]
        body = {"error": error, **({"error_description": description} if description else {})}
        return self._answer(body, status)

    def _mint(self, grant: Grant, new_refresh_token: bool = True) -> dict[str, Any]:
        access = secrets.token_urlsafe(16)
        live = Grant(grant.user, grant.scope, grant.redirect_uri, extra=grant.extra)
        body: dict[str, Any] = {"access_token": access, "token_type": "bearer", "scope": grant.scope}
        if self.expires_in is not None:
            live.expires_at = time.time() + self.expires_in
            body["expires_in"] = self.expires_in
        self.access[access] = live
        if self.issue_refresh_tokens and new_refresh_token:
            refresh = secrets.token_urlsafe(16)
            self.refresh[refresh] = live
            body["refresh_token"] = refresh
        body.update(self.extra_token_fields(live))
        return body

    async def token(self) -> Response:
        form = dict((await request.form).items())
        self.token_requests.append(form)
        if self.token_failure is not None:
            return Response("upstream trouble", status=self.token_failure)
        if not self._client_ok(form):
            return self._refuse("invalid_client")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)
            if grant is None:
                return self._refuse("bad_code")
            if grant.redirect_uri is not None and form.get("redirect_uri") != grant.redirect_uri:
                return self._refuse("redirect_mismatch")
            return self._answer(self._mint(grant))
        if grant_type == "refresh_token":
            old = form.get("refresh_token", "")
            grant = self.refresh.get(old)
            if grant is None:
                return self._refuse("bad_refresh")
            if self.rotate_refresh_tokens:
                del self.refresh[old]
            # Without rotation the refresh token stays, and (as Google does) no new one is sent.
            return self._answer(self._mint(grant, new_refresh_token=self.rotate_refresh_tokens))
        return self._refuse("unsupported_grant_type")

    # The resource side --------------------------------------------------------------------------

    def bearer(self) -> Grant | None:
        """The grant behind the request's bearer token, None if absent, unknown or expired."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        grant = self.access.get(value)
        if grant is None or (grant.expires_at is not None and time.time() >= grant.expires_at):
            return None
        return grant

    def revoke(self, user: str) -> None:
        """The user revoked the app, or was removed or disabled upstream: every token of theirs is void
        (the API answers 401, the token endpoint refuses the refresh token)."""
        self.access = {token: grant for token, grant in self.access.items() if grant.user != user}
        self.refresh = {token: grant for token, grant in self.refresh.items() if grant.user != user}

    def expire_access_tokens(self) -> None:
        for grant in self.access.values():
            grant.expires_at = 0.0


@functools.cache
def _context(ca_file: str) -> ssl.SSLContext:
    # Built once: a default httpx client loads the CA bundle anew each time (tens of ms).
    return ssl.create_default_context(cafile=ca_file or None)


async def browse(login_url: str, user: str, *, deny: bool = False, ca_file: str = "") -> dict[str, str]:
    """What a browser does: open the login URL as `user`, return the callback's query parameters."""
    verify = _context(ca_file)
    extra = {"fake_user": user}
    if deny:
        extra["fake_deny"] = "1"
    joiner = "&" if "?" in login_url else "?"
    async with httpx.AsyncClient(verify=verify) as client:
        response = await client.get(login_url + joiner + urlencode(extra))
    assert response.status_code == 302, (response.status_code, response.text)
    return dict(parse_qsl(urlsplit(response.headers["Location"]).query))
