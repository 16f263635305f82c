"""The `github` connector: GitHub and GitHub Enterprise logins, orgs and teams as groups (Dex's keys)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from appliance.clock import Clock, SystemClock
from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.schemas import GITHUB as SCHEMA
from appliance.connectors.social_config import Org, filter_groups, read_config
from appliance.connectors.social_http import (
    MAX_PAGES,
    OAuth2App,
    OAuthSession,
    TrustStore,
    UpstreamDenied,
    callback_code,
    check_redirect,
    json_list,
    json_object,
    oauth_session,
    text,
)
from appliance.connectors.social_token import dump_token_data, keeping_renewed, load_token_data
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.github")

WHO = "github"
SCOPE_EMAIL = "user:email"  # /user and /user/emails
SCOPE_ORGS = "read:org"  # /user/orgs, /user/teams, org membership
API_VERSION = "2022-11-28"  # X-GitHub-Api-Version, pinned as Dex pins it
_TEAM_NAME_FIELDS = ("", "name", "slug", "both")
_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


@dataclass(frozen=True)
class GitHubHosts:
    """Where GitHub lives: the web host (OAuth pages) and the REST API root."""

    web: str
    api: str


GITHUB_COM = GitHubHosts(web="https://github.com", api="https://api.github.com")


def enterprise_hosts(host_name: str) -> GitHubHosts:
    return GitHubHosts(web=f"https://{host_name}", api=f"https://{host_name}/api/v3")


@dataclass(frozen=True)
class GitHubConfig:
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    org: str = ""  # the legacy single `org`: its team names become groups, unprefixed
    orgs: tuple[Org, ...] = ()
    host_name: str = ""
    root_ca: bytes | None = None
    team_name_field: str = ""
    load_all_groups: bool = False
    use_login_as_id: bool = False
    preferred_email_domain: str = ""


def parse_config(config: Mapping[str, Any]) -> GitHubConfig:
    reader = read_config(WHO, config, _KEYS)
    cfg = GitHubConfig(
        client_id=reader.required("clientID"),
        client_secret=reader.required("clientSecret"),
        redirect_uri=reader.required("redirectURI"),
        org=reader.string("org"),
        orgs=reader.orgs(SCHEMA.names("orgs")),
        host_name=reader.string("hostName"),
        root_ca=reader.pem_file("rootCA"),
        team_name_field=reader.choice("teamNameField", _TEAM_NAME_FIELDS),
        load_all_groups=reader.boolean("loadAllGroups"),
        use_login_as_id=reader.boolean("useLoginAsID"),
        preferred_email_domain=reader.string("preferredEmailDomain"),
    )
    if cfg.org and cfg.orgs:
        reader.problem("org", "cannot be used together with orgs")
    if "/" in cfg.host_name:
        reader.problem("hostName", "must be a host name (with an optional port), not a URL or path")
    if reader.has("rootCA") and not cfg.host_name:
        reader.problem("rootCA", "needs hostName (a root CA only applies to GitHub Enterprise)")
    if cfg.preferred_email_domain.endswith("*"):
        reader.problem("preferredEmailDomain", 'a pattern cannot end with "*"')
    reader.check()
    if cfg.org:
        log.warning("github: the legacy key 'org' is used; switch to 'orgs'")
    return cfg


def domain_matches(domain: str, pattern: str) -> bool:
    """preferredEmailDomain: equal, or equal label by label where the pattern's label is "*"."""
    if domain == pattern:
        return True
    want, have = pattern.split("."), domain.split(".")
    return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True))


class GitHubConnector:
    """Logs in through GitHub's OAuth app flow; implements CallbackConnector and RefreshConnector."""

    def __init__(
        self, connector_id: str, cfg: GitHubConfig, hosts: GitHubHosts | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.id = connector_id
        self.cfg = cfg
        self.hosts = hosts or (enterprise_hosts(cfg.host_name) if cfg.host_name else GITHUB_COM)
        self.clock = clock or SystemClock()
        self.trust = TrustStore(cfg.root_ca)

    def __repr__(self) -> str:
        return f"GitHubConnector(id={self.id!r}, api={self.hosts.api!r})"

    def _groups_required(self, scopes: Scopes) -> bool:
        return bool(self.cfg.orgs or self.cfg.org or scopes.groups)

    def _app(self) -> OAuth2App:
        return OAuth2App(
            client_id=self.cfg.client_id, client_secret=self.cfg.client_secret,
            auth_url=f"{self.hosts.web}/login/oauth/authorize",
            token_url=f"{self.hosts.web}/login/oauth/access_token",
            redirect_uri=self.cfg.redirect_uri,
        )

    def _session(self) -> Any:
        headers = {"X-GitHub-Api-Version": API_VERSION, "Accept": "application/vnd.github+json"}
        return oauth_session(WHO, self._app(), self.trust, self.clock, headers)

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        check_redirect(WHO, self.cfg.redirect_uri, callback_url)
        wanted = [SCOPE_EMAIL] + ([SCOPE_ORGS] if self._groups_required(scopes) else [])
        return self._app().login_url(wanted, state)

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        code = callback_code(WHO, params)
        async with self._session() as session:
            token = await session.exchange(code)
            identity = await self._identity(session, scopes, Identity(user_id=""), fresh_login=True)
        if scopes.offline_access:
            identity = replace(identity, connector_data=dump_token_data(token, omit_empty=True))
        return identity

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        stored = load_token_data(WHO, identity.connector_data)
        async with self._session() as session:
            token, renewed = await session.fresh(stored)
            with keeping_renewed(dump_token_data(token, omit_empty=True) if renewed else None):
                refreshed = await self._identity(session, scopes, identity, fresh_login=False)
        if renewed:
            refreshed = replace(refreshed, connector_data=dump_token_data(token, omit_empty=True))
        return refreshed

    async def _identity(
        self, session: OAuthSession, scopes: Scopes, previous: Identity, fresh_login: bool
    ) -> Identity:
        user = json_object(WHO, await session.json("GET", f"{self.hosts.api}/user"), "/user")
        login = text(user.get("login"))
        email = text(user.get("email"))
        # /user shows only a public email; the verified primary one needs /user/emails.
        if not email or self.cfg.preferred_email_domain:
            email = await self._email(session)
        identity = replace(
            previous,
            username=text(user.get("name")) or login,
            preferred_username=login,
            email=email,
        )
        if fresh_login:
            user_id = user.get("id")
            if not isinstance(user_id, int) or isinstance(user_id, bool):
                raise ConnectorError("github: /user has no numeric id")
            identity = replace(
                identity, user_id=login if self.cfg.use_login_as_id else str(user_id), email_verified=True
            )
        if self._groups_required(scopes):
            identity = replace(identity, groups=await self._groups(session, scopes, login))
        return identity

    async def _pages(self, session: OAuthSession, path: str) -> list[Any]:
        items: list[Any] = []
        url: str | None = f"{self.hosts.api}{path}"
        for _ in range(MAX_PAGES):
            if url is None:
                return items
            response = await session.request("GET", url)
            items.extend(json_list(WHO, session.decode(response), path))
            url = session.next_link(response)
        raise ConnectorError(f"github: {path}: more than {MAX_PAGES} pages")

    async def _email(self, session: OAuthSession) -> str:
        primary = ""
        preferred: list[str] = []
        domain_pattern = self.cfg.preferred_email_domain
        for entry in await self._pages(session, "/user/emails"):
            if not isinstance(entry, dict):
                continue
            address = text(entry.get("email"))
            # GitHub Enterprise cannot verify addresses: GitHub's own advice is to trust them all.
            verified = entry.get("verified") is True or bool(self.cfg.host_name)
            if verified and entry.get("primary") is True:
                primary = address
            if domain_pattern:
                _, at, domain = address.partition("@")
                if not at:
                    raise ConnectorError("github: an email address without a domain was listed")
                if verified and domain_matches(domain, domain_pattern):
                    preferred.append(address)
        if preferred:
            return preferred[0]
        if primary:
            return primary
        raise UpstreamDenied("github: user has no verified, primary email or preferred-domain email")

    def _team_names(self, team: dict[str, Any]) -> list[str]:
        name, slug = text(team.get("name")), text(team.get("slug"))
        if self.cfg.team_name_field == "both":
            return [name, slug]
        return [slug] if self.cfg.team_name_field == "slug" else [name]

    async def _teams_by_org(self, session: OAuthSession) -> dict[str, list[str]]:
        """/user/teams, once per login: org login -> the user's team names there."""
        by_org: dict[str, list[str]] = {}
        for team in await self._pages(session, "/user/teams"):
            if isinstance(team, dict):
                org = team.get("organization")
                org_login = text(org.get("login")) if isinstance(org, dict) else ""
                by_org.setdefault(org_login, []).extend(self._team_names(team))
        return by_org

    async def _in_org(self, session: OAuthSession, login: str, org: str) -> bool:
        url = f"{self.hosts.api}/orgs/{quote(org, safe='')}/members/{quote(login, safe='')}"
        # The requester is the user: 204 if a member; 302 or 404 if not (or the app may not see the org).
        response = await session.request("GET", url, expect=(204, 302, 404))
        if response.status_code != 204:
            log.info("github: user %s is not in org %s (or the app may not read it)", login, org)
        return response.status_code == 204

    async def _groups(self, session: OAuthSession, scopes: Scopes, login: str) -> tuple[str, ...]:
        if self.cfg.orgs:
            return await self._groups_for_orgs(session, login)
        if self.cfg.org:
            return tuple((await self._teams_by_org(session)).get(self.cfg.org, []))
        if scopes.groups and self.cfg.load_all_groups:
            orgs = [text(org.get("login")) for org in await self._pages(session, "/user/orgs")
                    if isinstance(org, dict)]
            teams = await self._teams_by_org(session)
            return tuple(
                group for org in orgs for group in [org, *(f"{org}:{team}" for team in teams.get(org, []))]
            )
        return ()

    async def _groups_for_orgs(self, session: OAuthSession, login: str) -> tuple[str, ...]:
        """Allowed if in a listed org without teams, or in a listed team of a listed org (Dex's rule)."""
        groups: list[str] = []
        in_org_without_teams = False
        teams_by_org: dict[str, list[str]] | None = None
        for org in self.cfg.orgs:
            if not await self._in_org(session, login, org.name):
                continue
            if teams_by_org is None:
                teams_by_org = await self._teams_by_org(session)
            teams = teams_by_org.get(org.name, [])
            if not org.teams:
                in_org_without_teams = True
            else:
                teams = list(filter_groups(teams, org.teams))
                if not teams:
                    log.info("github: user %s is in org %s but in none of its listed teams", login, org.name)
            groups.extend(f"{org.name}:{team}" for team in teams)
        if in_org_without_teams or groups:
            return tuple(groups)
        raise UserNotInRequiredGroupsError(f"github: user {login!r} not in required orgs or teams")


def open_github(
    connector_id: str, config: Mapping[str, Any], *, hosts: GitHubHosts | None = None,
    clock: Clock | None = None,
) -> GitHubConnector:
    """The `github` factory. `hosts` overrides where GitHub is (tests point it at a fake)."""
    return GitHubConnector(connector_id, parse_config(config), hosts, clock)
