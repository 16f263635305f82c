"""CSRF protection of the forms: a token bound to the browser's CSRF cookie and to its SSO session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from quart import Request, Response

from appliance.oidc.sessions import cookie_name as session_cookie_name

# The browser holds a random value in an HttpOnly cookie; a form carries HMAC(that value, the browser's
# SSO session cookie). A POST passes only with both cookies as they were when the form was shown:
# - another browser's token fails (its cookie differs), and so does one shown under another SSO session
#   (logged in again, logged out, or a session planted since): the token names the session;
# - no server key is involved, so every replica and every configuration checks the same tokens, across
#   reloads and restarts. A server key would add nothing: what an attacker lacks is the victim's
#   cookies (HttpOnly, never in a page), not a key.
# SameSite=Lax already keeps both cookies off cross-site POSTs; the __Host- prefix (https only) stops a
# sibling subdomain from planting a cookie of its own.
FIELD = "csrf_token"
_COOKIE_PLAIN = "portico_csrf"
_COOKIE_SECURE = "__Host-portico_csrf"
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_CONTEXT = b"portico-csrf-v1\0"
_MAX_SESSION_COOKIE = 400  # longer is nobody's session cookie (sessions.load_session refuses > 200)


def cookie_name(secure: bool) -> str:
    return _COOKIE_SECURE if secure else _COOKIE_PLAIN


def _usable(value: str | None) -> bool:
    return bool(value) and _TOKEN_SHAPE.fullmatch(value or "") is not None


def token_for(browser: str, session_cookie: str = "") -> str:
    """The form token for a browser's CSRF cookie value and its SSO session cookie ("" = none)."""
    bound = session_cookie.encode("utf-8", "replace")[:_MAX_SESSION_COOKIE]
    mac = hmac.new(browser.encode("ascii"), _CONTEXT + bound, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def _session_cookie(request: Request, secure: bool) -> str:
    return request.cookies.get(session_cookie_name(secure)) or ""


def issue(request: Request, secure: bool) -> tuple[str, str | None]:
    """The token for a form on this page, and the CSRF cookie value to set when the browser has none
    (else None)."""
    browser = request.cookies.get(cookie_name(secure))
    fresh = None
    if browser is None or not _usable(browser):
        browser = fresh = secrets.token_urlsafe(32)
    return token_for(browser, _session_cookie(request, secure)), fresh


def set_cookie(response: Response, value: str, secure: bool) -> None:
    # Session cookie (no Max-Age): it lives as long as the browser session, like the forms using it.
    response.set_cookie(
        cookie_name(secure), value, path="/", secure=secure, httponly=True, samesite="Lax"
    )


def valid(request: Request, submitted: str | None, secure: bool) -> bool:
    """Is the form's token the one for this browser's cookies? Constant time; a missing or malformed
    cookie or token never passes."""
    browser = request.cookies.get(cookie_name(secure))
    if browser is None or not _usable(browser) or submitted is None or not _usable(submitted):
        return False
    expected = token_for(browser, _session_cookie(request, secure))
    return hmac.compare_digest(expected.encode(), submitted.encode())
