"""A fake OpenShift cluster: OAuth server metadata (RFC 8414), its OAuth endpoints and the user API."""

from __future__ import annotations

from typing import Any

from quart import Quart, Response, request

from fakes.oauth import OAuthServer, json_response


class FakeOpenShift:
    def __init__(self, redirect_uri: str) -> None:
        self.oauth = OAuthServer(redirect_uri)
        self.app = Quart("fake-openshift")
        self.reset()
        app = self.app
        app.add_url_rule("/oauth/authorize", view_func=self.oauth.authorize, methods=["GET"])
        app.add_url_rule("/oauth/token", view_func=self.oauth.token, methods=["POST"])

        @app.get("/.well-known/oauth-authorization-server")
        async def metadata() -> Response:
            self.discoveries += 1
            base = request.host_url.rstrip("/")
            return json_response(
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/oauth/authorize",
                    "token_endpoint": f"{base}/oauth/token",
                    "scopes_supported": ["user:full", "user:info", "user:check-access"],
                    "response_types_supported": ["code", "token"],
                    "code_challenge_methods_supported": ["plain", "S256"],
                }
            )

        @app.get("/apis/user.openshift.io/v1/users/~")
        async def me() -> Response:
            if self.failure:
                return json_response(
                    {"kind": "Status", "status": "Failure", "code": self.failure}, self.failure
                )
            grant = self.oauth.bearer()
            if grant is None:
                return json_response(
                    {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401}, 401
                )
            return json_response(self.users[grant.user])

    def reset(self) -> None:
        self.oauth.reset()
        self.users: dict[str, dict[str, Any]] = {}
        self.failure = 0
        self.discoveries = 0

    def add(self, name: str, uid: str, groups: list[str]) -> None:
        self.users[name] = {
            "kind": "User",
            "apiVersion": "user.openshift.io/v1",
            "metadata": {"name": name, "uid": uid, "resourceVersion": "1"},
            "fullName": name.title(),
            "identities": [f"htpasswd:{name}"],
            "groups": groups,
        }
