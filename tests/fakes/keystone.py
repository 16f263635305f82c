"""A fake OpenStack Keystone (Identity API v3): password tokens, users, a user's groups."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from quart import Quart, Response, request

from fakes.oauth import json_response

DOMAIN_ID = "7a3c9f0e2b1d4c5e8f6a7b8c9d0e1f2a"
DOMAIN_NAME = "Corp"


@dataclass
class KeystoneUser:
    id: str
    name: str
    password: str
    email: str = ""
    admin: bool = False
    groups: list[str] = field(default_factory=list)
    enabled: bool = True  # a disabled user gets no tokens and shows "enabled": false


def unauthorized() -> Response:
    return json_response(
        {
            "error": {
                "code": 401,
                "title": "Unauthorized",
                "message": "The request you have made requires authentication.",
            }
        },
        401,
    )


class FakeKeystone:
    def __init__(self) -> None:
        self.app = Quart("fake-keystone")
        self.reset()
        self._routes()

    def reset(self) -> None:
        self.users: dict[str, KeystoneUser] = {}
        self.tokens: dict[str, KeystoneUser] = {}
        self.domain_refs: list[dict[str, str]] = []
        self.per_page = 0  # 0: the whole list at once (Keystone's default)
        self.failure = 0

    def _domain_ok(self, ref: dict[str, str]) -> bool:
        return ref in ({"id": DOMAIN_ID}, {"name": DOMAIN_NAME}, {"id": "default"})

    def _caller(self, user_id: str) -> KeystoneUser | Response:
        caller = self.tokens.get(request.headers.get("X-Auth-Token", ""))
        if caller is None:
            return unauthorized()
        if not caller.admin and caller.id != user_id:
            return json_response({"error": {"code": 403, "title": "Forbidden", "message": "no"}}, 403)
        target = next((u for u in self.users.values() if u.id == user_id), None)
        if target is None:
            return json_response(
                {"error": {"code": 404, "title": "Not Found", "message": f"Could not find user: {user_id}."}},
                404,
            )
        return target

    def _routes(self) -> None:
        app = self.app

        @app.post("/v3/auth/tokens")
        async def tokens() -> Response:
            if self.failure:
                return json_response({"error": {"code": self.failure}}, self.failure)
            body = await request.get_json()
            spec = body["auth"]["identity"]
            user_spec = spec["password"]["user"]
            self.domain_refs.append(user_spec["domain"])
            user = self.users.get(user_spec["name"])
            if (
                spec["methods"] != ["password"]
                or user is None
                or user.password != user_spec["password"]
                or not self._domain_ok(user_spec["domain"])
                or not user.enabled
            ):
                return unauthorized()
            token = secrets.token_hex(16)
            self.tokens[token] = user
            return json_response(
                {
                    "token": {
                        "methods": ["password"],
                        "user": {
                            "domain": {"id": DOMAIN_ID, "name": DOMAIN_NAME},
                            "id": user.id,
                            "name": user.name,
                            "password_expires_at": None,
                        },
                        "expires_at": "2030-01-01T00:00:00.000000Z",
                        "issued_at": "2026-01-01T00:00:00.000000Z",
                    }
                },
                201,
                {"X-Subject-Token": token},
            )

        @app.get("/v3/users/<user_id>")
        async def user(user_id: str) -> Response:
            found = self._caller(user_id)
            if isinstance(found, Response):
                return found
            return json_response(
                {
                    "user": {
                        "id": found.id,
                        "name": found.name,
                        "email": found.email or None,
                        "domain_id": DOMAIN_ID,
                        "enabled": found.enabled,
                    }
                }
            )

        @app.get("/v3/users/<user_id>/groups")
        async def groups(user_id: str) -> Response:
            found = self._caller(user_id)
            if isinstance(found, Response):
                return found
            names = found.groups
            start = int(request.args.get("marker", "0"))
            size = self.per_page or len(names) or 1
            chosen = names[start : start + size]
            nxt = f"{request.base_url}?marker={start + size}" if start + size < len(names) else None
            return json_response(
                {
                    "groups": [{"id": f"g-{n}", "name": n, "domain_id": DOMAIN_ID} for n in chosen],
                    "links": {"self": request.url, "previous": None, "next": nxt},
                }
            )
