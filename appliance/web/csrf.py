"""CSRF protection of the login and approval forms: a double-submitted random token."""

from __future__ import annotations

import hmac
import re
import secrets

from quart import Request, Response

# The token travels in a cookie and in a hidden input; a POST must carry both, equal. SameSite=Lax
# already keeps the cookie off cross-site POSTs; the __Host- prefix (https only) stops a sibling
# subdomain from planting a cookie of its own.
FIELD = "csrf_token"
_COOKIE_PLAIN = "portico_csrf"
_COOKIE_SECURE = "__Host-portico_csrf"
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def cookie_name(secure: bool) -> str:
    return _COOKIE_SECURE if secure else _COOKIE_PLAIN


def _usable(value: str | None) -> bool:
    return bool(value) and _TOKEN_SHAPE.fullmatch(value or "") is not None


def issue(request: Request, secure: bool) -> tuple[str, bool]:
    """The token for a form on this page: the browser's current one, or a new one.
    Returns (token, whether the cookie must be set)."""
    current = request.cookies.get(cookie_name(secure))
    if current is not None and _usable(current):
        return current, False
    return secrets.token_urlsafe(32), True


def set_cookie(response: Response, token: str, secure: bool) -> None:
    # Session cookie (no Max-Age): it lives as long as the browser session, like the forms using it.
    response.set_cookie(
        cookie_name(secure), token, path="/", secure=secure, httponly=True, samesite="Lax"
    )


def valid(request: Request, submitted: str | None, secure: bool) -> bool:
    """Does the form's token equal the cookie's? Constant time; missing or malformed never passes."""
    cookie = request.cookies.get(cookie_name(secure))
    if not _usable(cookie) or not _usable(submitted):
        return False
    assert cookie is not None and submitted is not None
    return hmac.compare_digest(cookie.encode(), submitted.encode())
