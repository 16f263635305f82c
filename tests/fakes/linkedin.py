"""A fake LinkedIn: OAuth 2.0 (credentials in the form body only) and the OpenID Connect userinfo."""

from __future__ import annotations

from typing import Any

from quart import Quart, Response

from fakes.oauth import OAuthServer, json_response


class FakeLinkedIn:
    def __init__(self, redirect_uri: str) -> None:
        self.oauth = OAuthServer(redirect_uri, auth_styles=("post",))
        self.app = Quart("fake-linkedin")
        self.reset()
        app = self.app
        app.add_url_rule("/oauth/v2/authorization", view_func=self.oauth.authorize, methods=["GET"])
        app.add_url_rule("/oauth/v2/accessToken", view_func=self.oauth.token, methods=["POST"])

        @app.get("/v2/userinfo")
        async def userinfo() -> Response:
            if self.failure:
                return json_response({"status": self.failure, "message": "Internal error"}, self.failure)
            grant = self.oauth.bearer()
            if grant is None:
                return json_response(
                    {"serviceErrorCode": 65600, "message": "Invalid access token", "status": 401}, 401
                )
            return json_response(self.members[grant.user])

    def reset(self) -> None:
        self.oauth.reset()
        self.members: dict[str, dict[str, Any]] = {}
        self.failure = 0
