"""Client authentication at the token endpoint (RFC 6749 2.3.1): client_secret_basic and _post."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from appliance.errors import OAuthError
from appliance.oidc.challenge import ChallengeError
from appliance.oidc.deps import Deps, Snapshot
from appliance.store.models import Client

# A '%' not followed by two hex digits: Go's url.QueryUnescape refuses it, and so do we.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str
    method: str  # "client_secret_basic" | "client_secret_post"

    def __repr__(self) -> str:  # the secret stays out of logs
        return f"ClientCredentials(client_id={self.client_id!r}, method={self.method!r})"


def _form_unescape(value: str, what: str) -> str:
    if _BAD_ESCAPE.search(value):
        raise OAuthError("invalid_request", f"{what} improperly encoded")
    return unquote_plus(value, errors="strict")


def _basic(authorization: str) -> tuple[str, str] | None:
    """(id, secret) still URL-encoded, from `Basic base64(id:secret)`; None when it is not one
    (like Go's Request.BasicAuth, which then leaves the form to speak)."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def parse_client_credentials(form: Mapping[str, str], authorization: str) -> ClientCredentials:
    """The credentials of a token request: HTTP Basic (form-URL-decoded, RFC 6749 2.3.1) if present,
    else client_id/client_secret in the body."""
    basic = _basic(authorization) if authorization else None
    if basic is not None:
        try:
            client_id = _form_unescape(basic[0], "client_id")
            secret = _form_unescape(basic[1], "client_secret")
        except UnicodeDecodeError:
            raise OAuthError("invalid_request", "client credentials improperly encoded") from None
        return ClientCredentials(client_id, secret, "client_secret_basic")
    return ClientCredentials(form.get("client_id", ""), form.get("client_secret", ""), "client_secret_post")


def secret_matches(client: Client, presented: str) -> bool:
    """Constant-time comparison; a public client has no secret and must send none."""
    return hmac.compare_digest(client.secret.encode(), presented.encode())


async def authenticate_client(deps: Deps, snap: Snapshot, creds: ClientCredentials) -> Client:
    """The authenticated client, or invalid_client (401; with a Basic challenge when Basic was used)."""
    challenge = 'Basic realm="portico"' if creds.method == "client_secret_basic" else ""
    client = await deps.find_client(snap, creds.client_id)
    if client is None or not secret_matches(client, creds.client_secret):
        raise ChallengeError("invalid_client", "Invalid client credentials.", 401, challenge)
    return client
