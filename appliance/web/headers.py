"""Headers the Quart app and the bare-ASGI fast path both send: the security headers of every answer, and
those an OAuth error adds. No framework here, so the fast path serves without importing one."""

from __future__ import annotations

from appliance.errors import OAuthError
from appliance.oidc.challenge import ChallengeError
from appliance.security.ratelimit import RateLimited

__all__ = ["CSP", "SECURITY_HEADERS", "oauth_error_headers"]

# Pages load their CSS and images from us only (no CDN in an air-gapped site) and run no script; a
# configured logo may live elsewhere, hence https: for images. No page may be framed (clickjacking).
CSP = (
    "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def oauth_error_headers(exc: OAuthError) -> list[tuple[str, str]]:
    """What an OAuth error answer carries besides its JSON headers, in this order: the challenge of
    a 401 (RFC 6750 3), and when to come back after a rate limit."""
    headers: list[tuple[str, str]] = []
    if isinstance(exc, ChallengeError) and exc.challenge:
        headers.append(("WWW-Authenticate", exc.challenge))
    if isinstance(exc, RateLimited):
        headers.append(("Retry-After", str(exc.retry_after)))
    return headers
