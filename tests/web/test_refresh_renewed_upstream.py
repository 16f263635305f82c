"""An upstream that rotates its refresh token, then fails before the refresh is done (the token endpoint
answered, the userinfo call did not): Portico answers 503 and keeps what the upstream renewed, so the
client's retry starts from the new upstream token instead of the spent one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from grants_support import app_auth, grants_config, make_upstream, post_json, registry_with_upstream
from web_harness import Harness, HarnessFactory, location, path_and_query, query_of

from appliance.clock import FrozenClock
from appliance.connectors.base import Identity, Scopes
from appliance.connectors.mock import MockCallbackConnector
from appliance.errors import ConnectorError

REDIRECT = "https://app.example/callback"


class RotatingUpstream(MockCallbackConnector):
    """Each refresh spends the upstream token it is given and hands out the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.identity = replace(self.identity, connector_data=b"upstream-rt-0")
        self.given: list[bytes | None] = []
        self.fail_after_renewal = False

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        self.given.append(identity.connector_data)
        renewed = f"upstream-rt-{len(self.given)}".encode()
        if self.fail_after_renewal:
            self.fail_after_renewal = False
            exc = ConnectorError("the userinfo call after the upstream refresh timed out")
            exc.connector_data = renewed
            raise exc
        return replace(identity, connector_data=renewed)


async def _tokens_via_mock(web: Harness) -> dict[str, Any]:
    start = await web.start("mock", client_id="app", redirect_uri=REDIRECT,
                            scope="openid email offline_access")
    response = start
    for _ in range(6):  # /auth -> the mock's callback -> (approval) -> the client
        target = location(response)
        if query_of(target).get("code") and target.startswith(REDIRECT):
            break
        if "/approval" in target:
            response = await web.approve(target)
        else:
            response = await web.client.get(path_and_query(target))
        assert response.status_code in (302, 303), await web.text(response)
    code = query_of(location(response))["code"]
    status, body = await post_json(web, "/dex/token", {"grant_type": "authorization_code", "code": code,
                                                       "redirect_uri": REDIRECT}, app_auth())
    assert status == 200, body
    return body


async def test_a_failure_after_the_upstream_renewed_keeps_the_renewed_token(
        make_harness: HarnessFactory) -> None:
    upstream = RotatingUpstream()
    oidc_upstream = registry_with_upstream(await make_upstream(FrozenClock()))
    registry = oidc_upstream.with_types({"mockCallback": lambda connector_id, config: upstream})
    web = await make_harness(grants_config(), registry=registry)
    tokens = await _tokens_via_mock(web)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}

    upstream.fail_after_renewal = True
    status, body = await post_json(web, "/dex/token", form, app_auth())
    assert status == 503 and body["error"] == "temporarily_unavailable", body

    status, body = await post_json(web, "/dex/token", form, app_auth())  # the client retries
    assert status == 200, body
    # The retry handed the upstream the token it renewed during the failed attempt, not the spent one.
    assert upstream.given == [b"upstream-rt-0", b"upstream-rt-1"]
