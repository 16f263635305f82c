"""The `google` connector: Google sign-in (OpenID Connect), hosted domains, Workspace groups (Dex's keys)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from appliance.clock import Clock, SystemClock
from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError, UserRefusedError
from appliance.connectors.schemas import GOOGLE as SCHEMA
from appliance.connectors.social_config import filter_groups, read_config
from appliance.connectors.social_gdirectory import (
    WILDCARD_DOMAIN,
    Directory,
    ServiceAccount,
    default_credentials_path,
    load_service_account,
)
from appliance.connectors.social_http import (
    OAuth2App,
    TrustStore,
    UpstreamDenied,
    callback_code,
    check_redirect,
    json_object,
    oauth_session,
    plain_upstream,
    text,
)
from appliance.connectors.social_token import UpstreamToken
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.google")

WHO = "google"
# Clock skew tolerated on the ID token's exp/iat (go-oidc allows none on exp; Google's clocks are good,
# ours may not be).
LEEWAY_SECONDS = 60
_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


@dataclass(frozen=True)
class GoogleEndpoints:
    """Google's fixed OpenID Connect and Directory endpoints (tests point them at a fake)."""

    issuer: str = "https://accounts.google.com"
    auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a secret)
    jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    directory_url: str = "https://admin.googleapis.com"

    def issuers(self) -> list[str]:
        # Google's ID tokens say "https://accounts.google.com" or, from older flows, the bare host.
        if self.issuer == "https://accounts.google.com":
            return [self.issuer, "accounts.google.com"]
        return [self.issuer]


GOOGLE = GoogleEndpoints()


@dataclass(frozen=True)
class GoogleConfig:
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    hosted_domains: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    service_account: ServiceAccount | None = None
    domain_to_admin: Mapping[str, str] = field(default_factory=dict)
    transitive_groups: bool = False
    prompt_type: str = "consent"


def parse_config(config: Mapping[str, Any]) -> GoogleConfig:
    reader = read_config(WHO, config, _KEYS)
    extra_scopes = reader.strings("scopes")
    domain_to_admin = reader.string_map("domainToAdminEmail")
    admin_email = reader.string("adminEmail")
    if admin_email:
        log.warning('google: "adminEmail" is deprecated; use "domainToAdminEmail: {"*": ...}"')
        domain_to_admin[WILDCARD_DOMAIN] = admin_email
    account_path = reader.string("serviceAccountFilePath")
    account = None
    if account_path and not domain_to_admin:
        reader.problem("serviceAccountFilePath", "the directory service requires domainToAdminEmail as well")
    elif domain_to_admin:
        # Without a key file Dex falls back to application default credentials; Portico reads the
        # key file that GOOGLE_APPLICATION_CREDENTIALS names (the metadata server is not supported).
        path = account_path or default_credentials_path()
        if not path:
            reader.problem("domainToAdminEmail", "needs serviceAccountFilePath (or "
                           "GOOGLE_APPLICATION_CREDENTIALS naming a service account key file)")
        else:
            try:
                account = load_service_account(path)
            except ValueError as exc:
                reader.problem("serviceAccountFilePath", str(exc))
    cfg = GoogleConfig(
        client_id=reader.required("clientID"),
        client_secret=reader.required("clientSecret"),
        redirect_uri=reader.required("redirectURI"),
        scopes=("openid", *(extra_scopes or ("profile", "email"))),
        hosted_domains=reader.strings("hostedDomains"),
        groups=reader.strings("groups"),
        service_account=account,
        domain_to_admin=domain_to_admin,
        transitive_groups=reader.boolean("fetchTransitiveGroupMembership"),
        # An explicit promptType, even "", is sent as is; absent, "consent" (so Google sends a refresh token).
        prompt_type=reader.string("promptType") if reader.has("promptType") else "consent",
    )
    reader.check()
    return cfg


class GoogleConnector:
    """Logs in with Google's OpenID Connect provider; implements CallbackConnector and RefreshConnector."""

    def __init__(
        self, connector_id: str, cfg: GoogleConfig, endpoints: GoogleEndpoints = GOOGLE,
        clock: Clock | None = None, trust: TrustStore | None = None,
    ) -> None:
        self.id = connector_id
        self.cfg = cfg
        self.endpoints = endpoints
        self.clock = clock or SystemClock()
        self.trust = trust or TrustStore()
        self.directory = None
        if cfg.service_account is not None:
            self.directory = Directory(
                cfg.service_account, cfg.domain_to_admin, endpoints.directory_url, self.trust, self.clock
            )
        self._keys: KeySet | None = None

    def __repr__(self) -> str:
        return f"GoogleConnector(id={self.id!r})"

    def _app(self) -> OAuth2App:
        return OAuth2App(
            client_id=self.cfg.client_id, client_secret=self.cfg.client_secret,
            auth_url=self.endpoints.auth_url, token_url=self.endpoints.token_url,
            redirect_uri=self.cfg.redirect_uri,
        )

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        check_redirect(WHO, self.cfg.redirect_uri, callback_url)
        extra: dict[str, str] = {}
        if self.cfg.hosted_domains:
            # Google's account chooser takes one domain; several are checked after login instead.
            extra["hd"] = self.cfg.hosted_domains[0] if len(self.cfg.hosted_domains) == 1 else "*"
        if scopes.offline_access:
            extra.update(access_type="offline", prompt=self.cfg.prompt_type)
        return self._app().login_url(self.cfg.scopes, state, extra)

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        code = callback_code(WHO, params)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            token = await session.exchange(code)
        return await self._identity(scopes, token, Identity(user_id=""))

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        refresh_token = (identity.connector_data or b"").decode()
        if not refresh_token:
            raise UserRefusedError("google: no upstream refresh token found")
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            token = await session.refresh(refresh_token)
        return await self._identity(scopes, token, identity)

    async def _identity(self, scopes: Scopes, token: UpstreamToken, previous: Identity) -> Identity:
        if not token.id_token:
            raise ConnectorError("google: no id_token in token response")
        claims = await self._verify(token.id_token)
        # Google may leave the name out of a refreshed ID token: keep the one we had (as Dex does).
        name = text(claims.get("name")) or previous.username
        email = text(claims.get("email"))
        if self.cfg.hosted_domains and claims.get("hd") not in self.cfg.hosted_domains:
            raise UpstreamDenied(f"google: unexpected hd claim {claims.get('hd')!r}")
        groups: tuple[str, ...] = ()
        if scopes.groups and self.directory is not None:
            found = await self.directory.groups(email, self.cfg.transitive_groups)
            groups = tuple(found)
            if self.cfg.groups:
                groups = filter_groups(found, self.cfg.groups)
                if not groups:
                    raise UserNotInRequiredGroupsError(
                        f"google: user {name!r} is not in any of the required groups"
                    )
        return Identity(
            user_id=text(claims.get("sub")),
            username=name,
            email=email,
            email_verified=claims.get("email_verified") is True,
            groups=groups,
            connector_data=token.refresh_token.encode() or None,
        )

    async def _jwks(self, refetch: bool) -> KeySet:
        if self._keys is None or refetch:
            async with plain_upstream(WHO, self.trust) as upstream:
                answer = json_object(WHO, await upstream.json("GET", self.endpoints.jwks_url), "JWKS")
            try:
                self._keys = KeySet.import_key_set(answer)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                raise ConnectorError("google: the JWKS cannot be read") from None
        return self._keys

    async def _verify(self, raw: str) -> dict[str, Any]:
        """The claims of Google's ID token: signed by a current Google key, for us, unexpired."""
        token = None
        for refetch in (False, True):  # a key we do not know yet: Google rotated, fetch the set again
            try:
                token = jwt.decode(raw, await self._jwks(refetch), algorithms=["RS256"])
                break
            except JoseError as exc:
                if refetch:
                    raise ConnectorError(f"google: failed to verify ID Token: {exc.error}") from None
            except ValueError:
                raise ConnectorError("google: failed to verify ID Token: malformed") from None
        assert token is not None
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self.clock.now().timestamp()), leeway=LEEWAY_SECONDS,
            iss={"essential": True, "values": self.endpoints.issuers()},
            aud={"essential": True, "value": self.cfg.client_id},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(token.claims)
        except JoseError as exc:
            reason = f"{exc.error}: {exc.description}"
            raise ConnectorError(f"google: failed to verify ID Token: {reason}") from None
        return dict(token.claims)


def open_google(
    connector_id: str, config: Mapping[str, Any], *, endpoints: GoogleEndpoints = GOOGLE,
    clock: Clock | None = None,
) -> GoogleConnector:
    """The `google` factory. `endpoints` points Google's fixed hosts elsewhere (tests)."""
    return GoogleConnector(connector_id, parse_config(config), endpoints, clock)
