"""The `gitlab` connector: GitLab.com or a self-hosted GitLab, groups from its OIDC userinfo (Dex's keys)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.clock import Clock, SystemClock
from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.schemas import GITLAB as SCHEMA
from appliance.connectors.social_config import filter_groups, read_config
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
from appliance.connectors.social_token import UpstreamToken, dump_token_data, keeping_renewed, load_token_data
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.gitlab")

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a type name)

WHO = "gitlab"
SCOPE_USER = "read_user"  # /api/v4/user
SCOPE_OPENID = "openid"  # /oauth/userinfo and its groups claims
SCOPE_READ_API = "read_api"  # /api/v4/groups (inheritedGroups)
GROUPS_PER_PAGE = 100
# The userinfo claims that list the groups where the user has at least that role, strongest first.
_ROLE_CLAIMS = (
    ("owner", "https://gitlab.org/claims/groups/owner"),
    ("maintainer", "https://gitlab.org/claims/groups/maintainer"),
    ("developer", "https://gitlab.org/claims/groups/developer"),
)
# GitLab's numeric access levels (the members API) and the suffix each becomes.
ACCESS_LEVELS = {
    5: "minimal_access", 10: "guest", 15: "planner", 20: "reporter", 25: "security_manager",
    30: "developer", 40: "maintainer", 50: "owner", 60: "admin",
}
_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


@dataclass(frozen=True)
class GitLabConfig:
    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    groups: tuple[str, ...] = ()
    use_login_as_id: bool = False
    get_groups_permission: bool = False
    inherited_groups: bool = False
    root_ca: bytes | None = None


def parse_config(config: Mapping[str, Any]) -> GitLabConfig:
    reader = read_config(WHO, config, _KEYS)
    cfg = GitLabConfig(
        base_url=reader.string("baseURL", "https://gitlab.com").rstrip("/") or "https://gitlab.com",
        client_id=reader.required("clientID"),
        client_secret=reader.required("clientSecret"),
        redirect_uri=reader.required("redirectURI"),
        groups=reader.strings("groups"),
        use_login_as_id=reader.boolean("useLoginAsID"),
        get_groups_permission=reader.boolean("getGroupsPermission"),
        inherited_groups=reader.boolean("inheritedGroups"),
        root_ca=reader.pem_data("rootCAData"),
    )
    reader.check()
    return cfg


def _covers(group: str, paths: Sequence[str]) -> bool:
    """A role on a group applies to the group itself and to every subgroup under it."""
    return any(group == path or group.startswith(path + "/") for path in paths)


def role_from_userinfo(group: str, userinfo: Mapping[str, Any]) -> str:
    for role, claim in _ROLE_CLAIMS:
        paths = userinfo.get(claim)
        if isinstance(paths, list) and _covers(group, [p for p in paths if isinstance(p, str)]):
            return role
    return ""


def with_roles(groups: Sequence[str], userinfo: Mapping[str, Any]) -> list[str]:
    """`groups`, then "group:role" for each group where userinfo names the user's role."""
    roles = [(group, role_from_userinfo(group, userinfo)) for group in groups]
    return [*groups, *(f"{group}:{role}" for group, role in roles if role)]


class GitLabConnector:
    """Logs in through GitLab's OAuth 2.0 provider; a CallbackConnector, RefreshConnector and, for token
    exchange, a TokenIdentityConnector."""

    def __init__(self, connector_id: str, cfg: GitLabConfig, clock: Clock | None = None) -> None:
        self.id = connector_id
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.trust = TrustStore(cfg.root_ca)

    def __repr__(self) -> str:
        return f"GitLabConnector(id={self.id!r}, base_url={self.cfg.base_url!r})"

    def _groups_required(self, scopes: Scopes) -> bool:
        return bool(self.cfg.groups or scopes.groups)

    def _app(self) -> OAuth2App:
        return OAuth2App(
            client_id=self.cfg.client_id, client_secret=self.cfg.client_secret,
            auth_url=f"{self.cfg.base_url}/oauth/authorize", token_url=f"{self.cfg.base_url}/oauth/token",
            redirect_uri=self.cfg.redirect_uri,
        )

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        check_redirect(WHO, self.cfg.redirect_uri, callback_url)
        wanted = [SCOPE_USER]
        if self._groups_required(scopes):
            wanted.append(SCOPE_OPENID)
            if self.cfg.inherited_groups:
                wanted.append(SCOPE_READ_API)
        return self._app().login_url(wanted, state)

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        code = callback_code(WHO, params)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            token = await session.exchange(code)
            return await self._identity(session, scopes, token)

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        stored = load_token_data(WHO, identity.connector_data)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            # Dex always renews through the refresh token when it has one (GitLab's tokens live 2 h).
            if stored.refresh_token:
                token = await session.refresh(stored.refresh_token)
                with keeping_renewed(dump_token_data(token, ("accessToken", "refreshToken"))):
                    return await self._identity(session, scopes, token)
            token = stored
            session.use(token)
            return await self._identity(session, scopes, token)

    async def token_identity(self, subject_token_type: str, subject_token: str) -> Identity:
        """The user behind a GitLab access token (an OAuth token or a personal access token), for RFC 8693
        token exchange, as Dex's TokenIdentity: GitLab's API vouching for the token is the check.

        Groups are always read (the `groups` filter applies, as at login); whether they reach the
        minted token is up to the scopes of the exchange. An ID token is refused here: GitLab's API
        takes none as a bearer token (Dex sends it anyway and gets the same refusal, a 401).
        """
        if subject_token_type != ACCESS_TOKEN_TYPE:
            raise ConnectorError("gitlab: token exchange takes a GitLab access token only")
        token = UpstreamToken(subject_token)
        async with oauth_session(WHO, self._app(), self.trust, self.clock) as session:
            session.use(token)
            return await self._identity(session, Scopes(groups=True), token)

    async def _identity(self, session: OAuthSession, scopes: Scopes, token: UpstreamToken) -> Identity:
        user = json_object(WHO, await session.json("GET", f"{self.cfg.base_url}/api/v4/user"), "/api/v4/user")
        user_id = user.get("id")
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise ConnectorError("gitlab: /api/v4/user has no numeric id")
        login, email = text(user.get("username")), text(user.get("email"))
        identity = Identity(
            user_id=login if self.cfg.use_login_as_id else str(user_id),
            username=text(user.get("name")) or email,
            preferred_username=login,
            email=email,
            email_verified=True,
        )
        if self._groups_required(scopes):
            identity = replace(identity, groups=await self._groups(session, scopes, login, user_id))
        if scopes.offline_access:
            data = dump_token_data(token, ("accessToken", "refreshToken"))
            identity = replace(identity, connector_data=data)
        return identity

    async def _groups(
        self, session: OAuthSession, scopes: Scopes, login: str, user_id: int
    ) -> tuple[str, ...]:
        if self.cfg.inherited_groups:
            found = await self._inherited_groups(session, user_id)
        else:
            userinfo = await self._userinfo(session)
            direct = [group for group in userinfo.get("groups") or [] if isinstance(group, str)]
            found = with_roles(direct, userinfo) if self.cfg.get_groups_permission else direct
        if self.cfg.groups:
            allowed = filter_groups(found, self.cfg.groups)
            if not allowed:
                raise UserNotInRequiredGroupsError(
                    f"gitlab: user {login!r} is not in any of the required groups"
                )
            return allowed
        return tuple(found) if scopes.groups else ()

    async def _userinfo(self, session: OAuthSession) -> dict[str, Any]:
        found = await session.json("GET", f"{self.cfg.base_url}/oauth/userinfo")
        return json_object(WHO, found, "/oauth/userinfo")

    async def _inherited_groups(self, session: OAuthSession, user_id: int) -> list[str]:
        """Every group the user can see as a member, inherited ones too (/api/v4/groups, read_api)."""
        records: list[dict[str, Any]] = []
        page: str | None = "1"
        for _ in range(MAX_PAGES):
            if not page:
                break
            response = await session.request(
                "GET", f"{self.cfg.base_url}/api/v4/groups",
                params={"all_available": "false", "per_page": str(GROUPS_PER_PAGE), "page": page},
            )
            batch = [item for item in json_list(WHO, session.decode(response), "/api/v4/groups")
                     if isinstance(item, dict)]
            records.extend(batch)
            # GitLab names the next page in x-next-page (empty on the last one); without the header,
            # a short page is the last (what Dex relies on).
            if "x-next-page" in response.headers:
                page = response.headers["x-next-page"].strip() or None
            else:
                page = str(int(page) + 1) if len(batch) >= GROUPS_PER_PAGE else None
        else:
            raise ConnectorError(f"gitlab: /api/v4/groups: more than {MAX_PAGES} pages")
        paths = [text(r.get("full_path")) or text(r.get("path")) for r in records]
        groups = [path for path in paths if path]
        if not self.cfg.get_groups_permission:
            return groups
        userinfo = await self._userinfo(session)
        claims = with_roles(groups, userinfo)
        for record, path in zip(records, paths, strict=True):
            if not path or role_from_userinfo(path, userinfo):
                continue
            role = await self._effective_role(session, record.get("id"), user_id)
            if role:
                claims.append(f"{path}:{role}")
        return claims

    async def _effective_role(self, session: OAuthSession, group_id: object, user_id: int) -> str:
        if not isinstance(group_id, int) or isinstance(group_id, bool) or group_id == 0:
            raise ConnectorError("gitlab: a group without an id cannot be asked for the user's role")
        url = f"{self.cfg.base_url}/api/v4/groups/{group_id}/members/all/{user_id}"
        response = await session.request("GET", url, expect=(200, 403, 404))
        if response.status_code != 200:  # not visible to this token: no role suffix, as in Dex
            return ""
        member = json_object(WHO, session.decode(response), "group member")
        level = member.get("access_level")
        return ACCESS_LEVELS.get(level, "") if isinstance(level, int) else ""


def open_gitlab(
    connector_id: str, config: Mapping[str, Any], *, clock: Clock | None = None
) -> GitLabConnector:
    """The `gitlab` factory (tests point baseURL at a fake)."""
    return GitLabConnector(connector_id, parse_config(config), clock)
