"""The `gitea` connector: Gitea (or Forgejo) logins, orgs and teams as groups (Dex's keys)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.clock import Clock, SystemClock
from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.schemas import GITEA as SCHEMA
from appliance.connectors.social_config import Org, read_config, unique
from appliance.connectors.social_http import (
    MAX_PAGES,
    OAuth2App,
    OAuthSession,
    TrustStore,
    callback_code,
    check_redirect,
    json_list,
    json_object,
    oauth_session,
    text,
)
from appliance.connectors.social_token import dump_token_data, keeping_renewed, load_token_data
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.gitea")

WHO = "gitea"
TEAMS_PER_PAGE = 20
_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


@dataclass(frozen=True)
class GiteaConfig:
    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    orgs: tuple[Org, ...] = ()
    load_all_groups: bool = False
    use_login_as_id: bool = False


def parse_config(config: Mapping[str, Any]) -> GiteaConfig:
    reader = read_config(WHO, config, _KEYS)
    cfg = GiteaConfig(
        base_url=(reader.string("baseURL") or "https://gitea.com").rstrip("/"),
        client_id=reader.required("clientID"),
        client_secret=reader.required("clientSecret"),
        redirect_uri=reader.required("redirectURI"),
        orgs=reader.orgs(SCHEMA.names("orgs")),
        load_all_groups=reader.boolean("loadAllGroups"),
        use_login_as_id=reader.boolean("useLoginAsID"),
    )
    reader.check()
    return cfg


class GiteaConnector:
    """Logs in through Gitea's OAuth 2.0 provider; implements CallbackConnector and RefreshConnector."""

    def __init__(self, connector_id: str, cfg: GiteaConfig, clock: Clock | None = None) -> None:
        self.id = connector_id
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.trust = TrustStore()

    def __repr__(self) -> str:
        return f"GiteaConnector(id={self.id!r}, base_url={self.cfg.base_url!r})"

    def _groups_required(self) -> bool:
        # Dex asks Gitea for groups when orgs or loadAllGroups say so, whatever the client's scopes.
        return bool(self.cfg.orgs or self.cfg.load_all_groups)

    def _app(self) -> OAuth2App:
        return OAuth2App(
            client_id=self.cfg.client_id, client_secret=self.cfg.client_secret,
            auth_url=f"{self.cfg.base_url}/login/oauth/authorize",
            token_url=f"{self.cfg.base_url}/login/oauth/access_token", redirect_uri=self.cfg.redirect_uri,
        )

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        check_redirect(WHO, self.cfg.redirect_uri, callback_url)
        return self._app().login_url((), state)

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        code = callback_code(WHO, params)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            token = await session.exchange(code)
            user = await self._user(session)
            user_id = user.get("id")
            if not isinstance(user_id, int) or isinstance(user_id, bool):
                raise ConnectorError("gitea: /api/v1/user has no numeric id")
            login = text(user.get("login"))
            identity = Identity(
                user_id=login if self.cfg.use_login_as_id else str(user_id), email_verified=True
            )
            identity = await self._fill(session, identity, user)
        if scopes.offline_access:
            identity = replace(identity, connector_data=dump_token_data(token))
        return identity

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        stored = load_token_data(WHO, identity.connector_data)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            token, renewed = await session.fresh(stored)
            with keeping_renewed(dump_token_data(token) if renewed else None):
                refreshed = await self._fill(session, identity, await self._user(session))
        if renewed:
            refreshed = replace(refreshed, connector_data=dump_token_data(token))
        return refreshed

    async def _user(self, session: OAuthSession) -> dict[str, Any]:
        return json_object(WHO, await session.json("GET", f"{self.cfg.base_url}/api/v1/user"), "/api/v1/user")

    async def _fill(self, session: OAuthSession, identity: Identity, user: dict[str, Any]) -> Identity:
        email = text(user.get("email"))
        identity = replace(identity, username=text(user.get("full_name")) or email,
                           preferred_username=text(user.get("login")), email=email)
        if self._groups_required():
            groups = await self._all_groups(session)
            identity = replace(identity, groups=self._allowed(groups) if self.cfg.orgs else groups)
        return identity

    async def _all_groups(self, session: OAuthSession) -> tuple[str, ...]:
        """"org" and "org:team" for every team of the user (/api/v1/user/teams, page by page)."""
        groups: list[str] = []
        page = 1
        url: str | None = f"{self.cfg.base_url}/api/v1/user/teams?page=1&limit={TEAMS_PER_PAGE}"
        for _ in range(MAX_PAGES):
            if url is None:
                return unique(groups)
            response = await session.request("GET", url)
            teams = json_list(WHO, session.decode(response), "/api/v1/user/teams")
            for team in teams:
                org = team.get("organization") if isinstance(team, dict) else None
                org_name = text(org.get("username")) if isinstance(org, dict) else ""
                if org_name:
                    groups += [org_name, f"{org_name}:{text(team.get('name'))}"]
            # Gitea sends a Link header with rel="next"; without one, ask until a page comes back empty.
            if "link" in response.headers:
                url = session.next_link(response)
            elif teams:
                page += 1
                url = f"{self.cfg.base_url}/api/v1/user/teams?page={page}&limit={TEAMS_PER_PAGE}"
            else:
                url = None
        raise ConnectorError(f"gitea: /api/v1/user/teams: more than {MAX_PAGES} pages")

    def _allowed(self, groups: tuple[str, ...]) -> tuple[str, ...]:
        """The groups `orgs` lists: a listed org itself, and "org:team" for each listed team."""
        keys = {org.name for org in self.cfg.orgs}
        keys |= {f"{org.name}:{team}" for org in self.cfg.orgs for team in org.teams}
        allowed = tuple(group for group in groups if group in keys)
        if not allowed:
            raise UserNotInRequiredGroupsError("gitea: user does not belong to any of the approved groups")
        return allowed


def open_gitea(connector_id: str, config: Mapping[str, Any], *, clock: Clock | None = None) -> GiteaConnector:
    """The `gitea` factory (tests point baseURL at a fake)."""
    return GiteaConnector(connector_id, parse_config(config), clock)
