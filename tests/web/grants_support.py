"""Helpers of the web tests for the grants and endpoints beyond the code flow: a config enabling all of
them, a second (upstream) Portico key set for token exchange, a back-channel logout listener."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from upstream_portico import UpstreamPorticoConnector
from web_harness import ISSUER, PASSWORD_HASH, Harness, basic

from appliance.clock import FrozenClock
from appliance.config.schema import StorageConfig
from appliance.connectors.registry import Registry, default_registry
from appliance.keys.manager import KeyManager
from appliance.store.base import Storage
from appliance.store.open import open_storage

UPSTREAM_ISSUER = "https://upstream.example/dex"
SVC_SECRET = "svc-secret"
APP_SECRET = "app-secret"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"


def grants_config(*, backchannel: str = "http://127.0.0.1:9/bc", skip: bool = True,
                  extra_oauth2: str = "") -> str:
    return f"""
issuer: {ISSUER}
storage:
  type: memory
web:
  http: 127.0.0.1:5556
oauth2:
  skipApprovalScreen: {str(skip).lower()}
  passwordConnector: local
  responseTypes: [code, token, id_token, "code id_token", "code token", "id_token token",
                  "code id_token token"]
  grantTypes: [authorization_code, refresh_token, implicit, password, client_credentials,
               "{DEVICE_GRANT}", "{EXCHANGE_GRANT}"]
{extra_oauth2}
enablePasswordDB: true
staticPasswords:
  - email: admin@example.com
    hash: "{PASSWORD_HASH}"
    username: admin
    userID: fd9d7267-8f66-47a6-8e01-d26d687f7c77
    groups: [admins, developers]
staticClients:
  - id: app
    name: App
    secret: {APP_SECRET}
    redirectURIs: [https://app.example/callback, /device/callback]
    postLogoutRedirectURIs: [https://app.example/bye]
    backchannelLogoutURI: {backchannel}
  - id: kubectl
    name: kubectl
    public: true
  - id: svc
    name: Service
    secret: {SVC_SECRET}
    clientCredentialsClaims:
      groups: [robots]
  - id: other
    name: Other
    secret: other-secret
    redirectURIs: [https://other.example/callback]
    allowedConnectors: [mock]
connectors:
  - type: mockCallback
    id: mock
    name: Mock
  - type: oidc
    id: upstream
    name: Upstream
    config:
      issuer: {UPSTREAM_ISSUER}
"""


@dataclass
class Upstream:
    """A second, real key manager: the upstream Portico whose ID tokens are exchanged."""

    keys: KeyManager
    clock: FrozenClock

    def id_token(self, **claims: Any) -> str:
        now = int(self.clock.now().timestamp())
        body = {"iss": UPSTREAM_ISSUER, "sub": "upstream-user", "aud": "ci", "iat": now, "exp": now + 600,
                "email": "ci@example.com", "email_verified": True, "name": "CI Job", "groups": ["ci"]}
        body.update(claims)
        return self.keys.sign(body)


# Storages opened for upstreams; the web conftest closes them after each test (an unclosed aiosqlite
# connection keeps its thread, and the interpreter would wait for it at exit).
OPENED: list[Storage] = []


async def close_upstreams() -> None:
    while OPENED:
        await OPENED.pop().close()


async def make_upstream(clock: FrozenClock) -> Upstream:
    storage = await open_storage(StorageConfig(type="memory"))
    OPENED.append(storage)
    keys = KeyManager(storage, clock, algorithm="ES256", rotation_period=timedelta(hours=6),
                      id_token_lifetime=timedelta(hours=1))
    await keys.rotate_if_due()
    await keys.refresh()
    return Upstream(keys, clock)


def registry_with_upstream(upstream: Upstream) -> Registry:
    async def jwks() -> dict[str, Any]:
        return upstream.keys.jwks()

    def factory(connector_id: str, config: Any) -> UpstreamPorticoConnector:
        return UpstreamPorticoConnector(str(config["issuer"]), jwks, lambda: upstream.clock.now().timestamp())

    return default_registry().with_types({"oidc": factory})


def app_auth() -> dict[str, str]:
    return basic("app", APP_SECRET)


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def post_json(web: Harness, path: str, form: dict[str, str],
                    headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    response = await web.client.post(path, form=form, headers=headers)
    return response.status_code, dict(await response.get_json() or {})


