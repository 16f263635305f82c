"""A fake Google: OAuth 2.0 + signed ID tokens + JWKS, a service-account token endpoint, the Directory API."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from quart import Quart, Response, request

from fakes.oauth import Grant, OAuthServer, json_response

DIRECTORY_SCOPE = "https://www.googleapis.com/auth/admin.directory.group.readonly"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class GoogleUser:
    sub: str
    email: str
    name: str = ""
    email_verified: bool = True
    hd: str = ""


@dataclass
class ServiceAccountKey:
    """A service account as Google issues it: the JSON key file and the public key Google keeps."""

    client_email: str
    key_id: str
    private_pem: str
    public: RSAKey = field(repr=False)

    def write(self, path: Path, token_uri: str) -> Path:
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "portico-test",
                    "private_key_id": self.key_id,
                    "private_key": self.private_pem,
                    "client_email": self.client_email,
                    "client_id": "1234567890",
                    "token_uri": token_uri,
                }
            )
        )
        return path


def new_service_account(email: str = "dex-groups@portico-test.iam.gserviceaccount.com") -> ServiceAccountKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return ServiceAccountKey(email, secrets.token_hex(8), pem, RSAKey.import_key(key.public_key()))


class FakeGoogle:
    def __init__(self, redirect_uri: str) -> None:
        self.oauth = OAuthServer(redirect_uri)
        self.oauth.extra_token_fields = self._id_token
        self.signing_key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.app = Quart("fake-google")
        self.issuer = ""  # set once the server's URL is known
        self.reset()
        self._routes()

    def reset(self) -> None:
        self.oauth.reset()
        self.users: dict[str, GoogleUser] = {}
        self.accounts: dict[str, ServiceAccountKey] = {}  # private_key_id -> the key Google keeps
        self.admins: set[str] = set()  # Workspace super admins a service account may impersonate
        self.memberships: dict[str, list[str]] = {}  # member email (user or group) -> group emails
        self.directory_tokens: dict[str, str] = {}  # access token -> impersonated admin
        self.assertions: list[dict[str, Any]] = []
        self.per_page = 2
        self.failures: dict[str, int] = {}
        self.drop_name_on_refresh = False
        self.audience = ""  # "" means the client id
        self.jwks_fetches = 0
        self.published: list[RSAKey] | None = None  # the JWKS, when it is not just the signing key

    def _id_token(self, grant: Grant) -> dict[str, Any]:
        user = self.users[grant.user]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience or self.oauth.client_id,
            "azp": self.oauth.client_id,
            "sub": user.sub,
            "email": user.email,
            "email_verified": user.email_verified,
            "iat": now,
            "exp": now + 3600,
        }
        if user.name and not (self.drop_name_on_refresh and grant.extra.get("refreshed")):
            claims["name"] = user.name
        if user.hd:
            claims["hd"] = user.hd
        grant.extra["refreshed"] = True
        return {
            "id_token": jwt.encode({"alg": "RS256", "kid": self.signing_key.kid}, claims, self.signing_key)
        }

    def _fail(self) -> Response | None:
        status = self.failures.get(request.path)
        if status is None:
            return None
        return json_response({"error": {"code": status, "message": "Backend Error", "errors": []}}, status)

    async def _service_account_token(self, form: dict[str, str]) -> Response:
        try:
            header = json.loads(base64.urlsafe_b64decode(form["assertion"].split(".")[0] + "=="))
            account = self.accounts[header["kid"]]
            token = jwt.decode(form["assertion"], account.public, algorithms=["RS256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": account.client_email},
                aud={"essential": True, "value": f"{request.host_url.rstrip('/')}/token"},
                scope={"essential": True, "value": DIRECTORY_SCOPE},
                exp={"essential": True},
            ).validate(token.claims)
        except (KeyError, ValueError, JoseError) as exc:
            return json_response({"error": "invalid_grant", "error_description": f"Invalid JWT: {exc}"}, 400)
        self.assertions.append(dict(token.claims))
        admin = token.claims.get("sub", "")
        if admin not in self.admins:
            return json_response(
                {
                    "error": "unauthorized_client",
                    "error_description": "Client is unauthorized to retrieve access tokens",
                },
                401,
            )
        access = secrets.token_urlsafe(16)
        self.directory_tokens[access] = admin
        return json_response({"access_token": access, "expires_in": 3599, "token_type": "Bearer"})

    def _routes(self) -> None:
        app = self.app
        app.add_url_rule("/o/oauth2/v2/auth", view_func=self.oauth.authorize, methods=["GET"])

        @app.post("/token")
        async def token() -> Response:
            failed = self._fail()
            if failed is not None:
                return failed
            form = dict((await request.form).items())
            if form.get("grant_type") == JWT_BEARER:
                return await self._service_account_token(form)
            return await self.oauth.token()

        @app.get("/oauth2/v3/certs")
        async def certs() -> Response:
            self.jwks_fetches += 1
            keys = self.published if self.published is not None else [self.signing_key]
            return json_response({"keys": [key.as_dict(private=False) for key in keys]})

        @app.get("/admin/directory/v1/groups")
        async def groups() -> Response:
            failed = self._fail()
            if failed is not None:
                return failed
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            admin = self.directory_tokens.get(value) if scheme == "Bearer" else None
            if admin is None:
                return json_response({"error": {"code": 401, "message": "Login Required"}}, 401)
            key = request.args.get("userKey", "")
            if key.rpartition("@")[2] != admin.rpartition("@")[2]:
                return json_response(
                    {"error": {"code": 403, "message": "Not Authorized to access this resource/api"}}, 403
                )
            emails = self.memberships.get(key, [])
            start = int(request.args.get("pageToken") or 0)
            chosen = emails[start : start + self.per_page]
            body: dict[str, Any] = {
                "kind": "admin#directory#groups",
                "etag": '"x"',
                "groups": [
                    {
                        "kind": "admin#directory#group",
                        "id": f"id-{g}",
                        "email": g,
                        "name": g.split("@")[0],
                        "directMembersCount": "1",
                    }
                    for g in chosen
                ],
            }
            if start + self.per_page < len(emails):
                body["nextPageToken"] = str(start + self.per_page)
            if not chosen:
                del body["groups"]  # Google leaves the list out when it is empty
            return json_response(body)
