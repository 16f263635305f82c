"""The web edge of upstream logins: authproxy headers dropped off their path (ASGI), the SAML page's CSP,
and refused logins shown as the generic 403 page."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from quart import Quart, jsonify, request

from appliance.connectors.authproxy import open_authproxy
from appliance.connectors.base import UserNotInRequiredGroupsError
from appliance.connectors.ldap import UserGone
from appliance.connectors.social_http import UpstreamDenied
from appliance.connectors.upstream_http import UpstreamRefusedError
from appliance.errors import ConnectorError, DisplayedError
from appliance.oidc.deps import OpenConnector
from appliance.web.routes_saml import form_action_csp
from appliance.web.upstream_edge import refusals_shown, strip_untrusted_headers


def _deps(*connectors: OpenConnector) -> Any:
    # strip_untrusted_headers reads deps.snapshot.issuer.path and deps.snapshot.connectors only.
    return SimpleNamespace(snapshot=SimpleNamespace(issuer=SimpleNamespace(path="/dex"),
                                                    connectors={c.id: c for c in connectors}))


def _proxy(connector_id: str, **config: Any) -> OpenConnector:
    return OpenConnector(connector_id, "authproxy", connector_id, open_authproxy(connector_id, config))


@pytest.fixture
def echo() -> tuple[Quart, Any]:
    app = Quart(__name__)

    @app.route("/<path:path>", methods=["GET", "POST"])
    async def headers(path: str) -> Any:
        return jsonify(sorted({name.lower() for name in request.headers.keys()}))

    deps = _deps(_proxy("proxy"), _proxy("other", userHeader="X-Other-User"))
    strip_untrusted_headers(app, deps)
    return app, deps


async def _seen(app: Quart, path: str, headers: list[tuple[str, str]]) -> set[str]:
    response = await app.test_client().get(path, headers=headers)
    return set(await response.get_json())


SENT = [("X-Remote-User", "mallory"), ("x-remote-group", "admins"), ("X-Remote-Group", "more"),
        ("X-Other-User", "eve"), ("X-Unrelated", "kept")]


async def test_trusted_headers_are_dropped_everywhere_but_their_callback(echo: tuple[Quart, Any]) -> None:
    app, _ = echo
    for path in ("/dex/token", "/dex/callback", "/dex/auth/proxy", "/dex/callback/proxy/", "/dex/callback/x",
                 "/callback/proxy"):
        seen = await _seen(app, path, SENT)
        assert "x-unrelated" in seen, path
        assert not seen & {"x-remote-user", "x-remote-group", "x-other-user"}, (path, seen)
    own = await _seen(app, "/dex/callback/proxy", SENT)
    assert {"x-remote-user", "x-remote-group", "x-unrelated"} <= own and "x-other-user" not in own
    other = await _seen(app, "/dex/callback/other", SENT)
    # `other` trusts X-Other-User and the default names of the rest (its userHeader is the only change).
    assert {"x-other-user", "x-remote-group"} <= other and "x-remote-user" not in other


async def test_a_reload_changes_what_is_dropped(echo: tuple[Quart, Any]) -> None:
    app, deps = echo
    deps.snapshot = _deps().snapshot  # no authproxy connector any more
    assert {"x-remote-user", "x-other-user"} <= await _seen(app, "/dex/token", SENT)


def test_the_saml_page_may_post_to_the_idp_only() -> None:
    csp = form_action_csp("https://idp.example:8443/sso?tenant=1")
    assert csp.endswith("form-action https://idp.example:8443")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and csp.count("form-action") == 1
    assert form_action_csp("javascript:alert(1)").endswith("form-action 'none'")


async def _raise(exc: Exception) -> None:
    raise exc


@pytest.mark.parametrize("exc", [
    UserNotInRequiredGroupsError("not in org"), UpstreamDenied("no verified email"), UserGone("deleted"),
    UpstreamRefusedError("cancelled upstream", "access_denied"),
])
async def test_refusals_become_the_generic_403_page(exc: Exception) -> None:
    with pytest.raises(DisplayedError) as caught:
        await refusals_shown(_raise(exc))
    assert caught.value.status == 403 and caught.value.title == "Access denied"
    assert str(exc) not in caught.value.message


@pytest.mark.parametrize("exc", [ConnectorError("ldap down"), UpstreamRefusedError("odd", "server_error")])
async def test_other_connector_errors_go_on_to_the_login_failed_page(exc: Exception) -> None:
    with pytest.raises(type(exc)):
        await refusals_shown(_raise(exc))
