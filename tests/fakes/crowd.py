"""A fake Atlassian Crowd: the usermanagement REST API (sessions, users, nested groups)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field

from quart import Quart, Response, request

from fakes.oauth import json_response

API = "/crowd/rest/usermanagement/1"
APP_NAME = "portico-app"
APP_PASSWORD = "app-p4ss:word"


@dataclass
class CrowdUser:
    name: str
    key: str
    password: str
    email: str = ""
    active: bool = True
    groups: list[str] = field(default_factory=list)


class FakeCrowd:
    def __init__(self) -> None:
        self.app = Quart("fake-crowd")
        self.reset()
        self._routes()

    def reset(self) -> None:
        self.users: dict[str, CrowdUser] = {}
        self.remote_address_allowed = True
        self.failure = 0
        self.sessions: list[tuple[str, bool]] = []  # (user, password validated)
        self.group_queries: list[dict[str, str]] = []

    def _app_ok(self) -> Response | None:
        if self.failure:
            return Response("<html>Server Error</html>", status=self.failure)
        header = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{APP_NAME}:{APP_PASSWORD}".encode()).decode()
        if header != expected:
            return Response("Application failed to authenticate", status=401)
        if not self.remote_address_allowed:
            return Response("The server understood the request but refuses to authorize it.", status=403)
        if "application/json" not in request.headers.get("Accept", ""):
            return Response("<xml/>", status=406)
        return None

    @staticmethod
    def _error(reason: str, message: str, status: int = 400) -> Response:
        return json_response({"reason": reason, "message": message}, status)

    def _routes(self) -> None:
        app = self.app

        @app.post(f"{API}/session")
        async def session() -> Response:
            refused = self._app_ok()
            if refused is not None:
                return refused
            body = await request.get_json()
            user = self.users.get(body.get("username", ""))
            validate = request.args.get("validate-password", "true") != "false"
            if user is None:
                return self._error("USER_NOT_FOUND", f"User <{body.get('username')}> does not exist")
            if validate and body.get("password") != user.password:
                return self._error(
                    "INVALID_USER_AUTHENTICATION",
                    f"Account with name <{user.name}> failed to authenticate: Invalid credentials",
                )
            if not user.active:
                return self._error("INACTIVE_ACCOUNT", f"Account with name <{user.name}> is inactive")
            self.sessions.append((user.name, validate))
            return json_response(
                {
                    "token": secrets.token_hex(8),
                    "user": {"name": user.name},
                    "created-date": 1,
                    "expiry-date": 2,
                },
                201,
            )

        @app.get(f"{API}/user")
        async def user() -> Response:
            refused = self._app_ok()
            if refused is not None:
                return refused
            found = self.users.get(request.args.get("username", ""))
            if found is None:
                return self._error("USER_NOT_FOUND", "User does not exist", 404)
            return json_response(
                {
                    "name": found.name,
                    "key": found.key,
                    "active": found.active,
                    "email": found.email,
                    "first-name": found.name,
                    "last-name": "Test",
                    "display-name": found.name.title(),
                }
            )

        @app.get(f"{API}/user/group/nested")
        async def groups() -> Response:
            refused = self._app_ok()
            if refused is not None:
                return refused
            self.group_queries.append(dict(request.args))
            found = self.users.get(request.args.get("username", ""))
            if found is None:
                return self._error("USER_NOT_FOUND", "User does not exist", 404)
            start = int(request.args.get("start-index", "0"))
            size = int(request.args.get("max-results", "1000"))
            return json_response(
                {"expand": "group", "groups": [{"name": g} for g in found.groups[start : start + size]]}
            )
