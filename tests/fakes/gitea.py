"""A fake Gitea: its OAuth 2.0 provider and the /api/v1 user and teams calls."""

from __future__ import annotations

from dataclasses import dataclass, field

from quart import Quart, Response, request

from fakes.oauth import OAuthServer, json_response
from fakes.paging import page_of


@dataclass
class GiteaUser:
    id: int
    login: str
    full_name: str = ""
    email: str = ""
    teams: list[tuple[str, str]] = field(default_factory=list)  # (org, team)


class FakeGitea:
    def __init__(self, redirect_uri: str) -> None:
        self.oauth = OAuthServer(redirect_uri)
        self.app = Quart("fake-gitea")
        self.reset()
        app = self.app
        app.add_url_rule("/login/oauth/authorize", view_func=self.oauth.authorize, methods=["GET"])
        app.add_url_rule("/login/oauth/access_token", view_func=self.oauth.token, methods=["POST"])

        @app.get("/api/v1/user")
        async def user() -> Response:
            who = self._caller()
            if isinstance(who, Response):
                return who
            return json_response(
                {
                    "id": who.id,
                    "login": who.login,
                    "full_name": who.full_name,
                    "email": who.email,
                    "is_admin": False,
                }
            )

        @app.get("/api/v1/user/teams")
        async def teams() -> Response:
            who = self._caller()
            if isinstance(who, Response):
                return who
            self.team_pages += 1
            items = [
                {"id": n, "name": team, "organization": {"id": 100 + n, "username": org}}
                for n, (org, team) in enumerate(who.teams)
            ]
            limit = min(self.per_page, int(request.args.get("limit", "20")))
            chosen, headers = page_of(items, request.base_url, dict(request.args), limit, size_param="limit")
            if not self.link_headers:
                headers = {}
            return json_response(chosen, headers={k: v for k, v in headers.items() if k == "Link"})

    def reset(self) -> None:
        self.oauth.reset()
        self.users: dict[str, GiteaUser] = {}
        self.per_page = 2
        self.link_headers = True
        self.team_pages = 0
        self.failure = 0

    def _caller(self) -> GiteaUser | Response:
        if self.failure:
            return json_response({"message": "internal error"}, self.failure)
        grant = self.oauth.bearer()
        if grant is None:
            return json_response({"message": "token is required"}, 401)
        return self.users[grant.user]
