"""Google Workspace groups: a service account's JWT bearer grant (RFC 7523), the Admin SDK Directory API."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from appliance.clock import Clock
from appliance.connectors.social_http import (
    MAX_PAGES,
    TrustStore,
    Upstream,
    json_object,
    plain_upstream,
    text,
)
from appliance.connectors.social_token import UpstreamToken, token_from_response
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.google")

WHO = "google"
DIRECTORY_SCOPE = "https://www.googleapis.com/auth/admin.directory.group.readonly"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a secret)
WILDCARD_DOMAIN = "*"
_ASSERTION_LIFETIME = timedelta(hours=1)  # the longest Google accepts


@dataclass(frozen=True)
class ServiceAccount:
    """The parts of a service account key file that the JWT bearer grant needs."""

    client_email: str
    private_key_id: str
    token_uri: str
    private_key: RSAKey = field(repr=False)


def load_service_account(path: str) -> ServiceAccount:
    """A `service_account` key file, read and checked (ValueError says what is wrong with it)."""
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ValueError(f"{path} is not JSON") from None
    if not isinstance(raw, dict) or raw.get("type") != "service_account":
        raise ValueError(f"{path} is not a service account key file (type must be service_account)")
    email, key_pem = text(raw.get("client_email")), text(raw.get("private_key"))
    if not email or not key_pem:
        raise ValueError(f"{path} lacks client_email or private_key")
    try:
        key = RSAKey.import_key(key_pem)
    except (JoseError, ValueError, TypeError):
        raise ValueError(f"{path}: private_key is not an RSA private key") from None
    if not key.is_private:
        raise ValueError(f"{path}: private_key is not an RSA private key")
    token_uri = text(raw.get("token_uri")) or DEFAULT_TOKEN_URI
    return ServiceAccount(email, text(raw.get("private_key_id")), token_uri, key)


def default_credentials_path() -> str:
    """Application default credentials, as far as Portico supports them: GOOGLE_APPLICATION_CREDENTIALS."""
    return os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")


def domain_of(email: str) -> str:
    """The part after the last "@", or "*" for something that is not an address (Dex's rule)."""
    at = email.rfind("@")
    return email[at + 1:] if at >= 0 else WILDCARD_DOMAIN


class Directory:
    """Lists a user's groups, impersonating the Workspace admin configured for the user's domain."""

    def __init__(
        self, account: ServiceAccount, domain_to_admin: Mapping[str, str], directory_url: str,
        trust: TrustStore, clock: Clock,
    ) -> None:
        self.account = account
        self.domain_to_admin = dict(domain_to_admin)
        self.directory_url = directory_url.rstrip("/")
        self.trust = trust
        self.clock = clock
        # Access tokens per impersonated admin; a process-local cache only (any replica can mint its own).
        self._tokens: dict[str, UpstreamToken] = {}

    def admin_for(self, email: str) -> str:
        admin = self.domain_to_admin.get(domain_of(email)) or self.domain_to_admin.get(WILDCARD_DOMAIN)
        if not admin:
            raise ConnectorError(
                f"google: no domainToAdminEmail entry for domain {domain_of(email)!r} and no '*' entry"
            )
        return admin

    def _assertion(self, admin: str) -> str:
        now = self.clock.now()
        claims = {
            "iss": self.account.client_email, "scope": DIRECTORY_SCOPE, "aud": self.account.token_uri,
            "iat": int(now.timestamp()), "exp": int((now + _ASSERTION_LIFETIME).timestamp()), "sub": admin,
        }
        header = {"alg": "RS256", "typ": "JWT"}
        if self.account.private_key_id:
            header["kid"] = self.account.private_key_id
        return jwt.encode(header, claims, self.account.private_key, algorithms=["RS256"])

    async def _token(self, upstream: Upstream, admin: str) -> str:
        cached = self._tokens.get(admin)
        if cached is not None and cached.usable(self.clock.now()):
            return cached.access_token
        form = {"grant_type": JWT_BEARER, "assertion": self._assertion(admin)}
        answer = json_object(
            WHO, await upstream.json("POST", self.account.token_uri, data=form), "service account token"
        )
        token = token_from_response(answer, self.clock.now())
        if not token.access_token:
            raise ConnectorError("google: the service account token response has no access_token")
        self._tokens[admin] = token
        return token.access_token

    async def groups(self, email: str, transitive: bool) -> list[str]:
        """The emails of the groups `email` belongs to (and, if `transitive`, those groups' groups)."""
        async with plain_upstream(WHO, self.trust) as upstream:
            seen: set[str] = set()
            return await self._groups(upstream, email, transitive, seen)

    async def _groups(self, upstream: Upstream, key: str, transitive: bool, seen: set[str]) -> list[str]:
        token = await self._token(upstream, self.admin_for(key))
        found: list[str] = []
        page_token = ""
        for _ in range(MAX_PAGES):
            params = {"userKey": key}
            if page_token:
                params["pageToken"] = page_token
            answer = json_object(WHO, await upstream.json(
                "GET", f"{self.directory_url}/admin/directory/v1/groups", params=params,
                headers={"Authorization": f"Bearer {token}"},
            ), "directory groups")
            for group in answer.get("groups") or []:
                group_email = text(group.get("email")) if isinstance(group, dict) else ""
                if not group_email or group_email in seen:
                    continue
                seen.add(group_email)
                found.append(group_email)
                if transitive:  # the groups of a group: the API takes a group's email as userKey too
                    found.extend(await self._groups(upstream, group_email, transitive, seen))
            page_token = text(answer.get("nextPageToken"))
            if not page_token:
                return found
        raise ConnectorError(f"google: the groups of {quote(key)} span more than {MAX_PAGES} pages")
