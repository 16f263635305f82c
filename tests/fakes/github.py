"""A fake GitHub: the OAuth app endpoints and the REST API v3 calls Dex's github connector makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quart import Quart, Response, request

from fakes.oauth import OAuthServer, json_response
from fakes.paging import page_of

API = "/api/v3"  # GitHub Enterprise's layout; github.com tests point the API root here too
API_VERSION = "2022-11-28"


@dataclass
class GitHubUser:
    id: int
    login: str
    name: str = ""
    public_email: str = ""
    emails: list[dict[str, Any]] = field(default_factory=list)
    orgs: list[str] = field(default_factory=list)
    teams: list[tuple[str, str, str]] = field(default_factory=list)  # (org, name, slug)


class FakeGitHub:
    def __init__(self, redirect_uri: str) -> None:
        self.oauth = OAuthServer(redirect_uri, form_unless_json=True, github_errors=True)
        self.app = Quart("fake-github")
        self.reset()
        self._routes()

    def reset(self) -> None:
        self.oauth.reset()
        self.users: dict[str, GitHubUser] = {}
        self.per_page = 2
        self.failures: dict[str, int] = {}
        self.api_requests: list[tuple[str, str]] = []  # (path, X-GitHub-Api-Version)
        self.link_base = ""  # when set, Link headers point there (a hostile or broken upstream)

    def add(self, user: GitHubUser) -> GitHubUser:
        self.users[user.login] = user
        return user

    def _caller(self, needs_scope: str = "") -> GitHubUser | Response:
        self.api_requests.append((request.path, request.headers.get("X-GitHub-Api-Version", "")))
        status = self.failures.get(request.path)
        if status is not None:
            return json_response({"message": "Server Error"}, status)
        grant = self.oauth.bearer()
        if grant is None:
            return json_response({"message": "Bad credentials"}, 401)
        if needs_scope and needs_scope not in grant.scope.split(" "):
            # GitHub hides what a token may not see: 404 for emails, 403 for org data.
            code = 404 if needs_scope == "user:email" else 403
            return json_response({"message": "Resource not accessible by integration"}, code)
        return self.users[grant.user]

    def _paged(self, items: list[Any]) -> Response:
        chosen, headers = page_of(
            items, self.link_base or request.base_url, dict(request.args), self.per_page
        )
        headers = {k: v for k, v in headers.items() if k == "Link"}
        return json_response(chosen, headers=headers)

    def _routes(self) -> None:
        app = self.app
        app.add_url_rule("/login/oauth/authorize", view_func=self.oauth.authorize, methods=["GET"])
        app.add_url_rule("/login/oauth/access_token", view_func=self.oauth.token, methods=["POST"])

        @app.get(f"{API}/user")
        async def user() -> Response:
            who = self._caller()
            if isinstance(who, Response):
                return who
            return json_response(
                {
                    "login": who.login,
                    "id": who.id,
                    "name": who.name or None,
                    "email": who.public_email or None,
                    "type": "User",
                }
            )

        @app.get(f"{API}/user/emails")
        async def emails() -> Response:
            who = self._caller("user:email")
            return who if isinstance(who, Response) else self._paged(who.emails)

        @app.get(f"{API}/user/orgs")
        async def orgs() -> Response:
            who = self._caller("read:org")
            if isinstance(who, Response):
                return who
            return self._paged([{"login": org, "id": index} for index, org in enumerate(who.orgs)])

        @app.get(f"{API}/user/teams")
        async def teams() -> Response:
            who = self._caller("read:org")
            if isinstance(who, Response):
                return who
            return self._paged(
                [
                    {"name": name, "slug": slug, "organization": {"login": org}}
                    for org, name, slug in who.teams
                ]
            )

        @app.get(f"{API}/orgs/<org>/members/<login>")
        async def membership(org: str, login: str) -> Response:
            who = self._caller("read:org")
            if isinstance(who, Response):
                return who
            if org not in who.orgs:  # a non-member asking is sent to the public membership
                return Response(
                    "", status=302, headers={"Location": f"{API}/orgs/{org}/public_members/{login}"}
                )
            member = login in self.users and org in self.users[login].orgs
            return Response("", status=204 if member else 404)
