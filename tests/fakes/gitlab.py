"""A fake GitLab under a path prefix: OAuth endpoints, /api/v4/user, /oauth/userinfo, groups and members."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from quart import Quart, Response, request

from fakes.oauth import Grant, OAuthServer, json_response
from fakes.paging import page_of

PREFIX = "/gitlab"  # a self-hosted GitLab under a path, so baseURL with a path is exercised
_ROLE_CLAIM = {50: "owner", 40: "maintainer", 30: "developer"}


@dataclass
class GitLabUser:
    id: int
    username: str
    name: str = ""
    email: str = ""
    direct_groups: list[str] = field(default_factory=list)  # full paths, as userinfo lists them
    levels: dict[str, int] = field(default_factory=dict)  # full path -> access level
    member_of: list[tuple[int, str]] = field(default_factory=list)  # (id, full path): /api/v4/groups


class FakeGitLab:
    def __init__(self, redirect_uri: str) -> None:
        self.oauth = OAuthServer(redirect_uri)
        self.app = Quart("fake-gitlab")
        self.reset()
        self._routes()

    def reset(self) -> None:
        self.oauth.reset()
        self.users: dict[str, GitLabUser] = {}
        self.per_page = 2
        self.failures: dict[str, int] = {}
        self.paths: list[str] = []
        self.next_page_header = True

    def add(self, user: GitLabUser) -> GitLabUser:
        self.users[user.username] = user
        return user

    def personal_token(self, username: str, scopes: str = "read_user openid") -> str:
        """A personal access token ("glpat-" and 20 characters), which GitLab also takes as a Bearer token."""
        token = "glpat-" + secrets.token_urlsafe(15)[:20]
        self.oauth.access[token] = Grant(user=username, scope=scopes, redirect_uri=None)
        return token

    def _caller(self, *scopes: str) -> tuple[GitLabUser, Grant] | Response:
        self.paths.append(request.path)
        status = self.failures.get(request.path.removeprefix(PREFIX))
        if status is not None:
            return json_response({"message": f"{status} failure"}, status)
        grant = self.oauth.bearer()
        if grant is None:
            return json_response({"error": "invalid_token"}, 401)
        if not set(scopes) <= set(grant.scope.split(" ")):
            return json_response({"error": "insufficient_scope", "scope": " ".join(scopes)}, 403)
        return self.users[grant.user], grant

    def _routes(self) -> None:
        app = self.app
        app.add_url_rule(f"{PREFIX}/oauth/authorize", view_func=self.oauth.authorize, methods=["GET"])
        app.add_url_rule(f"{PREFIX}/oauth/token", view_func=self.oauth.token, methods=["POST"])

        @app.get(f"{PREFIX}/api/v4/user")
        async def user() -> Response:
            found = self._caller("read_user")
            if isinstance(found, Response):
                return found
            who, _ = found
            return json_response(
                {
                    "id": who.id,
                    "username": who.username,
                    "name": who.name,
                    "state": "active",
                    "email": who.email,
                    "is_admin": False,
                }
            )

        @app.get(f"{PREFIX}/oauth/userinfo")
        async def userinfo() -> Response:
            found = self._caller("openid")
            if isinstance(found, Response):
                return found
            who, _ = found
            body: dict[str, object] = {
                "sub": str(who.id),
                "nickname": who.username,
                "name": who.name,
                "email": who.email,
                "email_verified": True,
                "groups": who.direct_groups,
            }
            for level, role in _ROLE_CLAIM.items():
                body[f"https://gitlab.org/claims/groups/{role}"] = [
                    path for path, have in who.levels.items() if have == level
                ]
            return json_response(body)

        @app.get(f"{PREFIX}/api/v4/groups")
        async def groups() -> Response:
            found = self._caller("read_api")
            if isinstance(found, Response):
                return found
            who, _ = found
            items = [
                {"id": gid, "path": path.rsplit("/", 1)[-1], "full_path": path, "name": path}
                for gid, path in who.member_of
            ]
            chosen, headers = page_of(items, request.base_url, dict(request.args), self.per_page)
            if not self.next_page_header:
                headers = {}
            return json_response(chosen, headers=headers)

        @app.get(f"{PREFIX}/api/v4/groups/<int:gid>/members/all/<int:uid>")
        async def member(gid: int, uid: int) -> Response:
            found = self._caller("read_api")
            if isinstance(found, Response):
                return found
            who, _ = found
            paths = {g: p for g, p in who.member_of}
            level = who.levels.get(paths.get(gid, ""))
            if who.id != uid or level is None:
                return json_response({"message": "404 Not found"}, 404)
            return json_response({"id": uid, "username": who.username, "access_level": level})
