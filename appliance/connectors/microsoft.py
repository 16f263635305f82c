"""The `microsoft` connector: Microsoft Entra ID / personal accounts, groups through Graph (Dex's keys)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from appliance.clock import Clock, SystemClock
from appliance.connectors.base import GrantRevokedError, Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.schemas import MICROSOFT as SCHEMA
from appliance.connectors.social_config import filter_groups, read_config
from appliance.connectors.social_http import (
    MAX_PAGES,
    OAuth2App,
    OAuthSession,
    TrustStore,
    callback_code,
    check_redirect,
    json_object,
    maybe_json,
    oauth_session,
    text,
)
from appliance.connectors.social_token import dump_token_data, keeping_renewed, load_token_data
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.microsoft")

WHO = "microsoft"
SCOPE_USER = "user.read"
SCOPE_GROUPS = "directory.read.all"
SCOPE_OFFLINE = "offline_access"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Graph's /directoryObjects/getByIds takes at most this many ids per request.
MAX_IDS_PER_LOOKUP = 1000
_SHARED_TENANTS = ("common", "consumers", "organizations")
_USER_FIELDS = "id,displayName,userPrincipalName,mailNickname,onPremisesSamAccountName"
_PREFERRED_FIELDS = {"name": "displayName", "email": "userPrincipalName", "mailNickname": "mailNickname",
                     "onPremisesSamAccountName": "onPremisesSamAccountName"}
_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


@dataclass(frozen=True)
class MicrosoftConfig:
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    client_assertion: str = ""  # a file holding a signed JWT (workload identity), sent instead of the secret
    tenant: str = "common"
    only_security_groups: bool = False
    groups: tuple[str, ...] = ()
    group_name_format: str = "name"
    use_groups_as_whitelist: bool = False
    email_to_lowercase: bool = False
    batch_group_lookups: bool = False
    api_url: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    prompt_type: str = ""
    domain_hint: str = ""
    scopes: tuple[str, ...] = ()
    preferred_username_field: str = ""


def parse_config(config: Mapping[str, Any]) -> MicrosoftConfig:
    reader = read_config(WHO, config, _KEYS)
    assertion = reader.string("clientAssertion")
    cfg = MicrosoftConfig(
        client_id=reader.required("clientID"),
        client_secret=reader.string("clientSecret") if assertion else reader.required("clientSecret"),
        redirect_uri=reader.required("redirectURI"),
        client_assertion=assertion,
        tenant=reader.string("tenant") or "common",
        only_security_groups=reader.boolean("onlySecurityGroups"),
        groups=reader.strings("groups"),
        group_name_format=reader.choice("groupNameFormat", ("", "name", "id")) or "name",
        use_groups_as_whitelist=reader.boolean("useGroupsAsWhitelist"),
        email_to_lowercase=reader.boolean("emailToLowercase"),
        batch_group_lookups=reader.boolean("batchGroupLookups"),
        api_url=(reader.string("apiURL") or "https://login.microsoftonline.com").rstrip("/"),
        graph_url=(reader.string("graphURL") or "https://graph.microsoft.com").rstrip("/"),
        prompt_type=reader.string("promptType"),
        domain_hint=reader.string("domainHint"),
        scopes=reader.strings("scopes"),
        preferred_username_field=reader.choice("preferredUsernameField", ("", *_PREFERRED_FIELDS)),
    )
    reader.check()
    return cfg


class MicrosoftConnector:
    """Logs in through the Microsoft identity platform v2.0; CallbackConnector and RefreshConnector."""

    def __init__(self, connector_id: str, cfg: MicrosoftConfig, clock: Clock | None = None) -> None:
        self.id = connector_id
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.trust = TrustStore()

    def __repr__(self) -> str:
        return f"MicrosoftConnector(id={self.id!r}, tenant={self.cfg.tenant!r})"

    def _org_tenant(self) -> bool:
        return self.cfg.tenant not in _SHARED_TENANTS

    def _groups_required(self, scopes: Scopes) -> bool:
        # Group membership exists only in an organisation's own tenant: never for common/consumers.
        return bool(self.cfg.groups or scopes.groups) and self._org_tenant()

    def _app(self) -> OAuth2App:
        base = f"{self.cfg.api_url}/{self.cfg.tenant}/oauth2/v2.0"
        return OAuth2App(
            client_id=self.cfg.client_id, client_secret=self.cfg.client_secret,
            auth_url=f"{base}/authorize", token_url=f"{base}/token", redirect_uri=self.cfg.redirect_uri,
            auth_method="none" if self.cfg.client_assertion else "auto",
        )

    def _scopes(self, scopes: Scopes) -> list[str]:
        wanted = list(self.cfg.scopes or (SCOPE_USER,))
        if self._groups_required(scopes):
            wanted.append(SCOPE_GROUPS)
        if scopes.offline_access:
            wanted.append(SCOPE_OFFLINE)
        return wanted

    async def _assertion(self) -> dict[str, str]:
        """client_assertion parameters, read afresh each time: the file is a short-lived projected token."""
        if not self.cfg.client_assertion:
            return {}
        try:
            value = await asyncio.to_thread(Path(self.cfg.client_assertion).read_text)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConnectorError(f"microsoft: failed to read client assertion: {reason}") from None
        return {"client_assertion": value.strip(), "client_assertion_type": CLIENT_ASSERTION_TYPE}

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        check_redirect(WHO, self.cfg.redirect_uri, callback_url)
        extra = {}
        if self.cfg.prompt_type:
            extra["prompt"] = self.cfg.prompt_type
        if self.cfg.domain_hint:
            extra["domain_hint"] = self.cfg.domain_hint
        return self._app().login_url(self._scopes(scopes), state, extra)

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        code = callback_code(WHO, params)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            token = await session.exchange(code, **await self._assertion())
            user = await self._user(session)
            identity = Identity(user_id=text(user.get("id")), email_verified=True)
            identity = await self._fill(session, scopes, identity, user)
        if scopes.offline_access:
            identity = replace(identity, connector_data=dump_token_data(token))
        return identity

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        stored = load_token_data(WHO, identity.connector_data)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            extra = await self._assertion() if not stored.usable(self.clock.now()) else {}
            token, renewed = await session.fresh(stored, **extra)
            with keeping_renewed(dump_token_data(token) if renewed else None):
                refreshed = await self._fill(session, scopes, identity, await self._user(session))
        if renewed:
            refreshed = replace(refreshed, connector_data=dump_token_data(token))
        return refreshed

    async def _user(self, session: OAuthSession) -> dict[str, Any]:
        response = await session.request(
            "GET", f"{self.cfg.graph_url}/v1.0/me", params={"$select": _USER_FIELDS}, expect=range(100, 600)
        )
        body = maybe_json(response)
        if response.status_code != 200:
            raise graph_failure("get user", response.status_code, body)
        return json_object(WHO, body, "/v1.0/me")

    async def _fill(
        self, session: OAuthSession, scopes: Scopes, identity: Identity, user: dict[str, Any]
    ) -> Identity:
        email = text(user.get("userPrincipalName"))
        if self.cfg.email_to_lowercase:
            email = email.lower()
        preferred = ""
        if self.cfg.preferred_username_field:
            preferred = text(user.get(_PREFERRED_FIELDS[self.cfg.preferred_username_field]))
        identity = replace(identity, username=text(user.get("displayName")), email=email,
                           preferred_username=preferred)
        if self._groups_required(scopes):
            identity = replace(identity, groups=await self._groups(session, text(user.get("id"))))
        return identity

    async def _post_pages(self, session: OAuthSession, url: str, body: dict[str, Any]) -> list[Any]:
        """A Graph POST action whose answer pages through @odata.nextLink (the body is sent again)."""
        values: list[Any] = []
        next_url: str | None = url
        for _ in range(MAX_PAGES):
            if next_url is None:
                return values
            response = await session.request("POST", next_url, json=body, expect=range(100, 600))
            answer = maybe_json(response)
            if response.status_code != 200:
                raise graph_failure("get groups", response.status_code, answer)
            answer = json_object(WHO, answer, url)
            page = answer.get("value")
            values.extend(page if isinstance(page, list) else [])
            link = answer.get("@odata.nextLink")
            next_url = session.same_origin(url, link) if isinstance(link, str) and link else None
        raise ConnectorError(f"microsoft: {url}: more than {MAX_PAGES} pages")

    async def _groups(self, session: OAuthSession, user_id: str) -> tuple[str, ...]:
        ids = [item for item in await self._post_pages(
            session, f"{self.cfg.graph_url}/v1.0/me/getMemberGroups",
            {"securityEnabledOnly": self.cfg.only_security_groups},
        ) if isinstance(item, str)]
        groups = ids if self.cfg.group_name_format == "id" else await self._names(session, ids)
        allowed = filter_groups(groups, self.cfg.groups)
        if self.cfg.groups and not allowed:
            raise UserNotInRequiredGroupsError(
                f"microsoft: user {user_id!r} is not in any of the required groups"
            )
        return allowed if self.cfg.use_groups_as_whitelist else tuple(groups)

    async def _names(self, session: OAuthSession, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        # One request for every id unless batching is on: Dex's default, which fails past 1000 groups.
        size = MAX_IDS_PER_LOOKUP if self.cfg.batch_group_lookups else len(ids)
        names: list[str] = []
        for start in range(0, len(ids), size):
            found = await self._post_pages(
                session, f"{self.cfg.graph_url}/v1.0/directoryObjects/getByIds",
                {"ids": list(ids[start:start + size]), "types": ["group"]},
            )
            names.extend(text(item.get("displayName")) for item in found if isinstance(item, dict))
        return names


def graph_error(status: int, body: object) -> str:
    """Graph's error object ({"error": {"code", "message"}}) as one line."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"HTTP {status}: {text(error.get('code'))}: {text(error.get('message'))}"
    return f"HTTP {status}"


def graph_failure(what: str, status: int, body: object) -> ConnectorError:
    """A failed Graph call; a 401 (InvalidAuthenticationToken: the token was revoked, the account
    disabled or deleted) ends the grant, anything else may pass."""
    kind = GrantRevokedError if status == 401 else ConnectorError
    return kind(f"microsoft: {what}: {graph_error(status, body)}")


def open_microsoft(
    connector_id: str, config: Mapping[str, Any], *, clock: Clock | None = None
) -> MicrosoftConnector:
    """The `microsoft` factory (tests point Dex's own apiURL and graphURL keys at a fake)."""
    return MicrosoftConnector(connector_id, parse_config(config), clock)
