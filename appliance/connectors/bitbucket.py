"""The `bitbucket-cloud` connector: Bitbucket Cloud logins, workspaces as groups (Dex's keys)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from appliance.clock import Clock, SystemClock
from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.schemas import BITBUCKET as SCHEMA
from appliance.connectors.social_config import filter_groups, read_config
from appliance.connectors.social_http import (
    MAX_PAGES,
    OAuth2App,
    OAuthSession,
    TrustStore,
    UpstreamDenied,
    callback_code,
    check_redirect,
    json_object,
    oauth_session,
    text,
)
from appliance.connectors.social_token import dump_token_data, keeping_renewed, load_token_data
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.bitbucket")

WHO = "bitbucket"
SCOPES = ("account", "email")
_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


@dataclass(frozen=True)
class BitbucketEndpoints:
    """Bitbucket Cloud's fixed endpoints (tests point them at a fake)."""

    auth_url: str = "https://bitbucket.org/site/oauth2/authorize"
    token_url: str = "https://bitbucket.org/site/oauth2/access_token"  # noqa: S105 (a URL, not a secret)
    api_url: str = "https://api.bitbucket.org/2.0"


BITBUCKET = BitbucketEndpoints()


@dataclass(frozen=True)
class BitbucketConfig:
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    teams: tuple[str, ...] = ()
    get_workspace_permissions: bool = False


def parse_config(config: Mapping[str, Any]) -> BitbucketConfig:
    reader = read_config(WHO, config, _KEYS)
    cfg = BitbucketConfig(
        client_id=reader.required("clientID"),
        client_secret=reader.required("clientSecret"),
        redirect_uri=reader.required("redirectURI"),
        teams=reader.strings("teams"),
        get_workspace_permissions=reader.boolean("getWorkspacePermissions"),
    )
    if reader.boolean("includeTeamGroups"):
        log.warning("bitbucket: includeTeamGroups has no effect: the Bitbucket 1.0 API it used is gone "
                    "(Dex ignores it too); see getWorkspacePermissions")
    reader.check()
    return cfg


class BitbucketConnector:
    """Logs in with Bitbucket Cloud; implements CallbackConnector and RefreshConnector."""

    def __init__(
        self, connector_id: str, cfg: BitbucketConfig, endpoints: BitbucketEndpoints = BITBUCKET,
        clock: Clock | None = None,
    ) -> None:
        self.id = connector_id
        self.cfg = cfg
        self.endpoints = endpoints
        self.clock = clock or SystemClock()
        self.trust = TrustStore()

    def __repr__(self) -> str:
        return f"BitbucketConnector(id={self.id!r})"

    def _groups_required(self, scopes: Scopes) -> bool:
        return bool(self.cfg.teams or scopes.groups)

    def _app(self) -> OAuth2App:
        # Bitbucket sends the browser to the callback registered with the consumer: Dex names none.
        return OAuth2App(
            client_id=self.cfg.client_id, client_secret=self.cfg.client_secret,
            auth_url=self.endpoints.auth_url, token_url=self.endpoints.token_url,
            redirect_uri=self.cfg.redirect_uri, send_redirect_uri=False,
        )

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        check_redirect(WHO, self.cfg.redirect_uri, callback_url)
        return self._app().login_url(SCOPES, state)

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        code = callback_code(WHO, params)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            token = await session.exchange(code)
            user = await self._user(session)
            identity = Identity(user_id=text(user.get("uuid")), email_verified=True)
            identity = await self._fill(session, scopes, identity, user)
        if scopes.offline_access:
            identity = replace(identity, connector_data=dump_token_data(token))
        return identity

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        stored = load_token_data(WHO, identity.connector_data)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            token, renewed = await session.fresh(stored)
            with keeping_renewed(dump_token_data(token) if renewed else None):
                refreshed = await self._fill(session, scopes, identity, await self._user(session))
        if renewed:
            refreshed = replace(refreshed, connector_data=dump_token_data(token))
        return refreshed

    async def _user(self, session: OAuthSession) -> dict[str, Any]:
        user = json_object(WHO, await session.json("GET", f"{self.endpoints.api_url}/user"), "/user")
        if not text(user.get("uuid")):
            raise ConnectorError("bitbucket: /user has no uuid")
        return user

    async def _fill(
        self, session: OAuthSession, scopes: Scopes, identity: Identity, user: dict[str, Any]
    ) -> Identity:
        username = text(user.get("username"))
        identity = replace(identity, username=username, email=await self._email(session))
        if self._groups_required(scopes):
            identity = replace(identity, groups=await self._groups(session, scopes, username))
        return identity

    async def _pages(self, session: OAuthSession, path: str) -> list[dict[str, Any]]:
        """A Bitbucket paged list: {"values": [...], "next": "<url>"} until there is no next."""
        values: list[dict[str, Any]] = []
        url: str | None = f"{self.endpoints.api_url}{path}"
        for _ in range(MAX_PAGES):
            if url is None:
                return values
            page = json_object(WHO, await session.json("GET", url), path)
            values.extend(item for item in page.get("values") or [] if isinstance(item, dict))
            link = page.get("next")
            url = None
            if isinstance(link, str) and link:
                url = session.same_origin(self.endpoints.api_url, link)
        raise ConnectorError(f"bitbucket: {path}: more than {MAX_PAGES} pages")

    async def _email(self, session: OAuthSession) -> str:
        for entry in await self._pages(session, "/user/emails"):
            if entry.get("is_primary") is True and entry.get("is_confirmed") is True:
                return text(entry.get("email"))
        raise UpstreamDenied("bitbucket: user has no confirmed, primary email")

    async def _groups(self, session: OAuthSession, scopes: Scopes, username: str) -> tuple[str, ...]:
        workspaces: list[str] = []
        for access in await self._pages(session, "/user/workspaces"):
            workspace = access.get("workspace")
            slug = text(workspace.get("slug")) if isinstance(workspace, dict) else ""
            if slug:
                workspaces.append(slug)
        found = list(workspaces)
        if self.cfg.get_workspace_permissions:
            for slug in workspaces:
                role = await self._permission(session, slug)
                if role:
                    found.append(f"{slug}:{role}")
        if self.cfg.teams:
            allowed = filter_groups(found, self.cfg.teams)
            if not allowed:
                raise UserNotInRequiredGroupsError(
                    f"bitbucket: user {username!r} is not in any of the required teams"
                )
            return allowed
        return tuple(found) if scopes.groups else ()

    async def _permission(self, session: OAuthSession, slug: str) -> str:
        url = f"{self.endpoints.api_url}/user/workspaces/{quote(slug, safe='')}/permission"
        try:
            answer = json_object(WHO, await session.json("GET", url), "workspace permission")
        except ConnectorError as exc:  # Dex leaves the suffix out and logs it
            log.warning("bitbucket: no permission for workspace %s, suffix skipped: %s", slug, exc)
            return ""
        return text(answer.get("permission"))


def open_bitbucket(
    connector_id: str, config: Mapping[str, Any], *, endpoints: BitbucketEndpoints = BITBUCKET,
    clock: Clock | None = None,
) -> BitbucketConnector:
    """The `bitbucket-cloud` factory. `endpoints` points Bitbucket's fixed hosts elsewhere (tests)."""
    return BitbucketConnector(connector_id, parse_config(config), endpoints, clock)
