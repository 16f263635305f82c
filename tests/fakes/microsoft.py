"""A fake Microsoft identity platform (v2.0 endpoints per tenant) and the Graph calls Dex makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quart import Quart, Response, request

from fakes.oauth import Grant, OAuthServer, json_response

GRAPH_LIMIT = 1000  # ids per getByIds request


@dataclass
class MicrosoftUser:
    id: str
    display_name: str
    upn: str
    mail_nickname: str = ""
    sam_account_name: str | None = None
    groups: list[str] = field(default_factory=list)  # group object ids


@dataclass
class Group:
    id: str
    name: str
    security: bool = True


def graph_error(status: int, code: str, message: str) -> Response:
    return json_response(
        {"error": {"code": code, "message": message, "innerError": {"request-id": "x"}}}, status
    )


class FakeMicrosoft:
    def __init__(self, redirect_uri: str) -> None:
        self.oauth = OAuthServer(redirect_uri, auth_styles=("basic", "post", "none"))
        self.app = Quart("fake-microsoft")
        self.reset()
        self._routes()

    def reset(self) -> None:
        self.oauth.reset()
        self.users: dict[str, MicrosoftUser] = {}
        self.groups: dict[str, Group] = {}
        self.tenants: list[str] = []
        self.expected_assertion = ""
        self.assertions: list[str] = []
        self.per_page = 2
        self.lookup_sizes: list[int] = []
        self.failures: dict[str, int] = {}

    def _caller(self, needs_directory: bool = False) -> MicrosoftUser | Response:
        status = self.failures.get(request.path)
        if status is not None:
            return graph_error(status, "serviceNotAvailable", "The service is temporarily unavailable.")
        grant = self.oauth.bearer()
        if grant is None:
            return graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        if needs_directory and "directory.read.all" not in grant.scope.split(" "):
            return graph_error(
                403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
            )
        return self.users[grant.user]

    def _page(self, values: list[Any], path: str) -> Response:
        start = int(request.args.get("$skiptoken") or 0)
        body: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection",
            "value": values[start : start + self.per_page],
        }
        if start + self.per_page < len(values):
            body["@odata.nextLink"] = (
                f"{request.host_url.rstrip('/')}{path}?$skiptoken={start + self.per_page}"
            )
        return json_response(body)

    def _routes(self) -> None:
        app = self.app

        @app.get("/<tenant>/oauth2/v2.0/authorize")
        async def authorize(tenant: str) -> Response:
            self.tenants.append(tenant)
            return await self.oauth.authorize()

        @app.post("/<tenant>/oauth2/v2.0/token")
        async def token(tenant: str) -> Response:
            form = await request.form
            if self.expected_assertion:
                assertion = form.get("client_assertion", "")
                self.assertions.append(assertion)
                if (
                    assertion != self.expected_assertion
                    or form.get("client_assertion_type")
                    != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                    or "client_secret" in form
                ):
                    return json_response(
                        {"error": "invalid_client", "error_description": "AADSTS700027"}, 401
                    )
            return await self.oauth.token()

        @app.get("/v1.0/me")
        async def me() -> Response:
            who = self._caller()
            if isinstance(who, Response):
                return who
            wanted = request.args.get("$select", "").split(",")
            full = {
                "id": who.id,
                "displayName": who.display_name,
                "userPrincipalName": who.upn,
                "mailNickname": who.mail_nickname,
                "onPremisesSamAccountName": who.sam_account_name,
            }
            return json_response({"@odata.context": "x", **{k: v for k, v in full.items() if k in wanted}})

        @app.post("/v1.0/me/getMemberGroups")
        async def member_groups() -> Response:
            who = self._caller(needs_directory=True)
            if isinstance(who, Response):
                return who
            body = await request.get_json()
            security_only = body.get("securityEnabledOnly")
            if not isinstance(security_only, bool):
                return graph_error(400, "Request_BadRequest", "securityEnabledOnly is required")
            ids = [g for g in who.groups if self.groups[g].security or not security_only]
            return self._page(ids, request.path)

        @app.post("/v1.0/directoryObjects/getByIds")
        async def by_ids() -> Response:
            who = self._caller(needs_directory=True)
            if isinstance(who, Response):
                return who
            body = await request.get_json()
            ids = body.get("ids", [])
            if request.args.get("$skiptoken") is None:
                self.lookup_sizes.append(len(ids))
            if len(ids) > GRAPH_LIMIT:
                return graph_error(400, "Request_BadRequest", "Too many ids")
            found = [
                {
                    "@odata.type": "#microsoft.graph.group",
                    "id": g,
                    "displayName": self.groups[g].name,
                    "securityEnabled": self.groups[g].security,
                }
                for g in ids
                if g in self.groups
            ]
            return self._page(found, request.path)

    def grant_for(self, user: str) -> Grant:
        return next(g for g in self.oauth.access.values() if g.user == user)
