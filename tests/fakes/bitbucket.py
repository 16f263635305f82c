"""A fake Bitbucket Cloud: the OAuth consumer endpoints and the 2.0 API's user, emails and workspaces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quart import Quart, Response, request

from fakes.oauth import OAuthServer, json_response

API = "/2.0"


@dataclass
class BitbucketUser:
    uuid: str
    username: str
    emails: list[dict[str, Any]] = field(default_factory=list)
    workspaces: dict[str, str] = field(
        default_factory=dict
    )  # slug -> permission (owner, collaborator, member)


class FakeBitbucket:
    def __init__(self, redirect_uri: str) -> None:
        self.oauth = OAuthServer(redirect_uri, auth_styles=("basic",))
        self.app = Quart("fake-bitbucket")
        self.reset()
        self._routes()

    def reset(self) -> None:
        self.oauth.reset()
        self.users: dict[str, BitbucketUser] = {}
        self.pagelen = 2
        self.failures: dict[str, int] = {}

    def _caller(self) -> BitbucketUser | Response:
        status = self.failures.get(request.path)
        if status is not None:
            return json_response({"type": "error", "error": {"message": "Something went wrong"}}, status)
        grant = self.oauth.bearer()
        if grant is None:
            return json_response({"type": "error", "error": {"message": "Access token expired."}}, 401)
        return self.users[grant.user]

    def _paged(self, values: list[Any]) -> Response:
        page = int(request.args.get("page", "1"))
        start = (page - 1) * self.pagelen
        body: dict[str, Any] = {
            "pagelen": self.pagelen,
            "page": page,
            "size": len(values),
            "values": values[start : start + self.pagelen],
        }
        if start + self.pagelen < len(values):
            body["next"] = f"{request.base_url}?page={page + 1}"
        return json_response(body)

    def _routes(self) -> None:
        app = self.app
        app.add_url_rule("/site/oauth2/authorize", view_func=self.oauth.authorize, methods=["GET"])
        app.add_url_rule("/site/oauth2/access_token", view_func=self.oauth.token, methods=["POST"])

        @app.get(f"{API}/user")
        async def user() -> Response:
            who = self._caller()
            if isinstance(who, Response):
                return who
            return json_response(
                {
                    "type": "user",
                    "uuid": who.uuid,
                    "username": who.username,
                    "display_name": who.username.title(),
                    "account_id": "5b10a2844c20165700ede21g",
                }
            )

        @app.get(f"{API}/user/emails")
        async def emails() -> Response:
            who = self._caller()
            if isinstance(who, Response):
                return who
            return self._paged([{"type": "email", **email} for email in who.emails])

        @app.get(f"{API}/user/workspaces")
        async def workspaces() -> Response:
            who = self._caller()
            if isinstance(who, Response):
                return who
            return self._paged(
                [
                    {
                        "type": "workspace_access",
                        "administrator": perm == "owner",
                        "workspace": {"type": "workspace_base", "slug": slug, "uuid": f"{{{slug}}}"},
                    }
                    for slug, perm in who.workspaces.items()
                ]
            )

        @app.get(f"{API}/user/workspaces/<slug>/permission")
        async def permission(slug: str) -> Response:
            who = self._caller()
            if isinstance(who, Response):
                return who
            if slug not in who.workspaces:
                return json_response({"type": "error", "error": {"message": "No workspace"}}, 404)
            return json_response({"type": "workspace_membership", "permission": who.workspaces[slug]})
